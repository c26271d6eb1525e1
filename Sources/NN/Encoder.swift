import TensorCore

/// The joint-segment embedding (`joints_embed.proj`): the official Conv2d with kernel = stride
/// = (u, 1), computed as one matmul over each segment flattened in (c, u) order.
/// `[B, T, J, C] -> [B, T/u, J, D]`; weight `[D, C, u, 1]` as stored by PyTorch.
public final class JointEmbedding: Module {
  public let weight: Parameter
  public let bias: Parameter
  public let segment: Int
  public let channels: Int

  public init(channels: Int = 3, dimension: Int, segment: Int) {
    self.segment = segment
    self.channels = channels
    weight = Parameter(Tensor.zeros([dimension, channels, segment, 1]))
    bias = Parameter(Tensor.zeros([dimension]))
    super.init()
    registerExisting("weight", weight)
    registerExisting("bias", bias)
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    guard x.rank == 4, x.shape[3] == channels, x.shape[1] % segment == 0 else {
      throw TensorError(
        "joint_embed",
        "expects [B, T, J, \(channels)] with T divisible by the segment length "
          + "\(segment), got \(shapeString(x.shape))")
    }
    let (b, t, j) = (x.shape[0], x.shape[1], x.shape[2])
    let d = weight.value.shape[0]
    // [B, TP, u, J, C] -> [B, TP, J, C, u] -> [B, TP, J, C·u]: element c·u + k, as the Conv2d.
    let segments = try x.reshaped([b, t / segment, segment, j, channels]).permuted([0, 1, 3, 4, 2])
      .contiguous().reshaped([b, t / segment, j, channels * segment])
    let kernel = try weight.value.reshaped([d, channels * segment])
    return try segments.matmul(kernel.transposed()) + bias.value
  }
}

/// The two parameterisations of the encoder (methods.md §2.3, §2.6).
public enum Flavor: String, Sendable, CaseIterable {
  /// MAMP: LayerNorm eps 1e-5, no LayerScale, Xavier-uniform Linears, segment length 4.
  case mamp
  /// Skeleton2vec: eps 1e-6, LayerScale 1e-4, truncated-normal Linears, segment length 3.
  case skeleton2vec

  /// The LayerNorm epsilon.
  public var eps: Float { self == .mamp ? 1e-5 : 1e-6 }
  /// The LayerScale initial value, nil for none.
  public var layerScale: Float? { self == .mamp ? nil : 1e-4 }
  /// The default segment length u.
  public var segment: Int { self == .mamp ? 4 : 3 }
}

/// The skeleton transformer encoder of methods.md §2 in MAMP's naming:
/// `[B, T, J, C] -> [B, (T/u)·J, D]` tokens (token index t·J + j), after `depth` pre-norm
/// blocks and the final `norm`. It can run on a subset of the tokens (masking), return every
/// block's raw output (teacher targets) and pool a sequence feature (evaluation).
public final class Encoder: Module {
  public let embedding: JointEmbedding
  public let posEmbed: Parameter
  public let tempEmbed: Parameter
  public let blocks: [Block]
  public let norm: LayerNorm
  public let dimension: Int
  public let heads: Int
  public let joints: Int
  public let segments: Int
  public let flavor: Flavor

  /// Builds the encoder and initialises it as its flavour does (§2.6). Block i gets drop path
  /// `dropPath · i / (depth − 1)`.
  public init(
    dimension: Int, depth: Int, heads: Int, segment: Int, frames: Int, joints: Int,
    mlpRatio: Int = 4, eps: Float = 1e-5, layerScale: Float? = nil, dropPath: Float = 0,
    flavor: Flavor = .mamp
  ) throws {
    guard dimension > 0, depth >= 0, heads > 0, segment > 0, frames > 0, joints > 0 else {
      throw TensorError(
        "encoder",
        "dim \(dimension), depth \(depth), heads \(heads), patch \(segment), frames \(frames) "
          + "and joints \(joints) must be positive")
    }
    guard frames % segment == 0 else {
      throw TensorError(
        "encoder", "frames \(frames) are not divisible by the segment length \(segment)")
    }
    self.dimension = dimension
    self.heads = heads
    self.joints = joints
    self.flavor = flavor
    segments = frames / segment
    embedding = JointEmbedding(dimension: dimension, segment: segment)
    posEmbed = Parameter(Tensor.zeros([1, 1, joints, dimension]))
    tempEmbed = Parameter(Tensor.zeros([1, frames / segment, 1, dimension]))
    blocks = try (0..<depth).map { i in
      try Block(
        dimension, heads: heads, mlpRatio: mlpRatio, eps: eps, layerScale: layerScale,
        dropPath: depth > 1 ? dropPath * Float(i) / Float(depth - 1) : 0)
    }
    norm = LayerNorm(dimension, eps: eps)
    super.init()
    registerExisting("pos_embed", posEmbed)
    registerExisting("temp_embed", tempEmbed)
    child("joints_embed", Module()).child("proj", embedding)
    let container = child("blocks", Module())
    for (i, block) in blocks.enumerated() { container.child(String(i), block) }
    child("norm", norm)
    try initialize()
  }

