import Foundation
import TensorCore

/// A `[C, T, V, M]` sequence as a flat array with its sizes, for the transforms' loops.
struct Frames {
  var values: [Float]
  let c: Int, t: Int, v: Int, m: Int

  init(_ data: Tensor) throws {
    guard data.rank == 4 else {
      throw TensorError(
        "skeleton", "expects a sequence [C, T, V, M], got \(shapeString(data.shape))")
    }
    values = data.scalars
    (c, t, v, m) = (data.shape[0], data.shape[1], data.shape[2], data.shape[3])
  }

  init(c: Int, t: Int, v: Int, m: Int) {
    values = [Float](repeating: 0, count: c * t * v * m)
    (self.c, self.t, self.v, self.m) = (c, t, v, m)
  }

  @inline(__always) func index(_ ch: Int, _ f: Int, _ j: Int, _ b: Int) -> Int {
    ((ch * t + f) * v + j) * m + b
  }

  /// Throws unless `layout` describes this data's joints.
  func check(_ layout: JointLayout, op: String) throws {
    guard layout.count == v else {
      throw TensorError(
        op,
        "the \(layout.name) layout has \(layout.count) joints but the data has \(v) "
          + "([C, T, V, M] = [\(c), \(t), \(v), \(m)])")
    }
  }

  subscript(ch: Int, f: Int, j: Int, b: Int) -> Float {
    get { values[index(ch, f, j, b)] }
    set { values[index(ch, f, j, b)] = newValue }
  }

  /// Whether joint j of body b in frame f is all zero (untracked).
  func isZero(_ f: Int, _ j: Int, _ b: Int) -> Bool {
    (0..<c).allSatisfy { self[$0, f, j, b] == 0 }
  }

  func frameIsEmpty(_ f: Int, body b: Int) -> Bool { (0..<v).allSatisfy { isZero(f, $0, b) } }

  func tensor() throws -> Tensor { try Tensor(shape: [c, t, v, m], scalars: values) }

  /// Applies a 3×3 matrix (row-major) to every non-zero point: p' = R · p.
  mutating func rotate(_ r: [Double], skipZero: Bool = true) {
    for f in 0..<t {
      for j in 0..<v {
        for b in 0..<m where !(skipZero && isZero(f, j, b)) {
          let p = (0..<3).map { Double(self[$0, f, j, b]) }
          for row in 0..<3 {
            self[row, f, j, b] = Float(
              r[row * 3] * p[0] + r[row * 3 + 1] * p[1] + r[row * 3 + 2] * p[2])
          }
        }
      }
    }
  }
}

/// The preprocessing and augmentations of methods.md §1.3–1.8, §4.4 and §7.2, on one sequence
/// `[C, T, V, M]` (or a batch `[N, C, T, V, M]` where noted). Random ones draw from the
/// generator they are given.
public enum Transforms {
  // MARK: Temporal

  /// The linear resize of §1.4 (align_corners = false): `len` frames starting at `start` to
  /// `window` frames.
  static func resize(_ x: Frames, start: Int, length: Int, window: Int) -> Frames {
    var out = Frames(c: x.c, t: window, v: x.v, m: x.m)
    for d in 0..<window {
      let s = Swift.max((Double(d) + 0.5) * Double(length) / Double(window) - 0.5, 0)
      let i0 = Swift.min(Int(s.rounded(.down)), length - 1)
      let i1 = Swift.min(i0 + 1, length - 1)
      let w = Float(s - Double(i0))
      for ch in 0..<x.c {
        for j in 0..<x.v {
          for b in 0..<x.m {
            let a = x[ch, start + i0, j, b]
            let z = x[ch, start + i1, j, b]
            out[ch, d, j, b] = (1 - w) * a + w * z
          }
        }
      }
    }
    return out
  }

