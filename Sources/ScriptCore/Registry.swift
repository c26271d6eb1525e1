import Foundation

/// The type a builtin parameter accepts; argument checking and `help` read it.
public indirect enum ParameterType: Sendable, CustomStringConvertible {
  case any
  case int
  /// Int or Float, delivered as a Double.
  case number
  case bool
  case string
  case list
  case record
  case callable
  /// A library object of the named registered type.
  case object(String)
  case optional(ParameterType)
  case oneOf([ParameterType])

  public var description: String {
    switch self {
    case .any: return "Any"
    case .int: return "Int"
    case .number: return "Float"
    case .bool: return "Bool"
    case .string: return "String"
    case .list: return "List"
    case .record: return "Record"
    case .callable: return "Function"
    case .object(let name): return name
    case .optional(let inner): return "\(inner)?"
    case .oneOf(let types): return types.map(\.description).joined(separator: " | ")
    }
  }

  func accepts(_ value: Value) -> Bool {
    switch (self, value) {
    case (.any, _): return true
    case (.int, .int), (.number, .int), (.number, .float), (.bool, .bool), (.string, .string),
      (.list, .list), (.record, .record), (.callable, .function), (.callable, .builtin):
      return true
    case (.object(let name), .object(let o)): return o.typeName == name
    case (.optional, .nil): return true
    case (.optional(let inner), _): return inner.accepts(value)
    case (.oneOf(let types), _): return types.contains { $0.accepts(value) }
    default: return false
    }
  }
}

/// One parameter of a builtin: name, type, default (nil: required) and whether it collects
/// the remaining positional arguments.
public struct BuiltinParameter {
  public let name: String
  public let type: ParameterType
  public let defaultValue: Value?
  public let variadic: Bool
  /// A file or folder: a relative path is resolved against the interpreter's working
  /// directory when it has one (see `Interpreter.workingDirectory`).
  public let isPath: Bool

  public init(
    _ name: String, _ type: ParameterType = .any, default defaultValue: Value? = nil,
    variadic: Bool = false, isPath: Bool = false
  ) {
    self.name = name
    self.type = type
    self.defaultValue = defaultValue
    self.variadic = variadic
    self.isPath = isPath
  }

  /// A path parameter (a String, or nil when `optional`).
  public static func path(_ name: String, optional: Bool = false, default value: String? = nil)
    -> BuiltinParameter
  {
    if optional {
      return BuiltinParameter(name, .optional(.string), default: .nil, isPath: true)
    }
    return BuiltinParameter(name, .string, default: value.map(Value.string), isPath: true)
  }
}

/// Arguments bound to a builtin's parameters, with typed accessors.
public struct Arguments {
  public let builtin: String
  var values: [String: Value]
  /// The source range of each argument, for errors that point at one of them.
  public let ranges: [String: SourceRange]

  public subscript(name: String) -> Value { values[name] ?? .nil }

  /// Resolves the relative paths of path parameters against `directory`.
  mutating func resolvePaths(_ parameters: [BuiltinParameter], against directory: String) {
    for parameter in parameters where parameter.isPath {
      if case .string(let path) = values[parameter.name], !path.isEmpty, !path.hasPrefix("/"),
        !path.hasPrefix("~")
      {
        values[parameter.name] = .string((directory as NSString).appendingPathComponent(path))
      }
    }
  }

  public func isNil(_ name: String) -> Bool {
    if case .nil = self[name] { return true }
    return false
  }

  public func int(_ name: String) -> Int {
    if case .int(let i) = self[name] { return i }
    return 0
  }

  public func number(_ name: String) -> Double {
    switch self[name] {
    case .int(let i): return Double(i)
    case .float(let d): return d
    default: return 0
    }
  }

  public func optionalInt(_ name: String) -> Int? {
    if case .int(let i) = self[name] { return i }
    return nil
  }

  public func optionalNumber(_ name: String) -> Double? {
    switch self[name] {
    case .int(let i): return Double(i)
    case .float(let d): return d
    default: return nil
    }
  }

  public func bool(_ name: String) -> Bool {
    if case .bool(let b) = self[name] { return b }
    return false
  }

  public func string(_ name: String) -> String {
    if case .string(let s) = self[name] { return s }
    return ""
  }

  public func list(_ name: String) -> [Value] {
    if case .list(let box) = self[name] { return box.items }
    return []
  }

  public func object<T: ScriptObject>(_ name: String, as type: T.Type) -> T? {
    if case .object(let o) = self[name] { return o as? T }
    return nil
  }

