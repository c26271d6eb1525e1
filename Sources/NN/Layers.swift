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
    try Tensor.linear(x, weight: weight.value, bias: bias?.value)
  }

  /// `residual + scale ⊙ (x · weightᵀ + bias)` in one product: the scale (LayerScale γ) is
  /// folded into the weight rows and the bias, the residual into the output buffer.
  public func callAsFunction(_ x: Tensor, scale: Tensor?, adding residual: Tensor) throws -> Tensor
  {
    let (w, b) = try scaled(scale)
    return try Tensor.linear(x, weight: w, bias: b, adding: residual)
  }

  /// `residual + scale ⊙ (gelu(x) · weightᵀ + bias)`: the layer after a GELU, which backward
  /// recomputes instead of keeping (`Tensor.linear(gelu:weight:bias:adding:)`).
  public func callAsFunction(
    gelu x: consuming Tensor, scale: Tensor? = nil, adding residual: Tensor? = nil
  ) throws -> Tensor {
    let (w, b) = try scaled(scale)
    return try Tensor.linear(gelu: consume x, weight: w, bias: b, adding: residual)
  }

  /// `norm(x) · weightᵀ + bias`: the layer after a layer norm, whose output backward
  /// recomputes instead of keeping (`Tensor.linear(normalizing:...)`).
  public func callAsFunction(normalizing x: Tensor, with norm: LayerNorm) throws -> Tensor {
    try Tensor.linear(
      normalizing: x, normWeight: norm.weight.value, normBias: norm.bias.value, eps: norm.eps,
      weight: weight.value, bias: bias?.value)
  }

  /// The weight and bias with their rows scaled by `scale` (none: as they are).
  package func scaled(_ scale: Tensor?) throws -> (weight: Tensor, bias: Tensor?) {
    guard let scale else { return (weight.value, bias?.value) }
    return (try weight.value * scale.reshaped([-1, 1]), try bias.map { try $0.value * scale })
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
    // Fused and blocked (Tensor+Attention.swift); `composedAttention` is its oracle.
    return try proj(Tensor.packedAttention(qkv(x), heads: heads))
  }

  /// `residual + scale ⊙ attn(norm(x))`: the output projection fused with the residual
  /// connection, the norm's output recomputed in backward.
  public func callAsFunction(
    normalizing x: Tensor, with norm: LayerNorm, scale: Tensor?, adding residual: Tensor
  ) throws -> Tensor {
    guard x.rank == 3 else {
      throw TensorError("attention", "expects [B, N, D], got \(shapeString(x.shape))")
    }
    return try proj(
      Tensor.packedAttention(qkv(normalizing: x, with: norm), heads: heads), scale: scale,
      adding: residual)
  }

  /// The same attention from separate ops (permute, q·kᵀ·scale, softmax, ·v): the reference
  /// the fused kernel is tested against.
  public func composedAttention(_ x: Tensor) throws -> Tensor {
    try proj(Attention.composed(qkv(x), heads: heads))
  }

  /// `Tensor.packedAttention` from separate ops: packed `qkv` `[B, N, 3D]` -> `[B, N, D]`.
  public static func composed(_ qkv: Tensor, heads: Int) throws -> Tensor {
    let (b, n, d) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
    let hd = d / heads
    // [B, N, 3, H, hd] -> [3, B, H, N, hd]
    let packed = try qkv.reshaped([b, n, 3, heads, hd]).permuted([2, 0, 3, 1, 4])
    let q = try packed[.index(0)]
    let k = try packed[.index(1)]
    let v = try packed[.index(2)]
    // logits = q·kᵀ · hd^-0.5 (the scale multiplies the logits, as the reference does)
    let logits = try q.matmul(k.transposed()) * Float(1 / Double(hd).squareRoot())
    let out = try logits.softmax(axis: -1).matmul(v)  // [B, H, N, hd]
    return try out.permuted([0, 2, 1, 3]).reshaped([b, n, d])
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

  public func callAsFunction(_ x: Tensor) throws -> Tensor { try fc2(gelu: fc1(x)) }

  /// `residual + scale ⊙ mlp(norm(x))`: the second product fused with the residual
  /// connection, the norm's output recomputed in backward. Without a gradient to record, the
  /// whole MLP a chunk of rows at a time (`Tensor.normalizedMLP`), with the same bits.
  public func callAsFunction(
    normalizing x: Tensor, with norm: LayerNorm, scale: Tensor?, adding residual: Tensor
  ) throws -> Tensor {
    guard Autograd.isEnabled,
      x.requiresGrad || residual.requiresGrad || scale?.requiresGrad == true
        || hasGradientParameters || norm.hasGradientParameters
    else {
      let (w, b) = try fc2.scaled(scale)
      return try Tensor.normalizedMLP(
        x, normWeight: norm.weight.value, normBias: norm.bias.value, eps: norm.eps,
        weight1: fc1.weight.value, bias1: fc1.bias?.value, weight2: w, bias2: b, adding: residual)
    }
    return try fc2(gelu: fc1(normalizing: x, with: norm), scale: scale, adding: residual)
  }
}