  /// Random crop of `p ~ U(low, high)` of the `length` valid frames (at least `minimum`, at
  /// most all), resized to `window` frames (§1.4, training).
  public static func randomCropResize(
    _ data: Tensor, length: Int, window: Int, ratio: ClosedRange<Double> = 0.5...1,
    minimum: Int = 64, generator: inout RandomGenerator
  ) throws -> Tensor {
    let x = try Frames(data)
    let n = try validLength(length, x)
    let p = ratio.lowerBound + (ratio.upperBound - ratio.lowerBound) * generator.nextDouble()
    let crop = Swift.min(Swift.max(Int((Double(n) * p).rounded(.down)), minimum), n)
    let start = try generator.nextInt(below: n - crop + 1)
    return try resize(x, start: start, length: crop, window: window).tensor()
  }

  /// Centre crop keeping frames `[b, n − b)` with `b = floor((1 − p)·n/2)`, resized to
  /// `window` frames (§1.4, testing).
  public static func centreCropResize(
    _ data: Tensor, length: Int, window: Int, ratio: Double = 0.95
  )
    throws -> Tensor
  {
    let x = try Frames(data)
    let n = try validLength(length, x)
    let (start, crop) = centreCrop(length: n, ratio: ratio)
    return try resize(x, start: start, length: crop, window: window).tensor()
  }

  /// The frames a centre crop keeps: `(start, count)`.
  public static func centreCrop(length n: Int, ratio: Double) -> (start: Int, count: Int) {
    let b = Int(((1 - ratio) * Double(n) / 2).rounded(.down))
    return (b, Swift.max(n - 2 * b, 1))
  }

  static func validLength(_ length: Int, _ x: Frames) throws -> Int {
    guard length > 0, length <= x.t else {
      throw TensorError("skeleton", "valid length \(length) is outside 1...\(x.t)")
    }
    return length
  }

  /// PYSKL's uniform sampling of `clip` frame indices from `total` frames (§1.5).
  public static func uniformSampleIndices(
    total: Int, clip: Int = 90, generator: inout RandomGenerator
  )
    throws -> [Int]
  {
    guard total > 0, clip > 0 else {
      throw TensorError(
        "uniform_sample", "needs frames and a clip length, got \(total) and \(clip)")
    }
    if total < clip {
      let start = try generator.nextInt(below: total)
      return (0..<clip).map { (start + $0) % total }
    }
    if total < 2 * clip {
      // Choose total − clip of the clip + 1 gaps; index i skips the chosen gaps at or before i.
      let chosen = Set(try generator.sample(total - clip, from: clip + 1))
      var skipped = 0
      return (0..<clip).map { i in
        if chosen.contains(i) { skipped += 1 }
        return i + skipped
      }
    }
    return try (0..<clip).map { i in
      let low = i * total / clip
      let high = (i + 1) * total / clip
      return low + (try generator.nextInt(below: Swift.max(high - low, 1)))
    }
  }

  /// The frames at `indices` of a sequence: `[C, T, V, M] -> [C, indices.count, V, M]`.
  public static func frames(_ data: Tensor, at indices: [Int]) throws -> Tensor {
    try data.indexSelect(axis: 1, indices: indices)
  }

  /// `motion[t] = x[t+1] − x[t]`, last frame 0 (§1.7), on axis 1: the time axis of a sequence
  /// `[C, T, V, M]` and of a batch of sequences `[B, T, V, C]`.
  public static func motion(_ data: Tensor) throws -> Tensor {
    let t = data.shape[1]
    guard t > 1 else { return Tensor.zeros(data.shape) }
    let difference = try data[.all, .range(1, nil, 1)] - data[.all, .range(nil, t - 1, 1)]
    var zeroShape = data.shape
    zeroShape[1] = 1
    return try Tensor.concat([difference, Tensor.zeros(zeroShape)], axis: 1)
  }

  // MARK: Spatial