  /// A library object argument of type `T`; throws naming the argument and what was expected
  /// (`what`, e.g. "a Dataset") otherwise.
  public func required<T: ScriptObject>(_ name: String, as type: T.Type, _ what: String) throws -> T
  {
    guard let object = object(name, as: type) else {
      throw error(name, "expected \(what), got \(self[name].typeName)")
    }
    return object
  }

  /// An error about one argument, placed at that argument.
  public func error(_ name: String, _ message: String) -> ScriptError {
    ScriptError(.argument, "argument '\(name)' of \(builtin): \(message)", at: ranges[name])
  }
}

/// What a builtin may ask of the interpreter while it runs.
public protocol CallContext: AnyObject {
  /// Calls a script function or builtin with positional arguments.
  func call(_ callee: Value, _ arguments: [Value]) throws -> Value
  /// Writes to standard output (print).
  func write(_ text: String)
  /// Throws `interrupted` when Ctrl-C was pressed (a safe point).
  func checkInterrupt() throws
  /// The registry, for help and type descriptions.
  var registry: Registry { get }
  /// A `--set` value of the command line, as given.
  func commandLineParameter(_ name: String) -> String?
  /// Marks a value the builtin has just printed in full (an evaluation's table): when the
  /// statement's value is that one, the REPL does not echo it a second time.
  func shown(_ value: Value)
}

/// A builtin function: registered once, and everything else (binding, errors, help,
/// completion, check) is generated from this registration.
public final class Builtin {
  public let name: String
  public let parameters: [BuiltinParameter]
  public let doc: String
  let body: (Arguments, CallContext) throws -> Value

  public init(
    _ name: String, _ parameters: [BuiltinParameter] = [], doc: String,
    _ body: @escaping (Arguments, CallContext) throws -> Value
  ) {
    self.name = name
    self.parameters = parameters
    self.doc = doc
    self.body = body
  }

  /// `name(a: Int, b: Float = 0.1, values...)`.
  public var signature: String {
    let list = parameters.map { p -> String in
      if p.variadic { return "\(p.name)..." }
      var text = "\(p.name): \(p.type)"
      if let d = p.defaultValue { text += " = \(d.repr)" }
      return text
    }
    return "\(name)(\(list.joined(separator: ", ")))"
  }

  /// The errors of a call's shape — too many positional arguments, an unknown keyword, a
  /// parameter given twice, a missing one — from the arguments' places alone: `run` throws the
  /// first, `check` reports them all before anything runs.
  public func arityErrors(
    positional: [SourceRange?], keywords: [(name: String, range: SourceRange)], call: SourceRange?
  ) -> [ScriptError] {
    var errors: [ScriptError] = []
    let slots = parameters.prefix { !$0.variadic }
    let variadic = slots.count < parameters.count
    if !variadic, positional.count > slots.count {
      errors.append(
        ScriptError(
          .argument,
          "\(name) takes at most \(parameters.count) positional argument(s), got \(positional.count)",
          at: positional[slots.count], notes: ["usage: \(signature)"]))
    }
    var given = Set(slots.prefix(positional.count).map(\.name))
    for (key, range) in keywords {
      guard parameters.contains(where: { $0.name == key && !$0.variadic }) else {
        var notes = ["usage: \(signature)"]
        if let guess = closestName(key, among: parameters.map(\.name)) {
          notes.insert("did you mean '\(guess)'?", at: 0)
        }
        errors.append(
          ScriptError(.argument, "\(name) has no parameter '\(key)'", at: range, notes: notes))
        continue
      }
      if !given.insert(key).inserted {
        errors.append(ScriptError(.argument, "\(name) got '\(key)' twice", at: range))
      }
    }
    for parameter in parameters
    where !parameter.variadic && parameter.defaultValue == nil && !given.contains(parameter.name) {
      errors.append(
        ScriptError(
          .argument, "\(name) is missing argument '\(parameter.name)'", at: call,
          notes: ["usage: \(signature)"]))
    }
    return errors
  }

