import TensorCore

/// What every evaluation protocol and the PCM3 trainer need of an encoder, whatever its kind
/// (the transformer of methods.md §2, the PCM3 GRU of §7.1): sequence features of a batch,
/// per-frame features, and what fine-tuning builds on it. The protocols are written once
/// against this interface.
public protocol SequenceEncoder: Module {
  /// The number of frames the evaluation views are cropped and resized to.
  var frames: Int { get }
  /// The number of joints per body.
  var joints: Int { get }
  /// True when sequences of any length go in (a recurrent encoder): detection windows are then
  /// encoded as they are, not resized to `frames`.
  var acceptsAnyLength: Bool { get }
  /// The width of the sequence feature (§8).
  var featureDimension: Int { get }
  /// The epsilon of the linear-probe BatchNorm (§8.1).
  var probeEps: Float { get }
  /// What run folders record of the encoder (a resume must find the same).
  var runIdentity: String { get }
  /// A one-line description (`Encoder(mamp, dim 256, ...)`, `GRUEncoder(hidden 1024, ...)`).
  var title: String { get }

  /// The sequence feature of §8: `[N, C, T, J, M] -> [N, featureDimension]`.
  func features(_ x: Tensor) throws -> Tensor

  /// Per-frame features and the sequence feature of flattened frames `[N, T, J·C·M]` (feature
  /// index `j·C·M + c·M + m`, the PCM3 layout of §7.1): `([N, T, F], [N, F])`.
  func frameFeatures(_ x: Tensor, coordinates: Int, bodies: Int) throws -> (
    frames: Tensor, sequence: Tensor
  )

  /// `frameFeatures` of several batches, in order. An encoder may run them as one batch where
  /// that gives each batch what it would get alone (the GRU encoder: one recurrence, each
  /// batch normalised on its own and in order).
  func frameFeatures(batches: [Tensor], coordinates: Int, bodies: Int) throws -> [(
    frames: Tensor, sequence: Tensor
  )]

  /// A copy with the same weights and the given drop-path rate (fine-tuning works on it).
  func tuningCopy(dropPath: Float) throws -> any SequenceEncoder
  /// The width of `tuningFeatures`.
  var tuningDimension: Int { get }
  /// The input of the fine-tuning head (§8.2): for the transformer, `dropout` on the tokens,
  /// then the mean over segments with the joints side by side, averaged over bodies.
  func tuningFeatures(_ x: Tensor, dropout: Dropout) throws -> Tensor
  /// Initialises the fine-tuning head's Linears as the encoder's reference does.
  func initializeTuningHead(_ head: Module) throws
  /// The flavour whose weight-decay groups fine-tuning uses, and the depth for layer-wise lr
  /// decay (nil: no layer decay).
  var tuningGroups: (flavor: Flavor, depth: Int?) { get }
}

/// `[N, C, T, J, M]` -> `[N, T, J·C·M]` (feature index `j·C·M + c·M + m`).
public func flattenFrames(_ x: Tensor) throws -> Tensor {
  guard x.rank == 5 else {
    throw TensorError("frames", "expects [N, C, T, J, M], got \(shapeString(x.shape))")
  }
  let (n, c, t, j, m) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
  return try x.permuted([0, 2, 3, 1, 4]).contiguous().reshaped([n, t, j * c * m])
}

/// `[N, T, J·C·M]` -> `[N, C, T, J, M]`, the inverse of `flattenFrames`.
public func unflattenFrames(_ x: Tensor, coordinates: Int, bodies: Int) throws -> Tensor {
  guard x.rank == 3, coordinates > 0, bodies > 0, x.shape[2] % (coordinates * bodies) == 0 else {
    throw TensorError(
      "frames",
      "expects [N, T, J·\(coordinates)·\(bodies)], got \(shapeString(x.shape))")
  }
  let (n, t) = (x.shape[0], x.shape[1])
  let j = x.shape[2] / (coordinates * bodies)
  return try x.reshaped([n, t, j, coordinates, bodies]).permuted([0, 3, 1, 2, 4]).contiguous()
}

extension Encoder: SequenceEncoder {
  public var acceptsAnyLength: Bool { false }
  public var featureDimension: Int { dimension }
  public var probeEps: Float { flavor == .mamp ? 1e-6 : 1e-5 }
  public var title: String {
    "Encoder(\(flavor.rawValue), dim \(dimension), depth \(blocks.count), heads \(heads), "
      + "frames \(frames), joints \(joints))"
  }

  /// Per-frame features: the final-norm tokens averaged over joints and bodies, each segment's
  /// feature repeated over its frames; the sequence feature is §2.7's (a PCM3 design choice,
  /// methods.md §7.1).
  public func frameFeatures(_ x: Tensor, coordinates: Int, bodies: Int) throws -> (
    frames: Tensor, sequence: Tensor
  ) {
    let clip = try unflattenFrames(x, coordinates: coordinates, bodies: bodies)
    let tokens = try bodyTokens(clip)  // [N, M, TP, J, D]
    let n = tokens.shape[0]
    let perSegment = try tokens.mean(axes: [1, 3])  // [N, TP, D]
    let u = embedding.segment
    let perFrame = try perSegment.reshaped([n, segments, 1, dimension])
      .expanded(to: [n, segments, u, dimension]).reshaped([n, segments * u, dimension])
    return (perFrame, try perSegment.mean(axes: [1]))
  }

  public func tuningCopy(dropPath: Float) throws -> any SequenceEncoder {
    try copy(dropPath: dropPath)
  }

  public var tuningDimension: Int { joints * dimension }

  public func tuningFeatures(_ x: Tensor, dropout: Dropout) throws -> Tensor {
    let tokens = try dropout(bodyTokens(x))  // [N, M, TP, J, D]
    let (n, m) = (tokens.shape[0], tokens.shape[1])
    return try tokens.mean(axes: [2]).reshaped([n, m, -1]).mean(axes: [1])  // [N, J·D]
  }

  public func initializeTuningHead(_ head: Module) throws {
    switch flavor {
    case .mamp: try Initialization.xavierLinears(head)
    case .skeleton2vec: try Initialization.truncatedNormalLinears(head, std: 0.02)
    }
  }

  public var tuningGroups: (flavor: Flavor, depth: Int?) { (flavor, blocks.count) }
}

extension SequenceEncoder {
  public func frameFeatures(batches: [Tensor], coordinates: Int, bodies: Int) throws -> [(
    frames: Tensor, sequence: Tensor
  )] {
    try batches.map { try frameFeatures($0, coordinates: coordinates, bodies: bodies) }
  }
}