/// The pre-norm transformer block: `x + DropPath(γ1·attn(norm1(x)))`, then
/// `+ DropPath(γ2·mlp(norm2(x)))`: `[B, N, D] -> [B, N, D]`. LayerScale vectors `gamma_1`,
/// `gamma_2` exist only when `layerScale` is given (Skeleton2vec); MAMP has none.
public final class Block: Module {
  public let norm1: LayerNorm
  public let attn: Attention
  public let norm2: LayerNorm
  public let mlp: MLP
  public let gamma1: Parameter?
  public let gamma2: Parameter?
  public let dropPath: DropPath

  public init(
    _ dimension: Int, heads: Int, mlpRatio: Int = 4, eps: Float = 1e-5, layerScale: Float? = nil,
    dropPath: Float = 0
  ) throws {
    norm1 = LayerNorm(dimension, eps: eps)
    attn = try Attention(dimension, heads: heads)
    norm2 = LayerNorm(dimension, eps: eps)
    mlp = MLP(dimension, hidden: mlpRatio * dimension)
    gamma1 = layerScale.map { Parameter(Tensor.full([dimension], $0)) }
    gamma2 = layerScale.map { Parameter(Tensor.full([dimension], $0)) }
    self.dropPath = DropPath(dropPath)
    super.init()
    if let gamma1, let gamma2 {
      registerExisting("gamma_1", gamma1)
      registerExisting("gamma_2", gamma2)
    }
    child("norm1", norm1)
    child("attn", attn)
    child("drop_path", self.dropPath)
    child("norm2", norm2)
    child("mlp", mlp)
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    if dropPath.training && dropPath.probability > 0 {
      var a = try attn(norm1(x))
      if let gamma1 { a = try a * gamma1.value }
      let h = try x + dropPath(a)
      var m = try mlp(norm2(h))
      if let gamma2 { m = try m * gamma2.value }
      return try h + dropPath(m)
    }
    // Without a gradient to record, the whole block a sequence at a time, in cache.
    if x.rank == 3,
      Tensor.blockBySequences(
        batch: x.shape[0], tokens: x.shape[1], width: x.shape[2], heads: attn.heads),
      !Autograd.isEnabled || !(x.requiresGrad || hasGradientParameters)
    {
      return try Tensor.transformerBlock(x, inferenceParameters())
    }
    // Without drop path, LayerScale and the residual additions fold into the output products.
    let h = try attn(normalizing: x, with: norm1, scale: gamma1?.value, adding: x)
    return try mlp(normalizing: h, with: norm2, scale: gamma2?.value, adding: h)
  }
}

extension Block {
  /// The block's parameters for `Tensor.transformerBlock`, LayerScale folded into the
  /// projection's and fc2's rows as the composed path folds it.
  private func inferenceParameters() throws -> BlockParameters {
    let (proj, fc2) = (try attn.proj.scaled(gamma1?.value), try mlp.fc2.scaled(gamma2?.value))
    return BlockParameters(
      norm1: (norm1.weight.value, norm1.bias.value, norm1.eps),
      qkv: (attn.qkv.weight.value, attn.qkv.bias?.value), proj: proj,
      norm2: (norm2.weight.value, norm2.bias.value, norm2.eps),
      fc1: (mlp.fc1.weight.value, mlp.fc1.bias?.value), fc2: fc2, heads: attn.heads)
  }
}

/// Element-wise dropout in training mode; the identity in inference mode.
public final class Dropout: Module {
  public let probability: Float

  public init(_ probability: Float) {
    self.probability = probability
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try x.dropout(probability: probability, training: training)
  }
}

/// Stochastic depth: in training, each sample (first axis) of a residual branch is kept with
/// probability `1 - p` and scaled by `1/(1 - p)`, or zeroed; the identity in inference mode.
public final class DropPath: Module {
  public let probability: Float