  /// Binds positional and keyword arguments to parameters, checking names, counts and types.
  func bind(
    positional: [(Value, SourceRange?)], keywords: [(String, Value, SourceRange)],
    call: SourceRange?
  ) throws -> Arguments {
    if let first = arityErrors(
      positional: positional.map(\.1), keywords: keywords.map { ($0.0, $0.2) }, call: call
    ).first {
      throw first
    }
    var values: [String: Value] = [:]
    var ranges: [String: SourceRange] = [:]
    var index = 0
    for parameter in parameters {
      if parameter.variadic {
        let rest = positional[min(index, positional.count)...]
        values[parameter.name] = .list(rest.map(\.0))
        if let first = rest.first { ranges[parameter.name] = first.1 }
        index = positional.count
        break
      }
      if index < positional.count {
        values[parameter.name] = positional[index].0
        ranges[parameter.name] = positional[index].1
        index += 1
      }
    }
    for (key, value, range) in keywords {
      values[key] = value
      ranges[key] = range
    }
    for parameter in parameters where values[parameter.name] == nil {
      values[parameter.name] = parameter.defaultValue ?? .nil
    }
    for parameter in parameters where !parameter.variadic {
      let value = values[parameter.name] ?? .nil
      guard parameter.type.accepts(value) else {
        throw ScriptError(
          .type,
          "argument '\(parameter.name)' of \(name) must be \(parameter.type), got \(value.typeName)",
          at: ranges[parameter.name] ?? call)
      }
    }
    return Arguments(builtin: name, values: values, ranges: ranges)
  }
}

/// An attribute of a library type: a getter and, if settable, a setter.
public struct Attribute {
  public let name: String
  public let doc: String
  let get: (ScriptObject) throws -> Value
  let set: ((ScriptObject, Value) throws -> Void)?

  public init(
    _ name: String, doc: String, get: @escaping (ScriptObject) throws -> Value,
    set: ((ScriptObject, Value) throws -> Void)? = nil
  ) {
    self.name = name
    self.doc = doc
    self.get = get
    self.set = set
  }
}

/// The next item of a `for` loop over a library value, nil at the end.
public typealias ValueStream = () throws -> Value?

/// A binary operator handler: returns nil when it does not apply to these operands.
public typealias OperatorHandler = (String, Value, Value) throws -> Value?

/// Everything the language can call or look up, by name: builtins, the attributes of library
/// types, operators on library types, and their indexing and iteration.
public final class Registry {
  public private(set) var builtins: [String: Builtin] = [:]
  public private(set) var attributes: [String: [String: Attribute]] = [:]
  public private(set) var typeDocs: [String: String] = [:]
  var binaryOperators: [OperatorHandler] = []
  var unaryOperators: [(String, Value) throws -> Value?] = []
  var indexGetters: [String: (ScriptObject, [IndexValue]) throws -> Value] = [:]
  var indexSetters: [String: (ScriptObject, [IndexValue], Value) throws -> Void] = [:]
  var iterators: [String: (ScriptObject) throws -> ValueStream] = [:]
  var numberConversions: [String: (ScriptObject) throws -> Double?] = [:]
  /// What `x(...)` does for a callable library type: a builtin whose first parameter is `x`.
  public private(set) var calls: [String: Builtin] = [:]

  public init() {}

  /// The family the next registrations belong to (`help()` and the builtin reference group
  /// builtins by it), and each builtin's family, in the order families were opened.
  public var family = "language" {
    didSet { if !familyOrder.contains(family) { familyOrder.append(family) } }
  }
  public private(set) var familyOrder: [String] = ["language"]
  public private(set) var families: [String: String] = [:]
  /// An example per builtin (statements that run after `examplePrelude`), for help and the
  /// builtin reference.
  public var examples: [String: String] = [:]
  public var examplePrelude = ""
  /// The terminal's width when help goes to a terminal (the REPL sets it before each
  /// statement); nil: no wrapping.
  public var helpWidth: Int?

  /// Registers a builtin; a second registration of a name replaces the first.
  public func register(_ builtin: Builtin) {
    builtins[builtin.name] = builtin
    families[builtin.name] = family
  }

  /// Registers a builtin from its parts.
  public func register(
    _ name: String, _ parameters: [BuiltinParameter] = [], doc: String,
    _ body: @escaping (Arguments, CallContext) throws -> Value
  ) {
    register(Builtin(name, parameters, doc: doc, body))
  }

  /// Describes a library type for `help`.
  public func registerType(_ name: String, doc: String) { typeDocs[name] = doc }

  /// Registers an attribute of a library type.
  public func registerAttribute(_ typeName: String, _ attribute: Attribute) {
    attributes[typeName, default: [:]][attribute.name] = attribute
  }

  /// Registers a binary operator handler for library values (tried in registration order).
  public func registerBinaryOperator(_ handler: @escaping OperatorHandler) {
    binaryOperators.append(handler)
  }