  /// `R = Rz·Ry·Rx` of §1.6 (row-major 3×3).
  public static func rotationMatrix(_ ax: Double, _ ay: Double, _ az: Double) -> [Double] {
    let (cx, sx, cy, sy, cz, sz) = (cos(ax), sin(ax), cos(ay), sin(ay), cos(az), sin(az))
    let rx: [Double] = [1, 0, 0, 0, cx, sx, 0, -sx, cx]
    let ry: [Double] = [cy, 0, -sy, 0, 1, 0, sy, 0, cy]
    let rz: [Double] = [cz, sz, 0, -sz, cz, 0, 0, 0, 1]
    return multiply(rz, multiply(ry, rx))
  }

  static func multiply(_ a: [Double], _ b: [Double]) -> [Double] {
    var product = [Double](repeating: 0, count: 9)
    for row in 0..<3 {
      for col in 0..<3 {
        var total = 0.0
        for k in 0..<3 { total += a[row * 3 + k] * b[k * 3 + col] }
        product[row * 3 + col] = total
      }
    }
    return product
  }

  /// Rotates every point by angles drawn from U(−θ, θ) about x, y and z (§1.6); an all-zero
  /// clip is returned as it is.
  public static func randomRotation(
    _ data: Tensor, theta: Double = 0.3, generator: inout RandomGenerator
  )
    throws -> Tensor
  {
    let angles = (0..<3).map { _ in (2 * generator.nextDouble() - 1) * theta }
    return try rotate(data, rotationMatrix(angles[0], angles[1], angles[2]))
  }

  /// Applies a 3×3 matrix (row-major) to every point of `[3, T, V, M]`.
  public static func rotate(_ data: Tensor, _ matrix: [Double]) throws -> Tensor {
    var x = try Frames(data)
    guard x.c == 3, matrix.count == 9 else {
      throw TensorError(
        "rotate", "needs [3, T, V, M] and a 3×3 matrix, got \(shapeString(data.shape))")
    }
    x.rotate(matrix, skipZero: false)
    return try x.tensor()
  }

  /// Shear by `[[1, a, b], [c, 1, d], [e, f, 1]]` with off-diagonals from U(−s, s) (§1.8).
  public static func shear(_ data: Tensor, amount: Double = 1, generator: inout RandomGenerator)
    throws -> Tensor
  {
    var s = [Double](repeating: 0, count: 9)
    for k in 0..<9 { s[k] = k % 4 == 0 ? 1 : (2 * generator.nextDouble() - 1) * amount }
    return try rotate(data, s)
  }

  /// Joint corruption (§1.8): 15 of 25 joints (60% of other layouts) chosen without
  /// replacement; with probability 0.5 set to zero, otherwise their xyz row vectors multiplied
  /// by a 3×3 matrix with entries from U(−1, 1).
  public static func jointCorruption(_ data: Tensor, generator: inout RandomGenerator) throws
    -> Tensor
  {
    var x = try Frames(data)
    let count = x.v == 25 ? 15 : Int((Double(x.v) * 0.6).rounded())
    let joints = try generator.sample(count, from: x.v)
    let zero = generator.nextDouble() < 0.5
    let matrix = (0..<9).map { _ in 2 * generator.nextDouble() - 1 }
    for f in 0..<x.t {
      for j in joints {
        for b in 0..<x.m {
          let p = (0..<3).map { Double(x[$0, f, j, b]) }
          for col in 0..<3 {
            x[col, f, j, b] =
              zero ? 0 : Float(p[0] * matrix[col] + p[1] * matrix[3 + col] + p[2] * matrix[6 + col])
          }
        }
      }
    }
    return try x.tensor()
  }

  // MARK: Normalisation (§1.3)

  /// MAMP's NTU centring: the centre joint of body 1 in its first non-empty frame is the
  /// origin for every joint of every body and frame; frames where a body is absent stay zero.
  public static func centreOnFirstFrame(_ data: Tensor, layout: JointLayout) throws -> Tensor {
    try layout.requireStructure("normalize")
    var x = try Frames(data)
    try x.check(layout, op: "centreOnFirstFrame")
    guard let first = (0..<x.t).first(where: { !x.frameIsEmpty($0, body: 0) }) else { return data }
    let origin = (0..<x.c).map { x[$0, first, layout.centre, 0] }
    let absent = (0..<x.m).map { b in (0..<x.t).map { x.frameIsEmpty($0, body: b) } }
    for f in 0..<x.t {
      for b in 0..<x.m where !(x.m > 1 && absent[b][f]) {
        for j in 0..<x.v { for ch in 0..<x.c { x[ch, f, j, b] -= origin[ch] } }
      }
    }
    return try x.tensor()
  }

