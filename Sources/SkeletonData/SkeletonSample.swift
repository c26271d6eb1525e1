import TensorCore

/// One skeleton sequence: `data` `[C, T, V, M]` float32 (coordinates, frames, joints, bodies;
/// a missing body is zeros), its valid length, label and where it came from.
public struct SkeletonSample: Sendable {
  public var data: Tensor
  /// Frames that hold the sequence (the rest is zero padding).
  public var length: Int
  /// Class index, 0-based (-1 when unknown).
  public var label: Int
  public var subject: Int
  /// Camera or view id (NTU camera, PKU view), 0 when unknown.
  public var view: Int
  public var setup: Int
  public var replication: Int
  /// The file (or generator) it came from.
  public var source: String

  public init(
    data: Tensor, length: Int, label: Int, subject: Int = 0, view: Int = 0, setup: Int = 0,
    replication: Int = 0, source: String = ""
  ) {
    self.data = data
    self.length = length
    self.label = label
    self.subject = subject
    self.view = view
    self.setup = setup
    self.replication = replication
    self.source = source
  }

  public var channels: Int { data.shape[0] }
  public var frames: Int { data.shape[1] }
  public var joints: Int { data.shape[2] }
  public var bodies: Int { data.shape[3] }

  /// Frames whose values are not all zero, counted up to the last such frame (§1.2: the valid
  /// length of the preprocessed layouts).
  public static func validLength(_ data: Tensor) -> Int {
    let (c, t, v, m) = (data.shape[0], data.shape[1], data.shape[2], data.shape[3])
    return data.withUnsafeBufferPointer { values in
      var last = 0
      for frame in 0..<t {
        var any = false
        for channel in 0..<c where !any {
          let base = (channel * t + frame) * v * m
          for i in 0..<(v * m) where values[base + i] != 0 {
            any = true
            break
          }
        }
        if any { last = frame + 1 }
      }
      return last
    }
  }

  /// Checks the values: throws for NaN or infinity, or an all-zero sequence.
  public func validate() throws {
    var nonZero = false
    try data.withUnsafeBufferPointer { values in
      for v in values {
        guard v.isFinite else {
          throw TensorError("skeleton", "\(source): holds NaN or infinite coordinates")
        }
        if v != 0 { nonZero = true }
      }
    }
    guard nonZero, length > 0 else {
      throw TensorError("skeleton", "\(source): every coordinate is zero (an empty sequence)")
    }
  }
}