  /// Registers a unary operator handler (`-x`) for library values.
  public func registerUnaryOperator(_ handler: @escaping (String, Value) throws -> Value?) {
    unaryOperators.append(handler)
  }

  /// Registers `x[...]` reading and writing for a library type.
  public func registerIndexing(
    _ typeName: String, get: @escaping (ScriptObject, [IndexValue]) throws -> Value,
    set: ((ScriptObject, [IndexValue], Value) throws -> Void)? = nil
  ) {
    indexGetters[typeName] = get
    if let set { indexSetters[typeName] = set }
  }

  /// Registers `for item in x` for a library type whose items are all known at once.
  public func registerIteration(
    _ typeName: String, _ items: @escaping (ScriptObject) throws -> [Value]
  ) {
    iterators[typeName] = { object in
      var iterator = try items(object).makeIterator()
      return { iterator.next() }
    }
  }

  /// Registers `for item in x` for a library type that makes its items one at a time (a data
  /// loader): the stream returns nil at the end; dropping it (a `break`) ends the iteration.
  public func registerStream(
    _ typeName: String, _ stream: @escaping (ScriptObject) throws -> ValueStream
  ) {
    iterators[typeName] = stream
  }

  /// Registers how a library value becomes a number (format specs, `float`, conditions).
  public func registerNumberConversion(
    _ typeName: String, _ convert: @escaping (ScriptObject) throws -> Double?
  ) {
    numberConversions[typeName] = convert
  }

  /// Makes values of a library type callable: `x(a, b)` calls `builtin(x, a, b)`.
  public func registerCall(_ typeName: String, _ builtin: Builtin) { calls[typeName] = builtin }

  /// Every name completion may offer for `x.` on a value of this type.
  public func attributeNames(of typeName: String) -> [String] {
    (attributes[typeName] ?? [:]).keys.sorted()
  }

  /// The builtins `value.f(...)` can call: those whose first parameter takes this value by its
  /// type (not merely as Any), sorted.
  public func methods(for value: Value) -> [String] {
    builtins.values.filter { b in
      guard let first = b.parameters.first, !first.variadic else { return false }
      switch first.type {
      case .any, .optional(.any): return false
      default:
        if case .nil = value { return false }
        return first.type.accepts(value)
      }
    }.map(\.name).sorted()
  }

  /// The value of an attribute for completion and description, without side effects beyond
  /// the attribute's getter; nil when there is none.
  public func attributeValue(_ value: Value, _ name: String) -> Value? {
    switch value {
    case .record(let box): return box[name]
    case .object(let o): return try? attributes[o.typeName]?[name]?.get(o)
    default: return nil
    }
  }
}

/// An evaluated index entry, handed to library indexing.
public enum IndexValue {
  case value(Value)
  case slice(Int?, Int?, Int?)
}

/// The nearest of `candidates` to `name` by edit distance, if close enough to be a typo. A
/// swap of two neighbouring letters counts as one edit (`dpeth` is one from `depth`).
/// Candidates whose length alone puts them too far are skipped before any distance is
/// computed, so checking many names against many candidates stays fast.
public func closestName(_ name: String, among candidates: [String]) -> String? {
  let limit = Swift.max(1, Swift.min(3, name.count / 3))
  /// Optimal-string-alignment distance, given up (nil) once every entry of a row passes
  /// `bound`.
  func distance(_ a: [Character], _ b: [Character], bound: Int) -> Int? {
    var before = [Int](repeating: 0, count: b.count + 1)
    var previous = Array(0...b.count)
    for (i, ca) in a.enumerated() {
      var row = [i + 1]
      for (j, cb) in b.enumerated() {
        var d = Swift.min(previous[j + 1] + 1, row[j] + 1, previous[j] + (ca == cb ? 0 : 1))
        if i > 0, j > 0, ca == b[j - 1], a[i - 1] == cb { d = Swift.min(d, before[j - 1] + 1) }
        row.append(d)
      }
      if row.min() ?? 0 > bound { return nil }
      before = previous
      previous = row
    }
    return previous[b.count]
  }
  let target = Array(name)
  var best: (String, Int)? = nil
  for candidate in candidates where candidate != name {
    guard abs(candidate.count - target.count) <= Swift.min(limit, (best?.1 ?? .max) - 1) else {
      continue
    }
    let bound = Swift.min(limit, (best?.1 ?? .max) - 1)
    if let d = distance(target, Array(candidate), bound: bound), d <= bound {
      best = (candidate, d)
    }
  }
  return best?.0
}
