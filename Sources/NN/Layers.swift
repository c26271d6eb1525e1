import TensorCore

/// `y = x · weightᵀ + bias` on the last axis: `[..., in] -> [..., out]`; weight is `[out, in]`.
public final class Linear: Module {
  public let weight: Parameter
  public let bias: Parameter?

  public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
    weight = Parameter(Tensor.zeros([outFeatures, inFeatures]))
    self.bias = bias ? Parameter(Tensor.zeros([outFeatures])) : nil
    super.init()
    register()
  }

  private func register() {
    registerExisting("weight", weight)
    if let bias { registerExisting("bias", bias) }
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    let product = try x.matmul(weight.value.transposed())
    guard let bias else { return product }
    return try product + bias.value
  }
}

/// Layer normalisation over the last axis with learnable weight and bias: `[..., D]`.
public final class LayerNorm: Module {
  public let weight: Parameter
  public let bias: Parameter
  public let eps: Float

  public init(_ dimension: Int, eps: Float = 1e-5) {
    weight = Parameter(Tensor.ones([dimension]))
    bias = Parameter(Tensor.zeros([dimension]))
    self.eps = eps
    super.init()
    registerExisting("weight", weight)
    registerExisting("bias", bias)
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try x.layerNorm(weight: weight.value, bias: bias.value, eps: eps)
  }
}

/// Multi-head self-attention with a packed `qkv` projection: `[B, N, D] -> [B, N, D]`.
/// Rows 0..<D of `qkv.weight` make q, D..<2D k, 2D..<3D v; head h owns channels h·hd..<(h+1)·hd.
public final class Attention: Module {
  public let qkv: Linear
  public let proj: Linear
  public let heads: Int

  public init(_ dimension: Int, heads: Int) throws {
    guard heads > 0, dimension % heads == 0 else {
      throw TensorError("attention", "dimension \(dimension) is not divisible by \(heads) heads")
    }
    self.heads = heads
    qkv = Linear(dimension, 3 * dimension)
    proj = Linear(dimension, dimension)
    super.init()
    child("qkv", qkv)
    child("proj", proj)
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    guard x.rank == 3 else {
      throw TensorError("attention", "expects [B, N, D], got \(shapeString(x.shape))")
    }
    let (b, n, d) = (x.shape[0], x.shape[1], x.shape[2])
    let hd = d / heads
    // [B, N, 3, H, hd] -> [3, B, H, N, hd]
    let packed = try qkv(x).reshaped([b, n, 3, heads, hd]).permuted([2, 0, 3, 1, 4])
    let q = try packed[.index(0)]
    let k = try packed[.index(1)]
    let v = try packed[.index(2)]
    // logits = q·kᵀ · hd^-0.5 (the scale multiplies the logits, as the reference does)
    let logits = try q.matmul(k.transposed()) * Float(1 / Double(hd).squareRoot())
    let out = try logits.softmax(axis: -1).matmul(v)  // [B, H, N, hd]
    return try proj(out.permuted([0, 2, 1, 3]).reshaped([b, n, d]))
  }
}

/// `fc2(gelu(fc1(x)))` with hidden size `ratio·D`.
public final class MLP: Module {
  public let fc1: Linear
  public let fc2: Linear

  public init(_ dimension: Int, hidden: Int) {
    fc1 = Linear(dimension, hidden)
    fc2 = Linear(hidden, dimension)
    super.init()
    child("fc1", fc1)
    child("fc2", fc2)
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor { try fc2(fc1(x).gelu()) }
}

/// The pre-norm transformer block: `x + γ1·attn(norm1(x))`, then `+ γ2·mlp(norm2(x))`.
/// LayerScale vectors `gamma_1`, `gamma_2` exist only when `layerScale` is given
/// (Skeleton2vec); MAMP has none.
public final class Block: Module {
  public let norm1: LayerNorm
  public let attn: Attention
  public let norm2: LayerNorm
  public let mlp: MLP
  public let gamma1: Parameter?
  public let gamma2: Parameter?

  public init(
    _ dimension: Int, heads: Int, mlpRatio: Int = 4, eps: Float = 1e-5, layerScale: Float? = nil
  ) throws {
    norm1 = LayerNorm(dimension, eps: eps)
    attn = try Attention(dimension, heads: heads)
    norm2 = LayerNorm(dimension, eps: eps)
    mlp = MLP(dimension, hidden: mlpRatio * dimension)
    gamma1 = layerScale.map { Parameter(Tensor.full([dimension], $0)) }
    gamma2 = layerScale.map { Parameter(Tensor.full([dimension], $0)) }
    super.init()
    child("norm1", norm1)
    child("attn", attn)
    child("norm2", norm2)
    child("mlp", mlp)
    if let gamma1, let gamma2 {
      registerExisting("gamma_1", gamma1)
      registerExisting("gamma_2", gamma2)
    }
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    var a = try attn(norm1(x))
    if let gamma1 { a = try a * gamma1.value }
    let h = try x + a
    var m = try mlp(norm2(h))
    if let gamma2 { m = try m * gamma2.value }
    return try h + m
  }
}