  /// An encoder with its flavour's eps, LayerScale and segment length (§2.3).
  public convenience init(
    flavor: Flavor, dimension: Int, depth: Int, heads: Int, frames: Int, joints: Int = 25,
    segment: Int? = nil, mlpRatio: Int = 4, dropPath: Float = 0
  ) throws {
    try self.init(
      dimension: dimension, depth: depth, heads: heads, segment: segment ?? flavor.segment,
      frames: frames, joints: joints, mlpRatio: mlpRatio, eps: flavor.eps,
      layerScale: flavor.layerScale, dropPath: dropPath, flavor: flavor)
  }

  /// The initialisation of methods.md §2.6 for this encoder's flavour.
  public func initialize() throws {
    let fanIn = embedding.channels * embedding.segment
    switch flavor {
    case .mamp:
      try Initialization.xavierLinears(self)
      posEmbed.assign(try Initialization.truncatedNormal(posEmbed.value.shape, std: 0.02))
      tempEmbed.assign(try Initialization.truncatedNormal(tempEmbed.value.shape, std: 0.02))
      embedding.weight.assign(
        try Initialization.defaultUniform(embedding.weight.value.shape, fanIn: fanIn))
      embedding.bias.assign(
        try Initialization.defaultUniform(embedding.bias.value.shape, fanIn: fanIn))
    case .skeleton2vec:
      try Initialization.truncatedNormalLinears(self, std: 0.02)
      embedding.weight.assign(
        try Initialization.truncatedNormal(embedding.weight.value.shape, std: 0.02))
      embedding.bias.assign(Tensor.zeros(embedding.bias.value.shape))
      posEmbed.assign(try Initialization.truncatedNormal(posEmbed.value.shape, std: 0.02))
      // The reference initialises the spatial embedding twice and the temporal one never.
      tempEmbed.assign(Tensor.zeros(tempEmbed.value.shape))
    }
  }

  /// The number of tokens of one sequence, `TP·J`.
  public var tokenCount: Int { segments * joints }
  /// The number of frames the encoder expects.
  public var frames: Int { segments * embedding.segment }

  /// Embedded tokens with positional embeddings: `[B, T, J, C] -> [B, TP·J, D]`.
  public func embed(_ x: Tensor) throws -> Tensor {
    guard x.rank == 4, x.shape[1] == frames, x.shape[2] == joints,
      x.shape[3] == embedding.channels
    else {
      let hint =
        x.rank == 4 && x.shape[2] != joints
        ? " (the data has \(x.shape[2]) joints: build the encoder with joints=\(x.shape[2]))" : ""
      throw TensorError(
        "encoder",
        "expects [B, \(frames), \(joints), \(embedding.channels)], got \(shapeString(x.shape))"
          + hint)
    }
    let embedded = try embedding(x) + posEmbed.value + tempEmbed.value  // [B, TP, J, D]
    return try embedded.reshaped([x.shape[0], tokenCount, dimension])
  }

  /// Final-norm tokens and the raw output of every block. With `keep` (`[B, K]` token indices)
  /// only those tokens enter the blocks, in that order: `[B, K, D]`.
  public func forwardWithHidden(_ x: Tensor, keep: Tensor? = nil) throws -> (
    tokens: Tensor, hidden: [Tensor]
  ) {
    let run = try blocksRun(x, keep: keep, keepingLast: blocks.count)
    return (try norm(run.last), run.hidden)
  }

  /// The raw output of the last `last` blocks (all when nil), without the final norm: what
  /// Skeleton2vec's teacher targets use. The others are freed as the pass goes on.
  public func hiddenStates(_ x: Tensor, keep: Tensor? = nil, last: Int? = nil) throws -> [Tensor] {
    try blocksRun(x, keep: keep, keepingLast: last ?? blocks.count).hidden
  }

