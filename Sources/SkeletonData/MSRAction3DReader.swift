import Foundation
import TensorCore

/// Reads MSR Action3D skeleton files (`aAA_sSS_eEE_skeleton3D.txt`: one joint per line,
/// `x y z confidence`, 20 lines per frame) into `[3, T, 20, 1]` samples (label = action − 1).
public enum MSRAction3DReader {
  /// Action, subject and repetition from the file name, or nil.
  public static func nameFields(_ path: String) -> (action: Int, subject: Int, repetition: Int)? {
    let name = (path as NSString).lastPathComponent
    let parts = name.split(separator: "_")
    guard parts.count >= 3, parts[0].first == "a", parts[1].first == "s", parts[2].first == "e",
      let a = Int(parts[0].dropFirst()), let s = Int(parts[1].dropFirst()),
      let e = Int(parts[2].dropFirst())
    else { return nil }
    return (a, s, e)
  }

  public static func read(path: String) throws -> SkeletonSample {
    var scanner = try TextScanner(path: path)
    var values: [Float] = []
    while !scanner.atEnd {
      for what in ["x", "y", "z"] { values.append(try scanner.float("joint \(what)")) }
      _ = try scanner.double("joint confidence")
    }
    let joints = JointLayout.msrAction3D.count
    guard values.count % (joints * 3) == 0, !values.isEmpty else {
      throw TensorError(
        "skeleton",
        "\(path): \(values.count / 3) joint rows is not a whole number of \(joints)-joint frames")
    }
    let t = values.count / (joints * 3)
    let data = try Tensor(shape: [3, t, joints, 1], op: "skeleton") { out in
      for f in 0..<t {
        for j in 0..<joints {
          for c in 0..<3 { out[(c * t + f) * joints + j] = values[(f * joints + j) * 3 + c] }
        }
      }
    }
    let fields = nameFields(path)
    return SkeletonSample(
      data: data, length: t, label: (fields?.action ?? 0) - 1, subject: fields?.subject ?? 0,
      replication: fields?.repetition ?? 0, source: path)
  }
}
