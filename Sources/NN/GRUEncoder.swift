import TensorCore

/// The PCM3 reference encoder of methods.md §7.1 (official `BIGRU` without its projector):
/// `input_norm`, a BatchNorm1d over every frame's `J·C·M` vector (statistics over batch and
/// time), then `encoder.gru`, a multi-layer two-direction GRU. In the reference's `stepwise`
/// form both directions run forward in time (the official code feeds one frame at a time);
/// `bidirectional` is a true bidirectional GRU. The sequence feature is the last frame's
/// output `[forward, reverse]`, `2·hidden` wide (§8). Names as the official checkpoints under
/// `encoder_q.`, so `load_weights` reads them.
public final class GRUEncoder: Module {
  public let inputNorm: BatchNorm1d
  public let gru: GRU
  public let hidden: Int
  public let joints: Int
  public let bodies: Int
  public let coordinates: Int
  /// The length evaluation views are cropped to (the GRU itself takes any length).
  public let frames: Int

  public init(
    hidden: Int, layers: Int, joints: Int = 25, bodies: Int = 2, coordinates: Int = 3,
    frames: Int = 64, mode: GRU.Mode = .stepwise
  ) throws {
    guard hidden > 0, layers > 0, joints > 0, bodies > 0, coordinates > 0, frames > 0,
      mode != .unidirectional
    else {
      throw TensorError(
        "gru_encoder",
        "hidden \(hidden), layers \(layers), joints \(joints), bodies \(bodies) and frames "
          + "\(frames) must be positive, and the GRU two-directional")
    }
    let (inputs, overflow) = joints.multipliedReportingOverflow(by: coordinates * bodies)
    guard !overflow, inputs <= 1 << 20 else {
      throw TensorError("gru_encoder", "\(joints) joints × \(bodies) bodies is too many inputs")
    }
    self.hidden = hidden
    self.joints = joints
    self.bodies = bodies
    self.coordinates = coordinates
    self.frames = frames
    gru = try GRU(input: inputs, hidden: hidden, layers: layers, mode: mode)
    inputNorm = BatchNorm1d(inputs)
    super.init()
    // Registration order of the official module: encoder, (fc), input_norm.
    child("encoder", Module()).child("gru", gru)
    child("input_norm", inputNorm)
    // The official initialisation: Xavier-uniform for every 2-D GRU weight.
    try gru.xavierWeights()
  }

  /// Every frame's output of the top layer: `[N, T, J·C·M]` flattened frames -> `[N, T, 2H]`.
  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try checkFrames(x)
    return try gru(normalized(x))
  }

  /// Throws unless `x` is flattened frames `[N, T > 0, J·C·M]`.
  private func checkFrames(_ x: Tensor) throws {
    let width = joints * coordinates * bodies
    guard x.rank == 3, x.shape[2] == width, x.shape[1] > 0 else {
      throw TensorError(
        "gru_encoder",
        "expects frames [N, T, \(width)] (\(joints) joints × \(coordinates) × \(bodies) bodies), "
          + "got \(shapeString(x.shape))")
    }
  }

  /// The input norm over every frame of checked frames `[N, T, J·C·M]`.
  private func normalized(_ x: Tensor) throws -> Tensor {
    let (n, t, width) = (x.shape[0], x.shape[1], x.shape[2])
    return try inputNorm(x.reshaped([n * t, width])).reshaped([n, t, width])
  }

  /// `[N, C, T, J, M]` -> flattened frames, checking the layout.
  public func flattened(_ x: Tensor) throws -> Tensor {
    guard x.rank == 5, x.shape[1] == coordinates, x.shape[3] == joints, x.shape[4] == bodies,
      x.shape[2] > 0
    else {
      let hint =
        x.rank == 5 && x.shape[3] != joints
        ? " (the data has \(x.shape[3]) joints: build it with gru_encoder(joints=\(x.shape[3])))"
        : x.rank == 5 && x.shape[4] != bodies
          ? " (the data has \(x.shape[4]) bodies: build it with gru_encoder(bodies=\(x.shape[4])))"
          : ""
      throw TensorError(
        "gru_encoder",
        "expects [N, \(coordinates), T, \(joints), \(bodies)], got \(shapeString(x.shape))"
          + hint)
    }
    return try flattenFrames(x)
  }
}