  /// AGCN pre-normalisation (§1.3): gaps removed and trailing empty frames filled by repeating
  /// each body's frames; per-frame centring on body 1's centre joint (zero joints stay zero);
  /// then the two alignment rotations from frame 0.
  public static func agcnNormalize(_ data: Tensor, layout: JointLayout) throws -> Tensor {
    try layout.requireStructure("normalize")
    var x = try Frames(data)
    try x.check(layout, op: "agcnNormalize")
    for b in 0..<x.m {
      let filled = (0..<x.t).filter { !x.frameIsEmpty($0, body: b) }
      guard !filled.isEmpty, filled.count < x.t || filled.first != 0 else { continue }
      var copy = x
      for (k, f) in (0..<x.t).enumerated() {
        let source = filled[k % filled.count]
        for j in 0..<x.v { for ch in 0..<x.c { copy[ch, f, j, b] = x[ch, source, j, b] } }
      }
      x = copy
    }
    for f in 0..<x.t {
      let centre = (0..<x.c).map { x[$0, f, layout.centre, 0] }
      for b in 0..<x.m {
        for j in 0..<x.v where !x.isZero(f, j, b) {
          for ch in 0..<x.c { x[ch, f, j, b] -= centre[ch] }
        }
      }
    }
    return try align(x.tensor(), frame: 0, layout: layout)
  }

  /// The alignment rotations of §1.3 (3) and (4): body 1's spine vector in `frame` to +z, then
  /// its shoulder vector to +x; zero joints stay zero.
  public static func align(_ data: Tensor, frame: Int, layout: JointLayout) throws -> Tensor {
    try layout.requireStructure("normalize")
    var x = try Frames(data)
    try x.check(layout, op: "align")
    func vector(_ pair: (Int, Int)) -> [Double] {
      (0..<3).map { Double(x[$0, frame, pair.1, 0] - x[$0, frame, pair.0, 0]) }
    }
    x.rotate(rotationBetween(vector(layout.spine), [0, 0, 1]))
    x.rotate(rotationBetween(vector(layout.shoulders), [1, 0, 0]))
    return try x.tensor()
  }

