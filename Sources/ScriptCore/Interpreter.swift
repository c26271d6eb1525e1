import Foundation

/// Runs SkelLab statements: a tree-walking evaluator over the parser's AST.
///
/// Globals live in one environment; a function call gets its own locals whose parent is the
/// scope the function was defined in. Everything the interpreter calls by name comes from the
/// `Registry`; the interpreter itself knows nothing of tensors or models.
public final class Interpreter: CallContext {
  public let registry: Registry
  public private(set) var globals = Environment(parent: nil)
  /// The folder relative paths of files (builtins' path parameters, `import`, `:save`) are
  /// resolved against; nil: the process's current directory. Two sessions in one process
  /// can each have their own (the tests run tutorials side by side this way).
  public var workingDirectory: String?
  /// Where `print` and echoed values go.
  public var output: (String) -> Void = { print($0, terminator: "") }
  /// `--set name=value` pairs of the command line.
  public var commandLineParameters: [String: String] = [:]
  /// Script function calls deeper than this are an error, not a stack overflow.
  public var recursionLimit = 200
  /// When set, statements stop with an error at the next safe point after this uptime
  /// (nanoseconds): a time limit for untrusted or generated programs.
  public var deadline: UInt64? = nil

  private var depth = 0
  private var frames: [(function: String, range: SourceRange)] = []
  private var importedFiles = Set<String>()
  private var importing: [String] = []

  public init(registry: Registry) {
    self.registry = registry
  }

  /// Forgets every variable and import (`:reset`).
  public func reset() {
    globals = Environment(parent: nil)
    importedFiles = []
  }

  /// Names of the global variables, sorted.
  public var globalNames: [String] { globals.values.keys.sorted() }

  /// The value of a global, if set.
  public func global(_ name: String) -> Value? { globals.values[name] }

  /// Sets a global.
  public func setGlobal(_ name: String, _ value: Value) { globals.values[name] = value }

  // MARK: Running sources

  /// Parses and runs a whole source; top-level expression statements are echoed through
  /// `echo` unless they end with `;` or give nil. Throws the first syntax error or the
  /// runtime error that stopped it.
  public func run(_ source: Source, echo: ((Value) -> Void)? = nil) throws {
    let (statements, errors) = Parser.parse(source)
    if let first = errors.first { throw first }
    try run(statements, echo: echo)
  }

  /// Runs parsed top-level statements one after another.
  public func run(_ statements: [Stmt], echo: ((Value) -> Void)? = nil) throws {
    for statement in statements {
      try checkInterrupt()
      if case .expression(let expr, let shouldEcho) = statement {
        justShown = nil
        let value = try evaluate(expr, globals)
        if shouldEcho, let echo, !wasJustShown(value) {
          if case .nil = value {} else { echo(value) }
        }
        justShown = nil
        continue
      }
      switch try execute(statement, globals) {
      case .normal: break
      case .breakLoop, .continueLoop:
        throw ScriptError(.syntax, "'break' or 'continue' outside a loop", at: statement.range)
      case .returned:
        throw ScriptError(.syntax, "'return' outside a function", at: statement.range)
      }
    }
  }

  // MARK: CallContext

  /// The record a builtin printed in full during the current expression statement.
  private var justShown: ObjectIdentifier?

  public func shown(_ value: Value) {
    if case .record(let box) = value { justShown = ObjectIdentifier(box) }
  }

  private func wasJustShown(_ value: Value) -> Bool {
    if case .record(let box) = value, let justShown { return ObjectIdentifier(box) == justShown }
    return false
  }

  public func write(_ text: String) { output(text) }

  public func checkInterrupt() throws {
    try Interrupt.check()
    if let deadline, DispatchTime.now().uptimeNanoseconds > deadline {
      throw ScriptError(.interrupted, "time limit reached")
    }
  }

  public func commandLineParameter(_ name: String) -> String? {
    readParameters.insert(name)
    return commandLineParameters[name]
  }

  /// The names `param` has been asked for so far (a `--set` of another name went unread).
  public private(set) var readParameters = Set<String>()

  public func call(_ callee: Value, _ arguments: [Value]) throws -> Value {
    try call(callee, positional: arguments.map { ($0, nil) }, keywords: [], at: nil)
  }

  // MARK: Statements

  enum Flow {
    case normal, breakLoop, continueLoop
    case returned(Value)
  }

  private func executeBlock(_ body: [Stmt], _ env: Environment) throws -> Flow {
    for statement in body {
      let flow = try execute(statement, env)
      if case .normal = flow { continue }
      return flow
    }
    return .normal
  }

