import ScriptCore

/// Every builtin SkelLab offers, registered into one registry: the language's own helpers and
/// each library module's builtins. Later modules (data, models, masks, trainers, evaluation)
/// add one line here.
public enum Library {
  public static func registry() -> Registry {
    let registry = Registry()
    registry.family = "language"
    CoreBuiltins.register(in: registry)
    registry.family = "tensors"
    TensorBuiltins.register(in: registry)
    registry.family = "data"
    DataBuiltins.register(in: registry)
    registry.family = "models"
    ModelBuiltins.register(in: registry)
    registry.family = "pretraining"
    SSLBuiltins.register(in: registry)
    registry.family = "evaluation"
    EvaluationBuiltins.register(in: registry)
    registry.examples = Examples.byName
    registry.examplePrelude = Examples.prelude
    return registry
  }
}
