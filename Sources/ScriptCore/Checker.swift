import Foundation

/// `skellab check`: every syntax error of a file, then names that resolve nowhere and
/// keyword arguments a builtin does not have. Runs nothing.
public enum Checker {
  public static func check(_ source: Source, registry: Registry) -> [ScriptError] {
    let (statements, syntaxErrors) = Parser.parse(source)
    var errors = syntaxErrors
    var visited = Set<String>()
    var globals = Set<String>()
    collectDefinitions(
      statements, into: &globals, visited: &visited, errors: &errors)
    var checker = Walker(registry: registry, globals: globals)
    checker.block(statements)
    errors += checker.errors
    return errors.sorted { ($0.range?.start ?? 0) < ($1.range?.start ?? 0) }
  }

  /// Names a block defines at its own level (assignments, defs, loop variables), and those
  /// of the files it imports.
  static func collectDefinitions(
    _ statements: [Stmt], into names: inout Set<String>,
    visited: inout Set<String>, errors: inout [ScriptError]
  ) {
    for statement in statements {
      switch statement {
      case .assign(.name(let name, _), _, _, _): names.insert(name)
      case .def(let name, _, _, _): names.insert(name)
      case .forLoop(let variable, _, let body, _):
        names.insert(variable)
        collectDefinitions(body, into: &names, visited: &visited, errors: &errors)
      case .whileLoop(_, let body, _):
        collectDefinitions(body, into: &names, visited: &visited, errors: &errors)
      case .ifChain(let branches, let elseBody, _):
        for branch in branches {
          collectDefinitions(
            branch.body, into: &names, visited: &visited, errors: &errors)
        }
        if let elseBody {
          collectDefinitions(
            elseBody, into: &names, visited: &visited, errors: &errors)
        }
      case .importStmt(let file, let range):
        let name = file.hasSuffix(".skl") ? file : file + ".skl"
        guard let path = importPath(file, from: range),
          let text = try? String(contentsOfFile: path, encoding: .utf8)
        else {
          errors.append(ScriptError(.import_, "cannot find '\(name)' to import", at: range))
          continue
        }
        guard visited.insert(path).inserted else { continue }
        let imported = Source(
          name: path, text: text, directory: (path as NSString).deletingLastPathComponent)
        let (importedStatements, importedErrors) = Parser.parse(imported)
        errors += importedErrors
        collectDefinitions(
          importedStatements, into: &names, visited: &visited, errors: &errors)
      default: break
      }
    }
  }

  struct Walker {
    let registry: Registry
    let globals: Set<String>
    var errors: [ScriptError] = []
    var scopes: [Set<String>] = []
    /// Unknown names met so far, and how many of them get a "did you mean".
    var suggestions = 0
    static let maximumSuggestions = 100

    init(registry: Registry, globals: Set<String>) {
      self.registry = registry
      self.globals = globals
    }

    func known(_ name: String) -> Bool {
      globals.contains(name) || registry.builtins[name] != nil
        || scopes.contains { $0.contains(name) }
    }

    mutating func block(_ statements: [Stmt]) {
      for statement in statements { self.statement(statement) }
    }

    mutating func statement(_ statement: Stmt) {
      switch statement {
      case .expression(let e, _): expression(e)
      case .assign(let target, _, let value, _):
        expression(value)
        if case .name = target {} else { expression(target) }
      case .def(_, let parameters, let body, _):
        for p in parameters { if let d = p.defaultValue { expression(d) } }
        var locals = Set(parameters.map(\.name))
        var ignored = Set<String>()
        var ignoredErrors: [ScriptError] = []
        Checker.collectDefinitions(
          body, into: &locals, visited: &ignored, errors: &ignoredErrors)
        scopes.append(locals)
        block(body)
        scopes.removeLast()
      case .ifChain(let branches, let elseBody, _):
        for b in branches {
          expression(b.condition)
          block(b.body)
        }
        if let elseBody { block(elseBody) }
      case .forLoop(_, let sequence, let body, _):
        expression(sequence)
        block(body)
      case .whileLoop(let condition, let body, _):
        expression(condition)
        block(body)
      case .returnStmt(let e, _): if let e { expression(e) }
      case .breakStmt, .continueStmt, .importStmt: break
      }
    }

    mutating func expression(_ expr: Expr) {
      switch expr {
      case .literal: break
      case .string(let parts, _):
        for case .expression(let e, _) in parts { expression(e) }
      case .name(let name, let range):
        if !known(name) {
          var notes: [String] = []
          // Suggestions for the first names only: each one compares the name with every
          // known name, and a script of thousands of unknown names would take minutes.
          suggestions += 1
          if suggestions <= Walker.maximumSuggestions {
            let candidates =
              Array(globals) + Array(registry.builtins.keys) + scopes.flatMap { Array($0) }
            if let guess = closestName(name, among: candidates) {
              notes.append("did you mean '\(guess)'?")
            }
          }
          errors.append(ScriptError(.name, "unknown name '\(name)'", at: range, notes: notes))
        }
      case .list(let items, _): items.forEach { expression($0) }
      case .record(let entries, _): entries.forEach { expression($0.value) }
      case .unary(_, let e, _): expression(e)
      case .binary(_, let a, let b, _), .logical(_, let a, let b, _):
        expression(a)
        expression(b)
      case .call(let callee, let arguments, _):
        if case .attribute(let object, _, _) = callee {
          expression(object)  // the attribute may be a method or a uniform call: not checked
        } else {
          expression(callee)
        }
        if case .name(let name, _) = callee, !globals.contains(name),
          !scopes.contains(where: { $0.contains(name) }), let builtin = registry.builtins[name]
        {
          errors += builtin.arityErrors(
            positional: arguments.filter { $0.name == nil }.map { $0.value.range },
            keywords: arguments.compactMap { a in a.name.map { ($0, a.range) } },
            call: expr.range)
        }
        arguments.forEach { expression($0.value) }
      case .index(let object, let entries, _):
        expression(object)
        for entry in entries {
          switch entry {
          case .single(let e): expression(e)
          case .slice(let a, let b, let c): [a, b, c].compactMap { $0 }.forEach { expression($0) }
          }
        }
      case .attribute(let object, _, _): expression(object)
      }
    }
  }
}