  private func execute(_ statement: Stmt, _ env: Environment) throws -> Flow {
    switch statement {
    case .expression(let expr, _):
      _ = try evaluate(expr, env)
      return .normal
    case .assign(let target, let op, let valueExpr, let range):
      var value = try evaluate(valueExpr, env)
      if op != "=" {
        let current = try evaluate(target, env)
        value = try binary(String(op.dropLast()), current, value, range)
      }
      try assign(target, value, env)
      return .normal
    case .def(let name, let parameters, let body, let range):
      let function = Function(
        name: name, parameters: parameters, body: body, closure: env, range: range)
      // Defaults are evaluated once, where the function is defined.
      for parameter in parameters {
        if let d = parameter.defaultValue {
          function.defaults[parameter.name] = try evaluate(d, env)
        }
      }
      env.values[name] = .function(function)
      return .normal
    case .ifChain(let branches, let elseBody, _):
      for branch in branches where try condition(branch.condition, env) {
        return try executeBlock(branch.body, env)
      }
      if let elseBody { return try executeBlock(elseBody, env) }
      return .normal
    case .forLoop(let variable, let sequenceExpr, let body, _):
      let next = try iterate(try evaluate(sequenceExpr, env), sequenceExpr.range)
      while let item = try next() {
        try checkInterrupt()
        env.values[variable] = item
        switch try executeBlock(body, env) {
        case .breakLoop: return .normal
        case .returned(let v): return .returned(v)
        case .normal, .continueLoop: continue
        }
      }
      return .normal
    case .whileLoop(let conditionExpr, let body, _):
      while try condition(conditionExpr, env) {
        try checkInterrupt()
        switch try executeBlock(body, env) {
        case .breakLoop: return .normal
        case .returned(let v): return .returned(v)
        case .normal, .continueLoop: continue
        }
      }
      return .normal
    case .returnStmt(let expr, _):
      return .returned(try expr.map { try evaluate($0, env) } ?? .nil)
    case .breakStmt: return .breakLoop
    case .continueStmt: return .continueLoop
    case .importStmt(let name, let range):
      try importFile(name, range)
      return .normal
    }
  }

  private func condition(_ expr: Expr, _ env: Environment) throws -> Bool {
    let value = try evaluate(expr, env)
    guard case .bool(let b) = value else {
      throw ScriptError(.type, "condition must be Bool, got \(value.typeName)", at: expr.range)
    }
    return b
  }

  private func assign(_ target: Expr, _ value: Value, _ env: Environment) throws {
    switch target {
    case .name(let name, _):
      env.values[name] = value
    case .attribute(let objectExpr, let name, let range):
      let object = try evaluate(objectExpr, env)
      switch object {
      case .record(let box): box[name] = value
      case .object(let o):
        guard let attribute = registry.attributes[o.typeName]?[name] else {
          throw unknownAttribute(o.typeName, name, range)
        }
        guard let set = attribute.set else {
          throw ScriptError(.type, "attribute '\(name)' of \(o.typeName) cannot be set", at: range)
        }
        do { try set(o, value) } catch { throw wrap(error, range) }
      default:
        throw ScriptError(.type, "cannot set attribute '\(name)' on \(object.typeName)", at: range)
      }
    case .index(let objectExpr, let entries, let range):
      let object = try evaluate(objectExpr, env)
      let indices = try entries.map { try evaluateIndex($0, env) }
      try setIndex(object, indices, value, range)
    default:
      throw ScriptError(.syntax, "cannot assign to this expression", at: target.range)
    }
  }

  // MARK: Imports