  /// The right-handed rotation about `cross(v, target)` by `arccos` of their unit dot product
  /// (Rodrigues); the identity when either vector is ~0.
  public static func rotationBetween(_ v: [Double], _ target: [Double]) -> [Double] {
    let identity: [Double] = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    let nv = (v.reduce(0) { $0 + $1 * $1 }).squareRoot()
    let nt = (target.reduce(0) { $0 + $1 * $1 }).squareRoot()
    guard nv > 1e-6, nt > 1e-6 else { return identity }
    let a = v.map { $0 / nv }
    let b = target.map { $0 / nt }
    var axis = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    let length = (axis.reduce(0) { $0 + $1 * $1 }).squareRoot()
    guard length > 1e-12 else { return identity }
    axis = axis.map { $0 / length }
    let angle = acos(Swift.min(Swift.max(a[0] * b[0] + a[1] * b[1] + a[2] * b[2], -1), 1))
    let (c, s) = (cos(angle), sin(angle))
    let (x, y, z) = (axis[0], axis[1], axis[2])
    return [
      c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s,
      y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s,
      z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c),
    ]
  }

  /// PYSKL's PreNormalize3D (§1.3): frames where the main body is empty are dropped (body 2 is
  /// the main one, and the bodies swap, when it has more valid frames), the main body's centre
  /// joint in the first kept frame becomes the origin (zeros stay zero), and with `align` the
  /// two alignment rotations follow. Returns the sequence and its new length.
  public static func pysklNormalize(
    _ data: Tensor, layout: JointLayout, align alignment: Bool = false
  )
    throws -> (data: Tensor, length: Int)
  {
    try layout.requireStructure("normalize")
    var x = try Frames(data)
    let valid = (0..<x.m).map { b in (0..<x.t).filter { !x.frameIsEmpty($0, body: b) } }
    var main = 0
    if x.m > 1, valid[1].count > valid[0].count {
      main = 1
      var swapped = x
      for f in 0..<x.t {
        for j in 0..<x.v {
          for ch in 0..<x.c {
            swapped[ch, f, j, 0] = x[ch, f, j, 1]
            swapped[ch, f, j, 1] = x[ch, f, j, 0]
          }
        }
      }
      x = swapped
    }
    let kept = valid[main]
    guard let first = kept.first else { return (data, 0) }
    var out = Frames(c: x.c, t: kept.count, v: x.v, m: x.m)
    let origin = (0..<x.c).map { x[$0, first, layout.centre, 0] }
    for (k, f) in kept.enumerated() {
      for j in 0..<x.v {
        for b in 0..<x.m where !x.isZero(f, j, b) {
          for ch in 0..<x.c { out[ch, k, j, b] = x[ch, f, j, b] - origin[ch] }
        }
      }
    }
    var result = try out.tensor()
    if alignment { result = try align(result, frame: 0, layout: layout) }
    return (result, kept.count)
  }

  // MARK: Masking and occlusion

  /// PCM3 body-part masking (§4.4): frames in chunks of `chunk`; in each chunk
  /// `floor(parts·ratio)` of the layout's parts are hidden, body 1 only. Returns the mask
  /// `[T, V]` (1 = hidden).
  public static func bodyPartMask(
    frames t: Int, layout: JointLayout, chunk: Int = 8, ratio: Double = 0.6,
    generator: inout RandomGenerator
  ) throws -> Tensor {
    try layout.requireStructure("mask")
    let parts = layout.parts.count
    let hidden = Int((Double(parts) * ratio).rounded(.down))
    var mask = [Float](repeating: 0, count: t * layout.count)
    var start = 0
    while start < t {
      for p in try generator.sample(hidden, from: parts) {
        for f in start..<Swift.min(start + chunk, t) {
          for j in layout.parts[p].joints { mask[f * layout.count + j] = 1 }
        }
      }
      start += chunk
    }
    return try Tensor(shape: [t, layout.count], scalars: mask)
  }

  /// Zeroes the entries a `[T, V]` mask hides, in body 1 only (§4.4).
  public static func applyMask(_ data: Tensor, mask: Tensor) throws -> Tensor {
    var x = try Frames(data)
    guard mask.shape == [x.t, x.v] else {
      throw TensorError(
        "mask", "mask \(shapeString(mask.shape)) does not fit a sequence \(shapeString(data.shape))"
      )
    }
    let hidden = mask.scalars
    for f in 0..<x.t {
      for j in 0..<x.v where hidden[f * x.v + j] != 0 {
        for ch in 0..<x.c { x[ch, f, j, 0] = 0 }
      }
    }
    return try x.tensor()
  }

  /// Occlusion by body parts (the occluded protocol): `count` random parts hidden in every
  /// frame of every body.
  public static func occludeParts(
    _ data: Tensor, layout: JointLayout, count: Int, generator: inout RandomGenerator
  ) throws -> Tensor {
    try layout.requireStructure("occlude")
    var x = try Frames(data)
    for p in try generator.sample(Swift.min(count, layout.parts.count), from: layout.parts.count) {
      for f in 0..<x.t {
        for j in layout.parts[p].joints where j < x.v {
          for b in 0..<x.m { for ch in 0..<x.c { x[ch, f, j, b] = 0 } }
        }
      }
    }
    return try x.tensor()
  }

  /// Occlusion in time: a contiguous block of `ratio` of the valid frames zeroed, at a random
  /// start.
  public static func occludeTime(
    _ data: Tensor, length: Int, ratio: Double, generator: inout RandomGenerator
  ) throws -> Tensor {
    var x = try Frames(data)
    let n = try validLength(length, x)
    let block = Swift.min(Int((Double(n) * ratio).rounded()), n)
    let start = try generator.nextInt(below: n - block + 1)
    for f in start..<(start + block) {
      for j in 0..<x.v { for b in 0..<x.m { for ch in 0..<x.c { x[ch, f, j, b] = 0 } } }
    }
    return try x.tensor()
  }
}

