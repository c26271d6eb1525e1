import Foundation
import ScriptCore
import TensorCore

/// The tensor builtins of language.md §5: creation, maths, reductions, shapes, autograd and
/// files, plus the Tensor type's attributes, operators, indexing and iteration. Each is one
/// registration; the interpreter is never touched to add one.
public enum TensorBuiltins {
  public static func register(in registry: Registry) {
    registerType(registry)
    registerCreation(registry)
    registerMaths(registry)
    registerReductions(registry)
    registerShapes(registry)
    registerAutograd(registry)
    registerFiles(registry)
  }

  // MARK: Conversions

  /// A tensor from a Tensor, a number or a nested List of numbers (and of Bools and tensors
  /// when `booleans`); nil for any other value. A list holding something else throws.
  static func convert(_ value: Value, booleans: Bool) throws -> Tensor? {
    func literal(_ item: Value) throws -> TensorLiteral {
      switch item {
      case .int(let i): return .scalar(Double(i))
      case .float(let d): return .scalar(d)
      case .bool(let b) where booleans: return .scalar(b ? 1 : 0)
      case .list(let box): return .list(try box.items.map(literal))
      case .object(let o as TensorObject) where booleans: return try literal(nested(o.tensor))
      default: throw ScriptError(.type, "a tensor literal holds numbers, not \(item.typeName)")
      }
    }
    switch value {
    case .object(let o as TensorObject): return o.tensor
    case .int(let i): return Tensor(Float(i))
    case .float(let d): return Tensor(Float(d))
    case .bool(let b) where booleans: return Tensor(b ? 1 : 0)
    case .list: return try Tensor(literal: literal(value))
    default: return nil
    }
  }

  /// A builtin's tensor argument: a Tensor, a number, a Bool or a nested List of them.
  static func tensor(_ value: Value, _ args: Arguments, _ name: String) throws -> Tensor {
    let converted: Tensor?
    do {
      converted = try convert(value, booleans: true)
    } catch let error as ScriptError {
      throw args.error(name, error.message)
    }
    guard let converted else {
      throw args.error(
        name, "expected a Tensor, a number or a List of numbers, got \(value.typeName)")
    }
    return converted
  }

  /// A builtin's List-of-tensors argument (`concat`, `stack`).
  static func tensors(_ args: Arguments, _ name: String) throws -> [Tensor] {
    try args.list(name).map { try tensor($0, args, name) }
  }

  /// Nested Lists of Floats (`list(t)`).
  static func nested(_ t: Tensor) -> Value {
    let values = t.scalars
    if t.rank == 0 { return .float(Double(values[0])) }
    func build(_ axis: Int, _ offset: Int, _ strides: [Int]) -> Value {
      .list(
        (0..<t.shape[axis]).map { i in
          axis == t.rank - 1
            ? .float(Double(values[offset + i]))
            : build(axis + 1, offset + i * strides[axis], strides)
        })
    }
    return build(0, 0, TensorDisplay.stridesOf(t.shape))
  }

  /// A shape from an Int or a List of Ints.
  static func shape(_ value: Value, _ args: Arguments, _ name: String) throws -> [Int] {
    switch value {
    case .int(let i): return [i]
    case .list(let box):
      return try box.items.map {
        guard case .int(let i) = $0 else {
          throw args.error(name, "a shape is a List of Int, found \($0.typeName)")
        }
        return i
      }
    default: throw args.error(name, "a shape is an Int or a List of Int, got \(value.typeName)")
    }
  }

  /// Axes from nil (all), an Int or a List of Ints.
  static func axes(_ value: Value, _ args: Arguments, _ name: String) throws -> [Int]? {
    if case .nil = value { return nil }
    return try shape(value, args, name)
  }

  static let tensorLike = ParameterType.oneOf([.object("Tensor"), .number, .list, .bool])
  static let axisType = ParameterType.optional(.oneOf([.int, .list]))

  // MARK: Type