  private func importFile(_ name: String, _ range: SourceRange) throws {
    let file = name.hasSuffix(".skl") ? name : name + ".skl"
    var folders: [String] = []
    folders.append(
      range.source.directory ?? workingDirectory ?? FileManager.default.currentDirectoryPath)
    if let path = ProcessInfo.processInfo.environment["SKELLAB_PATH"] {
      folders += path.split(separator: ":").map(String.init)
    }
    if let stdlib = Installation.standardLibrary { folders.append(stdlib) }
    let candidates =
      file.hasPrefix("/") ? [file] : folders.map { ($0 as NSString).appendingPathComponent(file) }
    guard let path = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
      throw ScriptError(
        .import_, "cannot find '\(file)' to import", at: range,
        notes: ["looked in: " + folders.joined(separator: ", ")])
    }
    let resolved = (path as NSString).standardizingPath
    if importedFiles.contains(resolved) { return }
    guard !importing.contains(resolved) else {
      throw ScriptError(
        .import_, "'\(file)' imports itself (through \(importing.count) file(s))", at: range)
    }
    let text: String
    do {
      text = try String(contentsOfFile: resolved, encoding: .utf8)
    } catch {
      throw ScriptError(.io, "cannot read '\(resolved)': \(error.localizedDescription)", at: range)
    }
    importing.append(resolved)
    defer { importing.removeLast() }
    // Diagnostics and help name a bundled file as stdlib/NAME, wherever it is installed.
    let stdlib = Installation.standardLibrary.map { ($0 as NSString).standardizingPath + "/" }
    let shown =
      stdlib.map { resolved.hasPrefix($0) ? "stdlib/" + resolved.dropFirst($0.count) : resolved }
      ?? resolved
    let source = Source(
      name: shown, text: text, directory: (resolved as NSString).deletingLastPathComponent)
    do {
      let (statements, errors) = Parser.parse(source)
      if let first = errors.first { throw first }
      try run(statements, echo: nil)
    } catch var error as ScriptError {
      error.trace.append(("import \"\(name)\"", range))
      throw error
    }
    importedFiles.insert(resolved)
  }

  // MARK: Expressions

  func evaluate(_ expr: Expr, _ env: Environment) throws -> Value {
    switch expr {
    case .literal(let literal, _):
      return Value(literal)
    case .string(let parts, _):
      var text = ""
      for part in parts {
        switch part {
        case .text(let t): text += t
        case .expression(let e, let format):
          let value = try evaluate(e, env)
          if let format {
            do {
              text += try FormatSpec.apply(format, to: value, number: try number(value))
            } catch let error as ScriptError {
              throw error.placed(e.range)
            }
          } else {
            text += value.description
          }
        }
      }
      return .string(text)
    case .name(let name, let range):
      if let value = env.lookup(name) { return value }
      if let builtin = registry.builtins[name] { return .builtin(builtin) }
      throw unknownName(name, env, range)
    case .list(let items, _):
      return .list(try items.map { try evaluate($0, env) })
    case .record(let entries, _):
      return .record(RecordBox(try entries.map { ($0.key, try evaluate($0.value, env)) }))
    case .unary(let op, let operandExpr, let range):
      let operand = try evaluate(operandExpr, env)
      return try unary(op, operand, range)
    case .binary(let op, let leftExpr, let rightExpr, let range):
      let left = try evaluate(leftExpr, env)
      let right = try evaluate(rightExpr, env)
      return try binary(op, left, right, range)
    case .logical(let op, let leftExpr, let rightExpr, _):
      let left = try condition(leftExpr, env)
      if op == "and" { return .bool(left ? try condition(rightExpr, env) : false) }
      return .bool(left ? true : try condition(rightExpr, env))
    case .call(let calleeExpr, let arguments, let range):
      return try evaluateCall(calleeExpr, arguments, range, env)
    case .index(let objectExpr, let entries, let range):
      let object = try evaluate(objectExpr, env)
      let indices = try entries.map { try evaluateIndex($0, env) }
      return try getIndex(object, indices, range)
    case .attribute(let objectExpr, let name, let range):
      let object = try evaluate(objectExpr, env)
      return try attribute(object, name, range)
    }
  }

  private func attribute(_ object: Value, _ name: String, _ range: SourceRange) throws -> Value {
    switch object {
    case .record(let box):
      if let value = box[name] { return value }
      var notes: [String] = []
      if let guess = closestName(name, among: box.keys) { notes.append("did you mean '\(guess)'?") }
      throw ScriptError(.key, "record has no key '\(name)'", at: range, notes: notes)
    case .object(let o):
      if let attribute = registry.attributes[o.typeName]?[name] {
        do { return try attribute.get(o) } catch { throw wrap(error, range) }
      }
      throw unknownAttribute(o.typeName, name, range)
    default:
      throw ScriptError(.type, "\(object.typeName) has no attribute '\(name)'", at: range)
    }
  }

  private func evaluateCall(
    _ calleeExpr: Expr, _ arguments: [Argument], _ range: SourceRange, _ env: Environment
  ) throws -> Value {
    var positional: [(Value, SourceRange?)] = []
    var callee: Value
    // Uniform call syntax: x.f(a) is f(x, a) when x has no attribute f.
    if case .attribute(let objectExpr, let name, let attributeRange) = calleeExpr {
      let object = try evaluate(objectExpr, env)
      if hasAttribute(object, name) {
        callee = try attribute(object, name, attributeRange)
      } else if let function = env.lookup(name) ?? registry.builtins[name].map(Value.builtin) {
        callee = function
        positional.append((object, objectExpr.range))
      } else {
        throw unknownAttribute(object.typeName, name, attributeRange, env: env)
      }
    } else {
      callee = try evaluate(calleeExpr, env)
    }
    var keywords: [(String, Value, SourceRange)] = []
    for argument in arguments {
      let value = try evaluate(argument.value, env)
      if let name = argument.name {
        keywords.append((name, value, argument.range))
      } else {
        positional.append((value, argument.range))
      }
    }
    return try call(callee, positional: positional, keywords: keywords, at: range)
  }

  private func hasAttribute(_ object: Value, _ name: String) -> Bool {
    switch object {
    case .record(let box): return box[name] != nil
    case .object(let o): return registry.attributes[o.typeName]?[name] != nil
    default: return false
    }
  }

  func call(
    _ callee: Value, positional: [(Value, SourceRange?)], keywords: [(String, Value, SourceRange)],
    at range: SourceRange?
  ) throws -> Value {
    try checkInterrupt()
    switch callee {
    case .builtin(let builtin):
      var arguments = try builtin.bind(
        positional: positional.map { ($0.0, $0.1 ?? range) }, keywords: keywords, call: range)
      if let workingDirectory {
        arguments.resolvePaths(builtin.parameters, against: workingDirectory)
      }
      do {
        return try builtin.body(arguments, self)
      } catch {
        throw range.map { wrap(error, $0) } ?? error
      }
    case .function(let function):
      return try callFunction(function, positional, keywords, range)
    case .object(let object):
      guard let builtin = registry.calls[object.typeName] else { break }
      return try call(
        .builtin(builtin), positional: [(callee, range)] + positional, keywords: keywords, at: range
      )
    default:
      break
    }
    throw ScriptError(.type, "\(callee.typeName) is not callable", at: range)
  }

  private func callFunction(
    _ function: Function, _ positional: [(Value, SourceRange?)],
    _ keywords: [(String, Value, SourceRange)], _ range: SourceRange?
  ) throws -> Value {
    let parameters = function.parameters
    guard positional.count <= parameters.count else {
      throw ScriptError(
        .argument,
        "\(function.name) takes \(parameters.count) argument(s), got \(positional.count)",
        at: range)
    }
    let scope = Environment(parent: function.closure)
    for (parameter, argument) in zip(parameters, positional) {
      scope.values[parameter.name] = argument.0
    }
    for (name, value, keywordRange) in keywords {
      guard parameters.contains(where: { $0.name == name }) else {
        var notes: [String] = []
        if let guess = closestName(name, among: parameters.map(\.name)) {
          notes.append("did you mean '\(guess)'?")
        }
        throw ScriptError(
          .argument, "\(function.name) has no parameter '\(name)'", at: keywordRange, notes: notes)
      }
      guard scope.values[name] == nil else {
        throw ScriptError(.argument, "\(function.name) got '\(name)' twice", at: keywordRange)
      }
      scope.values[name] = value
    }
    for parameter in parameters where scope.values[parameter.name] == nil {
      guard let value = function.defaults[parameter.name] else {
        throw ScriptError(
          .argument, "\(function.name) is missing argument '\(parameter.name)'", at: range)
      }
      scope.values[parameter.name] = value
    }
    guard depth < recursionLimit else {
      throw ScriptError(
        .recursion, "recursion too deep: more than \(recursionLimit) nested calls", at: range)
    }
    depth += 1
    defer { depth -= 1 }
    do {
      if case .returned(let value) = try executeBlock(function.body, scope) { return value }
      return .nil
    } catch var error as ScriptError {
      if let range { error.trace.append((function.name, range)) }
      throw error
    }
  }

  /// Turns a library error into a script error at `range`.
  func wrap(_ error: Error, _ range: SourceRange) -> ScriptError {
    if let scriptError = error as? ScriptError { return scriptError.placed(range) }
    return ScriptError(.library, String(describing: error), at: range)
  }

  // MARK: Names

  private func unknownName(_ name: String, _ env: Environment, _ range: SourceRange) -> ScriptError
  {
    let candidates = env.visibleNames + Array(registry.builtins.keys) + Array(keywords)
    var notes: [String] = []
    if let guess = closestName(name, among: candidates) { notes.append("did you mean '\(guess)'?") }
    return ScriptError(.name, "unknown name '\(name)'", at: range, notes: notes)
  }

  private func unknownAttribute(
    _ typeName: String, _ name: String, _ range: SourceRange, env: Environment? = nil
  ) -> ScriptError {
    var candidates = registry.attributeNames(of: typeName)
    if env != nil { candidates += Array(registry.builtins.keys) }
    var notes: [String] = []
    if let guess = closestName(name, among: candidates) { notes.append("did you mean '\(guess)'?") }
    return ScriptError(
      .name, "\(typeName) has no attribute or function '\(name)'", at: range, notes: notes)
  }
}