extension Transforms {
  /// The result of PCM3's mixing (§7.2).
  public struct Mix: Sendable {
    public let x: Tensor
    /// The mixing weight of the partner sample: the mean of `region`.
    public let lam: Double
    /// Sample i is mixed with sample (i + shift) mod N.
    public let shift: Int
    /// "swap", "paste" or "mixup".
    public let kind: String
    /// `[T/4, V]`: 1 where the partner's values were copied (`lam` everywhere for mixup).
    public let region: Tensor
  }

  /// The random choices of one mixing, in the order the official code draws them.
  public struct MixDraw: Sendable, Equatable {
    /// Partner offset n ~ U{1..N−2}.
    public var shift: Int
    /// 2 or 3 of the layout's body parts.
    public var parts: [Int]
    /// Segments of 4 frames in the region, `Ct`.
    public var segments: Int
    /// First segment of the region.
    public var start: Int
    /// The case: > 0.5 swap, (0.25, 0.5] paste, else mixup.
    public var p: Double
    /// The mixup weight (mixup only).
    public var lamb: Double

    public init(shift: Int, parts: [Int], segments: Int, start: Int, p: Double, lamb: Double) {
      (self.shift, self.parts, self.segments, self.start, self.p, self.lamb) = (
        shift, parts, segments, start, p, lamb
      )
    }
  }

  /// The official segment range 7...11 of 16, scaled to `segments` segments of 4 frames when
  /// the clip is shorter than 64 frames (floor of 7/16 and 11/16 of them, at least 1).
  public static func mixSegmentRange(segments: Int) -> ClosedRange<Int> {
    guard segments < 16 else { return 7...11 }
    let low = Swift.max(1, 7 * segments / 16)
    return low...Swift.max(low, Swift.min(segments, 11 * segments / 16))
  }

  /// Draws a mixing of a batch of `n` clips of `t` frames (§7.2): n, parts, Ct, start, p and
  /// (for mixup) lamb.
  public static func drawMix(
    batch n: Int, frames t: Int, layout: JointLayout, segments range: ClosedRange<Int>? = nil,
    generator g: inout RandomGenerator
  ) throws -> MixDraw {
    try layout.requireStructure("mix")
    let total = t / 4
    let span = range ?? mixSegmentRange(segments: total)
    guard n >= 3, span.lowerBound >= 1, span.upperBound <= total else {
      throw TensorError(
        "mix",
        "needs a batch of at least 3 clips and Ct in 1...\(total) segments of 4 frames, got "
          + "\(n) clips and Ct \(span.lowerBound)...\(span.upperBound)")
    }
    let shift = 1 + (try g.nextInt(below: n - 2))
    let count = Swift.min(2 + (try g.nextInt(below: 2)), layout.parts.count)
    let parts = try g.sample(count, from: layout.parts.count)
    let ct = span.lowerBound + (try g.nextInt(below: span.count))
    let start = try g.nextInt(below: total - ct + 1)
    let p = g.nextDouble()
    let lamb = p <= 0.25 ? g.nextDouble() : 0
    return MixDraw(shift: shift, parts: parts, segments: ct, start: start, p: p, lamb: lamb)
  }

