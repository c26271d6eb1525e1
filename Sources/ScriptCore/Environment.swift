import CSystem

/// A scope: the globals, or one function call's locals with the scope the function closes over.
public final class Environment {
  var values: [String: Value] = [:]
  let parent: Environment?

  init(parent: Environment?) { self.parent = parent }

  /// Looks a name up here, then in enclosing scopes.
  func lookup(_ name: String) -> Value? {
    var scope: Environment? = self
    while let current = scope {
      if let value = current.values[name] { return value }
      scope = current.parent
    }
    return nil
  }

  /// Every name visible from here (for completion and 'did you mean').
  var visibleNames: [String] {
    var names = Set<String>()
    var scope: Environment? = self
    while let current = scope {
      names.formUnion(current.values.keys)
      scope = current.parent
    }
    return names.sorted()
  }
}

/// Ctrl-C: a signal handler (in C, async-signal-safe) sets a flag; loops, calls and long
/// library work check it at safe points and stop with an `interrupted` error. Nothing jumps
/// out of Swift code.
public enum Interrupt {
  /// Installs the SIGINT handler (the REPL and batch mode do, at start).
  public static func installHandler() { _ = skellab_install_interrupt_handler() }

  /// Sets the flag, as Ctrl-C does.
  public static func raise() { skellab_raise_interrupt() }

  /// Forgets a pending interrupt (before running a new statement).
  public static func clear() { skellab_clear_interrupt() }

  /// Whether Ctrl-C was pressed since the last `clear`.
  public static var isPending: Bool { skellab_interrupt_pending() != 0 }

  /// Throws `interrupted` when Ctrl-C was pressed.
  public static func check() throws {
    if isPending {
      clear()
      throw ScriptError(.interrupted, "interrupted")
    }
  }
}
