import Foundation

/// A SkelLab value. Lists and records are shared by reference; library objects (Tensor,
/// Model, ...) are opaque to the language and described by their registered type.
public enum Value {
  case `nil`
  case bool(Bool)
  case int(Int)
  case float(Double)
  case string(String)
  case list(ListBox)
  case record(RecordBox)
  case function(Function)
  case builtin(Builtin)
  case object(ScriptObject)

  /// A literal as the parser sees it.
  public enum Literal: Sendable {
    case `nil`, bool(Bool), int(Int), float(Double)
  }

  /// The name users see in messages and `help` (`Int`, `List`, `Tensor`).
  public var typeName: String {
    switch self {
    case .nil: return "nil"
    case .bool: return "Bool"
    case .int: return "Int"
    case .float: return "Float"
    case .string: return "String"
    case .list: return "List"
    case .record: return "Record"
    case .function: return "Function"
    case .builtin: return "Builtin"
    case .object(let o): return o.typeName
    }
  }

  /// The value of a parsed literal.
  init(_ literal: Literal) {
    switch literal {
    case .nil: self = .nil
    case .bool(let b): self = .bool(b)
    case .int(let i): self = .int(i)
    case .float(let d): self = .float(d)
    }
  }

  /// Convenience for building lists.
  public static func list(_ items: [Value]) -> Value { .list(ListBox(items)) }
}

/// A mutable list shared by reference.
public final class ListBox {
  public var items: [Value]
  public init(_ items: [Value]) { self.items = items }
}

/// A record: ordered string keys, shared by reference.
public final class RecordBox {
  public private(set) var keys: [String] = []
  private var values: [String: Value] = [:]

  public init(_ entries: [(String, Value)] = []) {
    for (k, v) in entries { self[k] = v }
  }

  public subscript(key: String) -> Value? {
    get { values[key] }
    set {
      if let newValue {
        if values[key] == nil { keys.append(key) }
        values[key] = newValue
      } else if values.removeValue(forKey: key) != nil {
        keys.removeAll { $0 == key }
      }
    }
  }

  public var entries: [(key: String, value: Value)] {
    keys.compactMap { k in values[k].map { (k, $0) } }
  }
}

/// A library object's behaviour as the language sees it: a type name (its attributes and
/// methods are registered under it) and how it prints.
public protocol ScriptObject: AnyObject {
  /// The registered type name (`Tensor`, `Model`).
  var typeName: String { get }
  /// How the REPL echoes it and `print` shows it.
  func display() -> String
}

/// A user-defined function: parameters, body and the scope it closes over.
public final class Function {
  public let name: String
  let parameters: [ParameterNode]
  let body: [Stmt]
  let closure: Environment
  let range: SourceRange
  /// Default values, evaluated once where the function is defined.
  var defaults: [String: Value] = [:]

  init(
    name: String, parameters: [ParameterNode], body: [Stmt], closure: Environment,
    range: SourceRange
  ) {
    self.name = name
    self.parameters = parameters
    self.body = body
    self.closure = closure
    self.range = range
  }
}

// MARK: Display (§7)

extension Value {
  /// The echo form: strings quoted, everything else as `print` shows it.
  public var repr: String {
    if case .string(let s) = self { return Value.quote(s) }
    return description
  }

  /// The `print` form: strings bare.
  public var description: String {
    switch self {
    case .nil: return "nil"
    case .bool(let b): return b ? "true" : "false"
    case .int(let i): return String(i)
    case .float(let d): return Value.formatFloat(d)
    case .string(let s): return s
    case .list(let box): return "[" + box.items.map(\.repr).joined(separator: ", ") + "]"
    case .record(let box):
      return "{"
        + box.entries.map { Value.recordKey($0.key) + ": " + $0.value.repr }.joined(separator: ", ")
        + "}"
    case .function(let f):
      return "<function \(f.name)(\(f.parameters.map(\.name).joined(separator: ", ")))>"
    case .builtin(let b): return "<builtin \(b.signature)>"
    case .object(let o): return o.display()
    }
  }

  /// Shortest form that reads back exactly, always with a `.` or an exponent.
  public static func formatFloat(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    var text = "\(d)"
    if !text.contains(".") && !text.contains("e") { text += ".0" }
    return text
  }

  static func quote(_ s: String) -> String {
    var out = "\""
    for c in s {
      switch c {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\t": out += "\\t"
      case "{": out += "{{"
      case "}": out += "}}"
      default: out.append(c)
      }
    }
    return out + "\""
  }

  static func recordKey(_ key: String) -> String {
    let isName =
      !key.isEmpty && !keywords.contains(key)
      && key.unicodeScalars.enumerated().allSatisfy { i, c in
        c == "_" || c.properties.isAlphabetic || (i > 0 && ("0"..."9").contains(c))
      }
    return isName ? key : quote(key)
  }
}
