import TensorCore

/// The weight initialisers of PyTorch and timm, drawing from the global generator
/// (`Random.seed` makes them reproducible).
public enum Initialization {
  /// Normal(0, std²) restricted to [lower, upper] by redrawing (timm's `trunc_normal_`).
  public static func truncatedNormal(
    _ shape: [Int], std: Float, lower: Float = -2, upper: Float = 2
  ) throws -> Tensor {
    try Tensor(shape: shape, op: "trunc_normal") { values in
      Random.withGenerator { generator in
        for i in values.indices {
          var v: Float
          repeat { v = Float(generator.nextNormal()) * std } while v < lower || v > upper
          values[i] = v
        }
      }
    }
  }

  /// Uniform(-bound, bound).
  public static func uniform(_ shape: [Int], bound: Float) throws -> Tensor {
    try Tensor(shape: shape, op: "uniform") { values in
      Random.withGenerator { generator in
        for i in values.indices { values[i] = (2 * generator.nextFloat() - 1) * bound }
      }
    }
  }

  /// Xavier (Glorot) uniform for a `[out, in, ...]` weight: bound √(6 / (fan_in + fan_out)).
  public static func xavierUniform(_ shape: [Int]) throws -> Tensor {
    let receptive = shape.dropFirst(2).reduce(1, *)
    let fanIn = (shape.count > 1 ? shape[1] : 1) * receptive
    let fanOut = shape[0] * receptive
    return try uniform(shape, bound: (6 / Float(fanIn + fanOut)).squareRoot())
  }

  /// PyTorch's default for Linear and Conv weights (Kaiming uniform with a = √5):
  /// bound 1/√fan_in, the same bound as the default bias.
  public static func defaultUniform(_ shape: [Int], fanIn: Int) throws -> Tensor {
    try uniform(shape, bound: 1 / Float(fanIn).squareRoot())
  }

  /// PyTorch's default initialisation of one `nn.Linear`: weight and bias from U(±1/√fan_in).
  public static func torchDefault(_ linear: Linear) throws {
    let fanIn = linear.weight.value.shape[1]
    linear.weight.assign(try defaultUniform(linear.weight.value.shape, fanIn: fanIn))
    linear.bias?.assign(try defaultUniform([linear.weight.value.shape[0]], fanIn: fanIn))
  }

  /// Sets every `Linear` in `module` to Xavier-uniform weights and zero biases (MAMP).
  public static func xavierLinears(_ module: Module) throws {
    for (_, m) in module.namedModules() {
      guard let linear = m as? Linear else { continue }
      linear.weight.assign(try xavierUniform(linear.weight.value.shape))
      linear.bias?.assign(Tensor.zeros(linear.bias?.value.shape ?? []))
    }
  }

  /// Sets every `Linear` in `module` to truncated-normal weights and zero biases.
  public static func truncatedNormalLinears(_ module: Module, std: Float) throws {
    for (_, m) in module.namedModules() {
      guard let linear = m as? Linear else { continue }
      linear.weight.assign(try truncatedNormal(linear.weight.value.shape, std: std))
      linear.bias?.assign(Tensor.zeros(linear.bias?.value.shape ?? []))
    }
  }
}