  /// Runs the blocks, keeping the outputs of the last `keepingLast` of them.
  private func blocksRun(_ x: Tensor, keep: Tensor?, keepingLast: Int) throws -> (
    last: Tensor, hidden: [Tensor]
  ) {
    var h = try embed(x)
    if let keep { h = try Tokens.select(h, keep) }
    var hidden: [Tensor] = []
    for (index, block) in blocks.enumerated() {
      h = try block(h)
      if index >= blocks.count - keepingLast { hidden.append(h) }
    }
    return (h, hidden)
  }

  /// Final-norm tokens: `[B, T, J, C] -> [B, TP·J, D]`.
  public func callAsFunction(_ x: Tensor) throws -> Tensor { try tokens(x) }

  /// Final-norm tokens, with `keep` as in `forwardWithHidden`, without keeping the blocks'
  /// outputs (in inference each is freed once the next block has it).
  public func tokens(_ x: Tensor, keep: Tensor? = nil) throws -> Tensor {
    try norm(blocksRun(x, keep: keep, keepingLast: 0).last)
  }

  /// Final-norm tokens of an `[N, C, T, J, M]` batch with bodies folded into the batch:
  /// `[N, M, TP, J, D]`.
  public func bodyTokens(_ x: Tensor) throws -> Tensor {
    guard x.rank == 5 else {
      throw TensorError("features", "expects [N, C, T, J, M], got \(shapeString(x.shape))")
    }
    let (n, c, t, j, m) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
    let sequences = try x.permuted([0, 4, 2, 3, 1]).contiguous().reshaped([n * m, t, j, c])
    return try self(sequences).reshaped([n, m, segments, joints, dimension])
  }

  /// The sequence feature of §2.7: final-norm tokens averaged over all tokens and over the
  /// bodies (a zero second body is averaged in): `[N, C, T, J, M] -> [N, D]`.
  public func features(_ x: Tensor) throws -> Tensor {
    try bodyTokens(x).mean(axes: [1, 2, 3])
  }
}

/// Token bookkeeping shared by the encoder, the decoder and the maskings.
public enum Tokens {
  /// Rows of `x` `[B, L, D]` picked per sequence by `indices` `[B, K]`: `[B, K, D]`.
  public static func select(_ x: Tensor, _ indices: Tensor) throws -> Tensor {
    guard x.rank == 3, indices.rank == 2, indices.shape[0] == x.shape[0] else {
      throw TensorError(
        "select_tokens",
        "expects tokens [B, L, D] and indices [B, K], got \(shapeString(x.shape)) and "
          + shapeString(indices.shape))
    }
    let (b, l, d) = (x.shape[0], x.shape[1], x.shape[2])
    let k = indices.shape[1]
    let flat = try Tensor.integerIndices(indices, limit: l, op: "select_tokens")
    var rows = [Int](repeating: 0, count: b * k)
    for i in 0..<b {
      for r in 0..<k { rows[i * k + r] = i * l + flat[i * k + r] }
    }
    return try x.reshaped([b * l, d]).indexSelect(axis: 0, indices: rows).reshaped([b, k, d])
  }
}

extension Encoder {
  /// A copy with the same weights and its own drop-path rate (fine-tuning must not change the
  /// caller's encoder).
  /// What a run folder records of the encoder it trains (`fit`, fine-tuning): a resume must
  /// find the same. The format is stored in config.json files; keep it stable.
  public var runIdentity: String {
    "\(flavor.rawValue) dim \(dimension) depth \(blocks.count) heads \(heads) frames \(frames) "
      + "joints \(joints)"
  }

  public func copy(dropPath: Float = 0) throws -> Encoder {
    let ratio = blocks.first.map { $0.mlp.fc1.weight.value.shape[0] / dimension } ?? 4
    let encoder = try Encoder(
      dimension: dimension, depth: blocks.count, heads: heads, segment: embedding.segment,
      frames: frames, joints: joints, mlpRatio: ratio, eps: norm.eps,
      layerScale: blocks.first?.gamma1 == nil ? nil : 1e-4, dropPath: dropPath, flavor: flavor)
    try encoder.load(Dictionary(uniqueKeysWithValues: stateDict().map { ($0.name, $0.tensor) }))
    return encoder
  }
}
