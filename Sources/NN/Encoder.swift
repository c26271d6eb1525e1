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

/// The skeleton transformer encoder of methods.md §2 in MAMP's naming:
/// `[B, T, J, C] -> [B, (T/u)·J, D]` tokens (token index t·J + j), after `depth` pre-norm
/// blocks and the final `norm`. `forwardWithHidden` also returns every block's raw output.
public final class Encoder: Module {
  public let jointsEmbed: Module
  public let embedding: JointEmbedding
  public let posEmbed: Parameter
  public let tempEmbed: Parameter
  public let blocks: [Block]
  public let norm: LayerNorm
  public let joints: Int
  public let segments: Int

  public init(
    dimension: Int, depth: Int, heads: Int, segment: Int, frames: Int, joints: Int,
    mlpRatio: Int = 4, eps: Float = 1e-5, layerScale: Float? = nil
  ) throws {
    guard frames % segment == 0 else {
      throw TensorError(
        "encoder", "frames \(frames) are not divisible by the segment length \(segment)")
    }
    self.joints = joints
    segments = frames / segment
    embedding = JointEmbedding(dimension: dimension, segment: segment)
    jointsEmbed = Module()
    posEmbed = Parameter(Tensor.zeros([1, 1, joints, dimension]))
    tempEmbed = Parameter(Tensor.zeros([1, frames / segment, 1, dimension]))
    blocks = try (0..<depth).map { _ in
      try Block(dimension, heads: heads, mlpRatio: mlpRatio, eps: eps, layerScale: layerScale)
    }
    norm = LayerNorm(dimension, eps: eps)
    super.init()
    child("joints_embed", jointsEmbed).child("proj", embedding)
    registerExisting("pos_embed", posEmbed)
    registerExisting("temp_embed", tempEmbed)
    let container = child("blocks", Module())
    for (i, block) in blocks.enumerated() { container.child(String(i), block) }
    child("norm", norm)
  }

  /// Final-norm tokens and the raw output of every block.
  public func forwardWithHidden(_ x: Tensor) throws -> (tokens: Tensor, hidden: [Tensor]) {
    guard x.rank == 4, x.shape[1] == segments * embedding.segment, x.shape[2] == joints else {
      throw TensorError(
        "encoder",
        "expects [B, \(segments * embedding.segment), \(joints), 3], got \(shapeString(x.shape))")
    }
    let b = x.shape[0]
    let embedded = try embedding(x) + posEmbed.value + tempEmbed.value  // [B, TP, J, D]
    var h = try embedded.reshaped([b, segments * joints, -1])
    var hidden: [Tensor] = []
    for block in blocks {
      h = try block(h)
      hidden.append(h)
    }
    return (try norm(h), hidden)
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor { try forwardWithHidden(x).tokens }
}
