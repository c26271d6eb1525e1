import ScriptCore

/// Every builtin SkelLab offers, registered into one registry: the language's own helpers and
/// each library module's builtins. Later modules (data, models, masks, trainers, evaluation)
/// add one line here.
public enum Library {
  public static func registry() -> Registry {
    let registry = Registry()
    CoreBuiltins.register(in: registry)
    TensorBuiltins.register(in: registry)
    ModelBuiltins.register(in: registry)
    DataBuiltins.register(in: registry)
    EvaluationBuiltins.register(in: registry)
    SSLBuiltins.register(in: registry)
    return registry
  }
}