  public init(_ probability: Float) {
    self.probability = probability
    super.init()
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    guard training, probability > 0 else { return x }
    guard probability < 1 else { return x * 0 }
    let keep = 1 - probability
    var shape = [Int](repeating: 1, count: x.rank)
    shape[0] = x.shape[0]
    // In a data-parallel step, the draws of the whole batch (as one process draws them), of
    // which this rank takes its samples' rows.
    let whole = DataParallel.wholeBatch(rows: x.shape[0])
    let all = Random.withGenerator { generator in
      (0..<whole.rows).map { _ in generator.nextFloat() < keep ? 1 / keep : Float(0) }
    }
    let mask = try Tensor(shape: shape, scalars: Array(all[whole.mine]))
    return try x * mask
  }
}

/// Batch normalisation over the channel axis 1 of `[N, C]` or `[N, C, L]` (statistics over
/// N, and L): biased variance to normalise, unbiased variance into `running_var`, momentum 0.1,
/// as `torch.nn.BatchNorm1d`. Without `affine` it has no weight and bias (the linear probe).
public final class BatchNorm1d: Module {
  public let weight: Parameter?
  public let bias: Parameter?
  public let runningMean: Buffer
  public let runningVar: Buffer
  public let batchesTracked: Buffer
  public let eps: Float
  public let momentum: Float

  public init(_ features: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true) {
    self.eps = eps
    self.momentum = momentum
    weight = affine ? Parameter(Tensor.ones([features])) : nil
    bias = affine ? Parameter(Tensor.zeros([features])) : nil
    runningMean = Buffer(Tensor.zeros([features]))
    runningVar = Buffer(Tensor.ones([features]))
    batchesTracked = Buffer(Tensor(0))
    super.init()
    if let weight, let bias {
      registerExisting("weight", weight)
      registerExisting("bias", bias)
    }
    registerExisting("running_mean", runningMean)
    registerExisting("running_var", runningVar)
    registerExisting("num_batches_tracked", batchesTracked)
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    let features = runningMean.value.count
    guard (x.rank == 2 || x.rank == 3), x.shape[1] == features else {
      throw TensorError(
        "batch_norm",
        "expects [N, \(features)] or [N, \(features), L], got \(shapeString(x.shape))")
    }
    let axes = x.rank == 2 ? [0] : [0, 2]
    let statShape = x.rank == 2 ? [1, features] : [1, features, 1]
    let normalised: Tensor
    if training {
      var n = axes.reduce(1) { $0 * x.shape[$1] }
      // In a data-parallel step of several ranks, the statistics of the global batch.
      let group = DataParallel.current.map(\.group).flatMap { $0.size > 1 ? $0 : nil }
      guard n > 1 || group != nil else {
        throw TensorError(
          "batch_norm",
          "needs more than 1 value per channel in training mode, got \(shapeString(x.shape))")
      }
      let mean: Tensor
      let variance: Tensor
      if let group {
        // Every rank's sums, then the same statistics on each.
        var counts = [Float(n)]
        try group.allReduceSum(&counts)
        n = Int(counts[0])
        guard n > 1 else {
          throw TensorError(
            "batch_norm", "needs more than 1 value per channel in training mode, got \(n)")
        }
        mean = try x.sum(axes: axes, keepDim: true).summedOverRanks() * (1 / Float(n))
        let centered = try x - mean
        variance =
          try (centered * centered).sum(axes: axes, keepDim: true).summedOverRanks()
          * (1 / Float(n))
      } else {
        mean = try x.mean(axes: axes, keepDim: true)
        variance = try x.variance(axes: axes, keepDim: true)
      }
      normalised = try (x - mean) / (variance + eps).sqrt()
      try Autograd.noGrad {
        let m = momentum
        let unbiased = try variance.detached().reshaped([features]) * (Float(n) / Float(n - 1))
        runningMean.value =
          try runningMean.value * (1 - m) + mean.detached().reshaped([features]) * m
        runningVar.value = try runningVar.value * (1 - m) + unbiased * m
        batchesTracked.value = batchesTracked.value + 1
      }
    } else {
      let mean = try runningMean.value.reshaped(statShape)
      let variance = try runningVar.value.reshaped(statShape)
      normalised = try (x - mean) / (variance + eps).sqrt()
    }
    guard let weight, let bias else { return normalised }
    return try normalised * weight.value.reshaped(statShape) + bias.value.reshaped(statShape)
  }
}
