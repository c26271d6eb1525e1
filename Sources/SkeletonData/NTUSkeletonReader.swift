import Foundation
import TensorCore

/// Reads raw NTU RGB+D 60/120 `.skeleton` files (methods.md §1.2 item 0) into `[3, T, V, 2]`
/// samples: x, y, z of every joint; the file name `SsssCcccPpppRrrrAaaa` gives setup, camera,
/// performer, replication and action.
public enum NTUSkeletonReader {
  /// How the (at most) two bodies are chosen when a file has more.
  public enum BodySelection: String, Sendable, CaseIterable {
    /// MAMP's (and CTR-GCN's) denoising: bodies tracked for ≤ 11 frames are dropped, then
    /// bodies whose x-spread exceeds 0.8 × their y-spread in ≥ 69.754% of their frames; the rest
    /// are ranked by motion; body 1 is the largest, later bodies fill body 1's or body 2's
    /// frames where they do not overlap; frames where no body remains are removed.
    case denoised
    /// The AGCN/PCM3 converter: the two bodies with the largest energy (sum over x, y, z of
    /// the standard deviation over the non-empty frames' joints).
    case energy
  }

  /// One tracked body: the frames it appears in and its joints there.
  struct Body {
    var frames: [Int] = []
    var joints: [Float] = []  // frames × V × 3
  }

  /// The fields of an NTU file name, or nil when the name does not follow the pattern.
  public static func nameFields(_ path: String) -> (
    setup: Int, camera: Int, performer: Int, replication: Int, action: Int
  )? {
    let name = (path as NSString).lastPathComponent
    let chars = Array(name.prefix(20))
    guard chars.count == 20 else { return nil }
    func field(_ letter: Character, _ at: Int) -> Int? {
      guard chars[at] == letter else { return nil }
      return Int(String(chars[(at + 1)..<(at + 4)]))
    }
    guard let s = field("S", 0), let c = field("C", 4), let p = field("P", 8),
      let r = field("R", 12), let a = field("A", 16)
    else { return nil }
    return (s, c, p, r, a)
  }

  /// Parses a file into its tracked bodies (in order of first appearance), the frame count
  /// and the joint count.
  static func parse(_ path: String) throws -> (bodies: [Body], frames: Int, joints: Int) {
    var scanner = try TextScanner(path: path)
    let frames = try scanner.integer("the frame count")
    guard frames >= 0 else { throw scanner.error("negative frame count \(frames)") }
    var order: [String] = []
    var bodies: [String: Body] = [:]
    var jointCount = 0
    for frame in 0..<frames {
      let count = try scanner.integer("the body count of frame \(frame + 1)")
      guard count >= 0, count < 64 else {
        throw scanner.error("frame \(frame + 1) claims \(count) bodies")
      }
      for _ in 0..<count {
        let id = scanner.word()
        guard !id.isEmpty else {
          throw scanner.error("expected a body id, found the end of the file")
        }
        for k in 0..<9 { try scanner.skipField("body field \(k + 2) of 10") }
        let joints = try scanner.integer("the joint count")
        guard joints > 0, joints <= 64 else { throw scanner.error("joint count \(joints)") }
        if jointCount == 0 { jointCount = joints }
        guard joints == jointCount else {
          throw scanner.error("\(joints) joints where earlier bodies had \(jointCount)")
        }
        if bodies[id] == nil {
          bodies[id] = Body()
          order.append(id)
        }
        bodies[id]?.frames.append(frame)
        for _ in 0..<joints {
          let x = try scanner.float("joint x")
          let y = try scanner.float("joint y")
          let z = try scanner.float("joint z")
          // Depth/colour coordinates, orientation and tracking state are not used: skip them
          // without converting (they must still be there).
          for k in 0..<9 { try scanner.skipField("joint field \(k + 4) of 12") }
          bodies[id]?.joints.append(contentsOf: [x, y, z])
        }
      }
    }
    guard scanner.atEnd else { throw scanner.error("unexpected text after \(frames) frames") }
    // Joints come from the file (25 in NTU's Kinect v2 files); a file without bodies has 25.
    return (order.compactMap { bodies[$0] }, frames, jointCount > 0 ? jointCount : 25)
  }

  /// Sum over x, y, z of the variance of all joint positions of a body (its "motion").
  static func motion(_ body: Body, frames: [Int]? = nil, joints v: Int) -> Double {
    var sums = [Double](repeating: 0, count: 3)
    var squares = [Double](repeating: 0, count: 3)
    var n = 0.0
    let rows = frames ?? Array(0..<body.frames.count)
    for r in rows {
      for j in 0..<v {
        for c in 0..<3 {
          let value = Double(body.joints[(r * v + j) * 3 + c])
          sums[c] += value
          squares[c] += value * value
        }
      }
      n += Double(v)
    }
    guard n > 0 else { return 0 }
    return (0..<3).reduce(0) { $0 + squares[$1] / n - (sums[$1] / n) * (sums[$1] / n) }
  }

  /// Frames (rows of the body) whose x-spread is at most 0.8 × their y-spread.
  static func validBySpread(_ body: Body, joints v: Int) -> [Int] {
    (0..<body.frames.count).filter { r in
      var (xMin, xMax, yMin, yMax) = (
        Float.infinity, -Float.infinity, Float.infinity, -Float.infinity
      )
      for j in 0..<v {
        let x = body.joints[(r * v + j) * 3]
        let y = body.joints[(r * v + j) * 3 + 1]
        xMin = min(xMin, x)
        xMax = max(xMax, x)
        yMin = min(yMin, y)
        yMax = max(yMax, y)
      }
      return xMax - xMin <= 0.8 * (yMax - yMin)
    }
  }

