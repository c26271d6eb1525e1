import TensorCore

/// The MAE-style decoder of methods.md §3 in MAMP's naming: embeds the encoder's visible tokens,
/// puts mask tokens at the hidden positions, adds its own positional embeddings and runs
/// `depth` blocks, `decoder_norm` and a prediction head:
/// `[B, K, D_enc]` visible tokens + restore index `[B, L]` -> `[B, L, outputs]`.
public final class Decoder: Module {
  /// The prediction head: MAMP regresses each token's motion (`decoder_pred`, u·3 values),
  /// Skeleton2vec the teacher's features (`decoder_feat_head`, the encoder width).
  public enum Head: Sendable, Equatable {
    case motion(outputs: Int)
    case features(outputs: Int)
  }

  /// Where the visible tokens go back (§3): `intended` puts each at its own (t, j);
  /// `referenceCompatible` reproduces the Skeleton2vec tube-mode placement exactly.
  public enum Restore: String, Sendable, CaseIterable {
    case intended
    case referenceCompatible
  }

  public let decoderEmbed: Linear
  public let maskToken: Parameter
  public let posEmbed: Parameter
  public let tempEmbed: Parameter
  public let blocks: [Block]
  public let norm: LayerNorm
  public let head: Linear
  public let headKind: Head
  public let joints: Int
  public let segments: Int
  public let dimension: Int

  public init(
    encoderDimension: Int, dimension: Int, depth: Int, heads: Int, segments: Int, joints: Int,
    head: Head, mlpRatio: Int = 4, eps: Float = 1e-5, layerScale: Float? = nil,
    flavor: Flavor = .mamp
  ) throws {
    guard encoderDimension > 0, dimension > 0, depth >= 0, segments > 0, joints > 0 else {
      throw TensorError(
        "decoder",
        "widths \(encoderDimension) and \(dimension), depth \(depth), \(segments) "
          + "segments and \(joints) joints must be positive")
    }
    self.joints = joints
    self.segments = segments
    self.dimension = dimension
    headKind = head
    decoderEmbed = Linear(encoderDimension, dimension)
    maskToken = Parameter(Tensor.zeros([1, 1, dimension]))
    posEmbed = Parameter(Tensor.zeros([1, 1, joints, dimension]))
    tempEmbed = Parameter(Tensor.zeros([1, segments, 1, dimension]))
    blocks = try (0..<depth).map { _ in
      try Block(dimension, heads: heads, mlpRatio: mlpRatio, eps: eps, layerScale: layerScale)
    }
    norm = LayerNorm(dimension, eps: eps)
    switch head {
    case .motion(let outputs), .features(let outputs): self.head = Linear(dimension, outputs)
    }
    super.init()
    registerExisting("mask_token", maskToken)
    registerExisting("decoder_pos_embed", posEmbed)
    registerExisting("decoder_temp_embed", tempEmbed)
    child("decoder_embed", decoderEmbed)
    let container = child("decoder_blocks", Module())
    for (i, block) in blocks.enumerated() { container.child(String(i), block) }
    child("decoder_norm", norm)
    if case .motion = head {
      child("decoder_pred", self.head)
    } else {
      child("decoder_feat_head", self.head)
    }
    try initialize(flavor)
  }

  /// The initialisation of methods.md §2.6: Linears Xavier-uniform (MAMP) or truncated normal
  /// 0.02 (Skeleton2vec) with zero biases; mask token and positional embeddings truncated
  /// normal 0.02.
  public func initialize(_ flavor: Flavor) throws {
    switch flavor {
    case .mamp: try Initialization.xavierLinears(self)
    case .skeleton2vec: try Initialization.truncatedNormalLinears(self, std: 0.02)
    }
    for parameter in [maskToken, posEmbed, tempEmbed] {
      parameter.assign(try Initialization.truncatedNormal(parameter.value.shape, std: 0.02))
    }
  }

  /// The number of tokens of one sequence, `TP·J`.
  public var tokenCount: Int { segments * joints }

  /// Decodes visible tokens `[B, K, D_enc]`. `restore` `[B, L]` says, for each position, which
  /// row of `[visible tokens; L − K mask tokens]` goes there (MAE's `ids_restore`).
  public func callAsFunction(_ visible: Tensor, restore: Tensor) throws -> Tensor {
    let l = tokenCount
    guard visible.rank == 3, visible.shape[1] <= l, restore.shape == [visible.shape[0], l] else {
      throw TensorError(
        "decoder",
        "expects visible tokens [B, K ≤ \(l), D] and a restore index [B, \(l)], got "
          + "\(shapeString(visible.shape)) and \(shapeString(restore.shape))")
    }
    let (b, k) = (visible.shape[0], visible.shape[1])
    let masks = try maskToken.value.expanded(to: [b, l - k, dimension])
    // One expression, so that the token rows in order go as soon as the embeddings are added
    // (a local would hold them, as large as a block's input, through every block).
    var h = try
      (Tokens.select(Tensor.concat([decoderEmbed(visible), masks], axis: 1), restore)
      .reshaped([b, segments, joints, dimension]) + posEmbed.value + tempEmbed.value)
      .reshaped([b, l, dimension])
    for block in blocks { h = try block(h) }
    return try head(normalizing: h, with: norm)
  }

  /// The restore index for tube masking, where every segment (time row) keeps `keptPerRow`
  /// tokens: `rowRestore` `[B, TP, J]` is each row's inverse permutation (position j of row t
  /// holds rank `rowRestore[t, j]` of that row's shuffle; ranks below `keptPerRow` are visible).
  /// The visible list is row after row, each row in shuffle order, then the mask tokens.
  public static func tubeRestoreIndex(rowRestore: Tensor, keptPerRow: Int, mode: Restore) throws
    -> Tensor
  {
    guard rowRestore.rank == 3 else {
      throw TensorError(
        "decoder", "row restore index must be [B, TP, J], got \(shapeString(rowRestore.shape))")
    }
    let (b, tp, j) = (rowRestore.shape[0], rowRestore.shape[1], rowRestore.shape[2])
    guard keptPerRow >= 0, keptPerRow <= j else {
      throw TensorError("decoder", "keeps \(keptPerRow) tokens of rows of \(j)")
    }
    let ranks = try Tensor.integerIndices(rowRestore, limit: j, op: "decoder")
    let visibleCount = tp * keptPerRow
    var index = [Float](repeating: 0, count: b * tp * j)
    for s in 0..<b {
      var nextMask = visibleCount
      for t in 0..<tp {
        for v in 0..<j {
          let at = (s * tp + t) * j + v
          let rank = ranks[at]
          switch mode {
          case .intended:
            if rank < keptPerRow {
              index[at] = Float(t * keptPerRow + rank)
            } else {
              index[at] = Float(nextMask)
              nextMask += 1
            }
          case .referenceCompatible:
            // The reference reshapes [visible; masks] row-major to (TP, J) first, then applies
            // each row's inverse permutation within that row.
            index[at] = Float(t * j + rank)
          }
        }
      }
    }
    return try Tensor(shape: [b, tp * j], scalars: index)
  }
}