  /// PCM3's view mixing of a batch `[N, C, T, V, M]` (§7.2) with given draws: sample i is
  /// mixed with `j = (i + n) mod N`. p > 0.5: swap (the partner's frames
  /// `[4·start, 4·(start + Ct))` of the parts' joints, both bodies); 0.25 < p ≤ 0.5: paste (the
  /// same region filled with the partner's first `min(2·4Ct, T)` frames resampled by nearest
  /// neighbour to `4Ct`); else mixup `(1 − lamb)·x + lamb·x_j`. `lam` is the mean of the
  /// `[T/4, V]` region map.
  public static func mix(_ batch: Tensor, layout: JointLayout, draw: MixDraw) throws -> Mix {
    try layout.requireStructure("mix")
    guard batch.rank == 5, batch.shape[0] >= 3, batch.shape[3] == layout.count,
      batch.shape[2] >= 4
    else {
      throw TensorError(
        "mix",
        "expects a batch [N ≥ 3, C, T ≥ 4, \(layout.count), M], got \(shapeString(batch.shape))")
    }
    let (n, c, t, v, m) = (
      batch.shape[0], batch.shape[1], batch.shape[2], batch.shape[3], batch.shape[4]
    )
    let segments = t / 4
    guard draw.shift >= 1, draw.shift < n, draw.segments >= 1, draw.start >= 0,
      draw.start + draw.segments <= segments,
      draw.parts.allSatisfy({ $0 >= 0 && $0 < layout.parts.count })
    else {
      throw TensorError(
        "mix",
        "draws outside the batch: shift \(draw.shift), segments \(draw.start)+\(draw.segments) "
          + "of \(segments), parts \(draw.parts)")
    }
    var values = batch.scalars
    let source = values
    let per = c * t * v * m
    func at(_ i: Int, _ ch: Int, _ f: Int, _ j: Int, _ b: Int) -> Int {
      i * per + ((ch * t + f) * v + j) * m + b
    }
    if draw.p <= 0.25 {
      let lamb = draw.lamb
      // In float32 as the reference: x·(1 − lamb) + x_j·lamb.
      let (keep, take) = (Float(1 - lamb), Float(lamb))
      for i in 0..<n {
        let partner = (i + draw.shift) % n
        for k in 0..<per {
          values[i * per + k] = source[i * per + k] * keep + source[partner * per + k] * take
        }
      }
      return Mix(
        x: try Tensor(shape: batch.shape, scalars: values), lam: lamb, shift: draw.shift,
        kind: "mixup", region: Tensor.full([segments, v], Float(lamb)))
    }
    let joints = Set(draw.parts.flatMap { layout.parts[$0].joints }).sorted()
    let ct = draw.segments
    let (from, span) = (4 * draw.start, 4 * ct)
    let paste = draw.p <= 0.5
    let pasted = Swift.min(2 * span, t)
    for i in 0..<n {
      let partner = (i + draw.shift) % n
      for k in 0..<span {
        // Swap: the partner's same frames; paste: its first frames, resampled (nearest).
        let frame = paste ? Swift.min(k * pasted / span, t - 1) : from + k
        for j in joints {
          for ch in 0..<c {
            for b in 0..<m {
              values[at(i, ch, from + k, j, b)] = source[at(partner, ch, frame, j, b)]
            }
          }
        }
      }
    }
    var region = [Float](repeating: 0, count: segments * v)
    for s in draw.start..<(draw.start + ct) { for j in joints { region[s * v + j] = 1 } }
    let lam = Double(ct * joints.count) / Double(segments * v)
    return Mix(
      x: try Tensor(shape: batch.shape, scalars: values), lam: lam, shift: draw.shift,
      kind: paste ? "paste" : "swap", region: try Tensor(shape: [segments, v], scalars: region))
  }

  /// `mix` with draws from `generator` (`drawMix`).
  public static func mix(_ batch: Tensor, layout: JointLayout, generator g: inout RandomGenerator)
    throws -> Mix
  {
    guard batch.rank == 5 else {
      throw TensorError("mix", "expects a batch [N, C, T, V, M], got \(shapeString(batch.shape))")
    }
    let draw = try drawMix(
      batch: batch.shape[0], frames: batch.shape[2], layout: layout, generator: &g)
    return try mix(batch, layout: layout, draw: draw)
  }
}