  /// Reads one file as a sample `[3, T, V, 2]` (label = action − 1).
  public static func read(path: String, selection: BodySelection = .denoised) throws
    -> SkeletonSample
  {
    let (bodies, frameCount, v) = try parse(path)
    let fields = nameFields(path)
    var frames = [[Float]](repeating: [Float](repeating: 0, count: 2 * v * 3), count: frameCount)
    func place(_ body: Body, slot: Int) {
      for (r, frame) in body.frames.enumerated() {
        for i in 0..<(v * 3) { frames[frame][slot * v * 3 + i] = body.joints[r * v * 3 + i] }
      }
    }
    switch selection {
    case .denoised:
      var kept = bodies
      if kept.count > 1 { kept = kept.filter { $0.frames.count > 11 } }
      var motions = kept.map { motion($0, joints: v) }
      if kept.count > 1 {
        var survivors: [Body] = []
        var survivorMotion: [Double] = []
        for (body, m) in zip(kept, motions) {
          let valid = validBySpread(body, joints: v)
          let ratio = Double(body.frames.count - valid.count) / Double(body.frames.count)
          if ratio >= 0.69754 { continue }
          survivors.append(body)
          survivorMotion.append(
            valid.count < body.frames.count ? min(m, motion(body, frames: valid, joints: v)) : m)
        }
        if !survivors.isEmpty {
          kept = survivors
          motions = survivorMotion
        }
      }
      let ranked = zip(kept, motions).enumerated().sorted {
        $0.element.1 != $1.element.1 ? $0.element.1 > $1.element.1 : $0.offset < $1.offset
      }.map(\.element.0)
      if let first = ranked.first {
        place(first, slot: 0)
        var span1 = (first.frames.first ?? 0, first.frames.last ?? 0)
        var span2 = (0, 0)
        for body in ranked.dropFirst() {
          let (start, end) = (body.frames.first ?? 0, body.frames.last ?? 0)
          if min(span1.1, end) - max(span1.0, start) <= 0 {
            place(body, slot: 0)
            span1 = (min(start, span1.0), max(end, span1.1))
          } else if min(span2.1, end) - max(span2.0, start) <= 0 {
            place(body, slot: 1)
            span2 = (min(start, span2.0), max(end, span2.1))
          }
        }
      }
      // Frames where no body remains are removed.
      frames = frames.filter { frame in frame.contains { $0 != 0 } }
    case .energy:
      func energy(_ body: Body) -> Double {
        let rows = (0..<body.frames.count).filter { r in
          (0..<(v * 3)).contains { body.joints[r * v * 3 + $0] != 0 }
        }
        guard !rows.isEmpty else { return 0 }
        var total = 0.0
        for c in 0..<3 {
          var sum = 0.0
          var square = 0.0
          for r in rows {
            for j in 0..<v {
              let value = Double(body.joints[(r * v + j) * 3 + c])
              sum += value
              square += value * value
            }
          }
          let n = Double(rows.count * v)
          total += max(0, square / n - (sum / n) * (sum / n)).squareRoot()
        }
        return total
      }
      let ranked = bodies.enumerated().sorted {
        let (a, b) = (energy($0.element), energy($1.element))
        return a != b ? a > b : $0.offset < $1.offset
      }.map(\.element)
      for (slot, body) in ranked.prefix(2).enumerated() { place(body, slot: slot) }
    }
    let t = frames.count
    let data = try Tensor(shape: [3, max(t, 1), v, 2], op: "skeleton") { out in
      for i in 0..<out.count { out[i] = 0 }
      for (f, frame) in frames.enumerated() {
        for m in 0..<2 {
          for j in 0..<v {
            for c in 0..<3 {
              out[((c * max(t, 1) + f) * v + j) * 2 + m] = frame[(m * v + j) * 3 + c]
            }
          }
        }
      }
    }
    return SkeletonSample(
      data: data, length: t, label: (fields?.action ?? 0) - 1, subject: fields?.performer ?? 0,
      view: fields?.camera ?? 0, setup: fields?.setup ?? 0, replication: fields?.replication ?? 0,
      source: path)
  }

  /// The number of bodies present in any frame of a file (the `max_bodies` of samples.csv).
  public static func maxBodiesPerFrame(path: String) throws -> (frames: Int, bodies: Int) {
    var scanner = try TextScanner(path: path)
    let frames = try scanner.integer("the frame count")
    guard frames >= 0 else { throw scanner.error("negative frame count \(frames)") }
    var most = 0
    for frame in 0..<frames {
      let count = try scanner.integer("the body count of frame \(frame + 1)")
      guard count >= 0, count < 64 else {
        throw scanner.error("frame \(frame + 1) claims \(count) bodies")
      }
      most = max(most, count)
      for _ in 0..<count {
        for _ in 0..<10 { scanner.skipToken() }
        let joints = try scanner.integer("the joint count")
        guard joints > 0, joints <= 64 else { throw scanner.error("joint count \(joints)") }
        for _ in 0..<(joints * 12) { scanner.skipToken() }
      }
    }
    return (frames, most)
  }
}