  static func registerType(_ registry: Registry) {
    registry.registerType(
      "Tensor",
      doc: "A float32 array of any rank, row-major. Arithmetic broadcasts like NumPy and mixes "
        + "with numbers; `@` is the matrix product. Functions such as sum, reshape or softmax "
        + "are also methods: t.sum(axis=0) is sum(t, axis=0).")
    func attribute(_ name: String, _ doc: String, _ get: @escaping (Tensor) throws -> Value) {
      registry.registerAttribute(
        "Tensor",
        Attribute(name, doc: doc) { o in try get((o as? TensorObject)?.tensor ?? Tensor(0)) })
    }
    attribute("shape", "the size of each axis, a List of Int") { .list($0.shape.map(Value.int)) }
    attribute("ndim", "the number of axes") { .int($0.rank) }
    attribute("size", "the number of elements") { .int($0.count) }
    attribute("length", "the size of the first axis") { t in
      guard let first = t.shape.first else {
        throw TensorError("len", "a rank-0 tensor has no length")
      }
      return .int(first)
    }
    attribute("grad", "the accumulated gradient after backward, or nil") { t in
      t.grad.map(Value.tensor) ?? .nil
    }
    registry.registerAttribute(
      "Tensor",
      Attribute(
        "requires_grad", doc: "whether gradients flow to this tensor (settable on leaves)",
        get: { o in .bool((o as? TensorObject)?.tensor.requiresGrad ?? false) },
        set: { o, value in
          guard let box = o as? TensorObject else { return }
          guard case .bool(let flag) = value else {
            throw ScriptError(.type, "requires_grad must be Bool, got \(value.typeName)")
          }
          try box.tensor.setRequiresGrad(flag)
        }))
    registry.registerNumberConversion("Tensor") { o in
      guard let t = (o as? TensorObject)?.tensor, t.count == 1 else { return nil }
      return Double(try t.item())
    }
    registry.registerIteration("Tensor") { o in
      guard let t = (o as? TensorObject)?.tensor else { return [] }
      guard let n = t.shape.first else {
        throw TensorError("iterate", "cannot iterate over a rank-0 tensor")
      }
      return try (0..<n).map { .tensor(try t[.index($0)]) }
    }
    registry.registerIndexing(
      "Tensor",
      get: { o, indices in
        guard let t = (o as? TensorObject)?.tensor else { return .nil }
        return .tensor(try t[try tensorIndices(indices)])
      },
      set: { o, indices, value in
        guard let box = o as? TensorObject else { return }
        guard let source = try convert(value, booleans: false) else {
          throw ScriptError(.type, "cannot store \(value.typeName) in a Tensor")
        }
        try box.tensor.assign(source, at: try tensorIndices(indices))
      })
    registry.registerBinaryOperator { op, left, right in
      guard isTensor(left) || isTensor(right) else { return nil }
      guard let a = try? convert(left, booleans: false),
        let b = try? convert(right, booleans: false)
      else {
        throw ScriptError(
          .type, "'\(op)' does not apply to \(left.typeName) and \(right.typeName)")
      }
      switch op {
      case "+": return .tensor(try a + b)
      case "-": return .tensor(try a - b)
      case "*": return .tensor(try a * b)
      case "/": return .tensor(try a / b)
      case "**": return .tensor(try Tensor.pow(a, b))
      case "@": return .tensor(try a.matmul(b))
      case "<": return .tensor(try Tensor.less(a, b))
      case "<=": return .tensor(try Tensor.lessEqual(a, b))
      case ">": return .tensor(try Tensor.greater(a, b))
      case ">=": return .tensor(try Tensor.greaterEqual(a, b))
      case "==": return .tensor(try Tensor.equal(a, b))
      case "!=": return .tensor(try Tensor.notEqual(a, b))
      default: return nil
      }
    }
    registry.registerUnaryOperator { op, value in
      guard op == "-", case .object(let o as TensorObject) = value else { return nil }
      return .tensor(-o.tensor)
    }
  }

  static func isTensor(_ value: Value) -> Bool {
    if case .object(_ as TensorObject) = value { return true }
    return false
  }

  static func tensorIndices(_ indices: [IndexValue]) throws -> [TensorIndex] {
    try indices.map { entry in
      switch entry {
      case .slice(let a, let b, let c): return .range(a, b, c ?? 1)
      case .value(.int(let i)): return .index(i)
      case .value(.nil): return .newAxis
      case .value(let v):
        throw ScriptError(.type, "a tensor index is an Int, a slice or nil, got \(v.typeName)")
      }
    }
  }
}
