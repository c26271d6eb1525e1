/// A nested list of numbers, as a script or a file writes a tensor literal.
public indirect enum TensorLiteral: Sendable, Equatable {
  case scalar(Double)
  case list([TensorLiteral])
}

extension Tensor {
  /// A tensor of `shape` filled with `value`.
  public static func full(_ shape: [Int], _ value: Float) -> Tensor {
    let count = shape.reduce(1) { $0 &* Swift.max($1, 0) }
    return Tensor(
      storage: TensorStorage(count: count, repeating: value),
      shape: shape.map {
        Swift.max($0, 0)
      })
  }

  /// A tensor of `shape` filled with `value`, rejecting negative or huge shapes.
  public static func full(checked shape: [Int], _ value: Float, op: String = "full") throws
    -> Tensor
  {
    _ = try Shape.elementCount(shape, op: op)
    return full(shape, value)
  }

  /// Zeros of `shape`.
  public static func zeros(_ shape: [Int]) -> Tensor { full(shape, 0) }
  /// Ones of `shape`.
  public static func ones(_ shape: [Int]) -> Tensor { full(shape, 1) }

  /// `start, start+step, ...` up to but excluding `end` (as NumPy `arange`).
  public static func arange(_ start: Double = 0, _ end: Double, step: Double = 1) throws -> Tensor {
    guard step != 0, step.isFinite, start.isFinite, end.isFinite else {
      throw TensorError(
        "arange", "needs finite bounds and a non-zero step, got \(start), \(end), \(step)")
    }
    let n = Swift.max(0, Int(((end - start) / step).rounded(.up)))
    return try Tensor(shape: [n], op: "arange") { out in
      for i in out.indices { out[i] = Float(start + Double(i) * step) }
    }
  }

  /// The `n × m` identity (m defaults to n).
  public static func eye(_ n: Int, _ m: Int? = nil) throws -> Tensor {
    let cols = m ?? n
    return try Tensor(shape: [n, cols], op: "eye") { out in
      for i in out.indices { out[i] = 0 }
      for i in 0..<Swift.min(n, cols) { out[i * cols + i] = 1 }
    }
  }

  /// Standard normal draws from `generator`.
  public static func randn(_ shape: [Int], generator: inout RandomGenerator) throws -> Tensor {
    try Tensor(shape: shape, op: "randn") { out in
      var i = 0
      while i < out.count {
        let (a, b) = generator.nextNormalPair()
        out[i] = Float(a)
        if i + 1 < out.count { out[i + 1] = Float(b) }
        i += 2
      }
    }
  }

  /// Uniform draws in [0, 1) from `generator`.
  public static func rand(_ shape: [Int], generator: inout RandomGenerator) throws -> Tensor {
    try Tensor(shape: shape, op: "rand") { out in
      for i in out.indices { out[i] = generator.nextFloat() }
    }
  }

  /// Uniform integers in `low..<high` (stored as floats) from `generator`.
  public static func randint(
    _ low: Int, _ high: Int, _ shape: [Int], generator: inout RandomGenerator
  ) throws -> Tensor {
    guard high > low else { throw TensorError("randint", "empty range \(low)..<\(high)") }
    return try Tensor(shape: shape, op: "randint") { out in
      for i in out.indices { out[i] = Float(low + (try generator.nextInt(below: high - low))) }
    }
  }

  /// Standard normal draws from the global generator.
  public static func randn(_ shape: [Int]) throws -> Tensor {
    try Random.withGenerator { try randn(shape, generator: &$0) }
  }

  /// Uniform [0, 1) draws from the global generator.
  public static func rand(_ shape: [Int]) throws -> Tensor {
    try Random.withGenerator { try rand(shape, generator: &$0) }
  }

  /// A tensor from a nested list; every level must be rectangular.
  public init(literal: TensorLiteral) throws {
    var shape: [Int] = []
    var level = literal
    while case .list(let items) = level {
      shape.append(items.count)
      guard let first = items.first else { break }
      level = first
    }
    var values: [Float] = []
    values.reserveCapacity(try Shape.elementCount(shape, op: "tensor"))
    func walk(_ node: TensorLiteral, depth: Int, path: [Int]) throws {
      switch node {
      case .scalar(let v):
        guard depth == shape.count else {
          throw TensorError(
            "tensor",
            "ragged nested list: a number at \(path) where a list of \(shape[depth]) "
              + "was expected")
        }
        values.append(Float(v))
      case .list(let items):
        guard depth < shape.count, items.count == shape[depth] else {
          throw TensorError(
            "tensor",
            "ragged nested list: the list at \(path) has \(items.count) items, expected "
              + (depth < shape.count ? "\(shape[depth])" : "a number"))
        }
        for (i, item) in items.enumerated() { try walk(item, depth: depth + 1, path: path + [i]) }
      }
    }
    try walk(literal, depth: 0, path: [])
    try self.init(shape: shape, scalars: values)
  }
}