extension GRUEncoder: SequenceEncoder {
  public var acceptsAnyLength: Bool { true }
  public var featureDimension: Int { 2 * hidden }
  public var probeEps: Float { 1e-5 }
  public var layers: Int { gru.layers }

  public var runIdentity: String {
    "gru \(gru.mode.rawValue) hidden \(hidden) layers \(gru.layers) joints \(joints) "
      + "bodies \(bodies) frames \(frames)"
  }

  public var title: String {
    "GRUEncoder(\(gru.mode.rawValue), hidden \(hidden), layers \(gru.layers), joints \(joints), "
      + "bodies \(bodies), frames \(frames))"
  }

  /// The last frame's output, `[N, 2H]`.
  public func features(_ x: Tensor) throws -> Tensor {
    let out = try self(flattened(x))
    return try out[.all, .index(out.shape[1] - 1)]
  }

  public func frameFeatures(_ x: Tensor, coordinates: Int, bodies: Int) throws -> (
    frames: Tensor, sequence: Tensor
  ) {
    try checkLayout(coordinates: coordinates, bodies: bodies)
    let out = try self(x)
    return (out, try out[.all, .index(out.shape[1] - 1)])
  }

  /// The batches' recurrences as one: each batch is normalised on its own, in order (the
  /// input norm's batch statistics and running averages are those of separate calls), then the
  /// GRU runs once over all of them. A frame's recurrent product then reads `W_hh` once for
  /// every batch: at hidden 1024, packing that weight was 45% of a PCM3 step.
  public func frameFeatures(batches: [Tensor], coordinates: Int, bodies: Int) throws -> [(
    frames: Tensor, sequence: Tensor
  )] {
    guard batches.count > 1 else {
      return try batches.map { try frameFeatures($0, coordinates: coordinates, bodies: bodies) }
    }
    // Every batch is checked before the norm updates its running statistics.
    try checkLayout(coordinates: coordinates, bodies: bodies)
    for x in batches { try checkFrames(x) }
    let t = batches[0].shape[1]
    guard batches.allSatisfy({ $0.shape[1] == t }) else {
      throw TensorError(
        "gru_encoder",
        "expects batches of frames with one length T, got "
          + batches.map { shapeString($0.shape) }.joined(separator: ", "))
    }
    let normal = try batches.map(normalized)
    let out = try gru(Tensor.concat(normal, axis: 0))
    var start = 0
    return try batches.map { x in
      let rows = try out[.range(start, start + x.shape[0], 1)]
      start += x.shape[0]
      return (rows, try rows[.all, .index(t - 1)])
    }
  }

  /// Throws unless the frames' layout is this encoder's.
  private func checkLayout(coordinates: Int, bodies: Int) throws {
    guard coordinates == self.coordinates, bodies == self.bodies else {
      throw TensorError(
        "gru_encoder",
        "expects \(self.coordinates) coordinates and \(self.bodies) bodies, got \(coordinates) "
          + "and \(bodies)")
    }
  }

  public func copy() throws -> GRUEncoder {
    let encoder = try GRUEncoder(
      hidden: hidden, layers: gru.layers, joints: joints, bodies: bodies,
      coordinates: coordinates, frames: frames, mode: gru.mode)
    try encoder.load(Dictionary(uniqueKeysWithValues: stateDict().map { ($0.name, $0.tensor) }))
    return encoder
  }

  public func tuningCopy(dropPath: Float) throws -> any SequenceEncoder { try copy() }
  public var tuningDimension: Int { 2 * hidden }

  public func tuningFeatures(_ x: Tensor, dropout: Dropout) throws -> Tensor {
    try dropout(features(x))
  }

  public func initializeTuningHead(_ head: Module) throws {
    try Initialization.xavierLinears(head)
  }

  public var tuningGroups: (flavor: Flavor, depth: Int?) { (.mamp, nil) }
}
