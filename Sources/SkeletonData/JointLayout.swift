import Foundation
import TensorCore

/// A skeleton's joints as data: names, bones, body parts, left/right pairs and the reference
/// joints that preprocessing uses. Indices are 0-based.
public struct JointLayout: Sendable, Equatable {
  public let name: String
  public let joints: [String]
  /// Bones as (parent, child) pairs, for drawing.
  public let bones: [(Int, Int)]
  /// Body parts (PCM3 masking, occlusion): trunk, arms, legs.
  public let parts: [(name: String, joints: [Int])]
  /// Mirror pairs (left, right).
  public let mirrored: [(Int, Int)]
  /// The centre joint that centring subtracts (NTU: spine mid).
  public let centre: Int
  /// The joints whose vector (second − first) alignment turns to +z (spine base → spine mid).
  public let spine: (Int, Int)
  /// The joints whose vector (second − first) alignment turns to +x (left → right shoulder).
  public let shoulders: (Int, Int)

  public var count: Int { joints.count }

  public init(
    name: String, joints: [String], bones: [(Int, Int)],
    parts: [(name: String, joints: [Int])], mirrored: [(Int, Int)], centre: Int,
    spine: (Int, Int), shoulders: (Int, Int)
  ) {
    (self.name, self.joints, self.bones, self.parts) = (name, joints, bones, parts)
    (self.mirrored, self.centre, self.spine, self.shoulders) = (mirrored, centre, spine, shoulders)
  }

  public static func == (a: JointLayout, b: JointLayout) -> Bool { a.name == b.name }

  /// Kinect v2, 25 joints (NTU RGB+D 60/120, PKU-MMD), methods.md §1.1.
  public static let kinectV2 = JointLayout(
    name: "kinect-v2-25",
    joints: [
      "spine base", "spine mid", "neck", "head", "left shoulder", "left elbow", "left wrist",
      "left hand", "right shoulder", "right elbow", "right wrist", "right hand", "left hip",
      "left knee", "left ankle", "left foot", "right hip", "right knee", "right ankle",
      "right foot", "spine shoulder", "left hand tip", "left thumb", "right hand tip",
      "right thumb",
    ],
    bones: [
      (0, 1), (1, 20), (20, 2), (2, 3), (20, 4), (4, 5), (5, 6), (6, 7), (7, 21), (7, 22),
      (20, 8), (8, 9), (9, 10), (10, 11), (11, 23), (11, 24), (0, 12), (12, 13), (13, 14),
      (14, 15), (0, 16), (16, 17), (17, 18), (18, 19),
    ],
    // methods.md §4.4 (1-based there): A trunk, B right arm, C left arm, D right leg, E left leg.
    parts: [
      ("trunk", [3, 2, 20, 1, 0]), ("right arm", [8, 9, 10, 11, 23, 24]),
      ("left arm", [4, 5, 6, 7, 21, 22]), ("right leg", [16, 17, 18, 19]),
      ("left leg", [12, 13, 14, 15]),
    ],
    mirrored: [
      (4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19), (21, 23),
      (22, 24),
    ],
    centre: 1, spine: (0, 1), shoulders: (4, 8))

  /// Kinect v1, 20 joints in MSR Action3D's order (its README).
  public static let msrAction3D = JointLayout(
    name: "msr-action3d-20",
    joints: [
      "left shoulder", "right shoulder", "neck", "spine", "left hip", "right hip", "hip centre",
      "left elbow", "right elbow", "left wrist", "right wrist", "left hand", "right hand",
      "left knee", "right knee", "left ankle", "right ankle", "left foot", "right foot", "head",
    ],
    bones: [
      (6, 3), (3, 2), (2, 19), (2, 0), (0, 7), (7, 9), (9, 11), (2, 1), (1, 8), (8, 10),
      (10, 12), (6, 4), (4, 13), (13, 15), (15, 17), (6, 5), (5, 14), (14, 16), (16, 18),
    ],
    parts: [
      ("trunk", [19, 2, 3, 6]), ("right arm", [1, 8, 10, 12]), ("left arm", [0, 7, 9, 11]),
      ("right leg", [5, 14, 16, 18]), ("left leg", [4, 13, 15, 17]),
    ],
    mirrored: [(0, 1), (4, 5), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 18)],
    centre: 3, spine: (6, 3), shoulders: (0, 1))

  /// The layouts SkelLab knows.
  public static let known = [kinectV2, msrAction3D]

  /// The layout with `count` joints: one described with `register` (`joint_layout` in a
  /// script), else a known one, else nil.
  public static func forJointCount(_ count: Int) -> JointLayout? {
    Registered.shared.layouts.last { $0.count == count } ?? known.first { $0.count == count }
  }

  /// A layout the readers give data of `count` joints when no layout has that many: joints by
  /// number, no bones, parts or reference joints. Models, masks by token and the protocols
  /// work on it; what needs the skeleton's structure (drawing, body parts, normalisation,
  /// conversion) says how to describe it (`requireStructure`).
  public static func generic(_ count: Int) -> JointLayout {
    JointLayout(
      name: "undescribed-\(count)", joints: (0..<count).map { "joint \($0 + 1)" }, bones: [],
      parts: [], mirrored: [], centre: 0, spine: (0, 0), shoulders: (0, 0))
  }

  /// The layout for `count` joints, or the generic one.
  public static func forData(_ count: Int) -> JointLayout {
    forJointCount(count) ?? generic(count)
  }

  /// Whether this is a generic layout (no structure).
  public var isGeneric: Bool { name.hasPrefix("undescribed-") }

  /// Throws, saying how to describe the layout, when `op` needs a structure this one lacks.
  public func requireStructure(_ op: String) throws {
    guard isGeneric else { return }
    throw TensorError(op, JointLayout.describeMessage(count))
  }

  /// What to say about data of `count` joints that no layout describes.
  public static func describeMessage(_ count: Int) -> String {
    let names = (Registered.shared.layouts + known).map { "\($0.count) (\($0.name))" }
    return "\(count) joints match no layout SkelLab knows (\(names.joined(separator: ", "))); "
      + "describe yours once with joint_layout(name=\"...\", joints=[names], "
      + "bones=[[parent, child], ...], parts=[[\"left arm\", [joints]], ...], centre=, "
      + "spine=[from, to], shoulders=[left, right]) (0-based joint indices)"
  }

  /// Adds a described layout; throws when it clashes with a known one or is inconsistent.
  public static func register(_ layout: JointLayout) throws {
    try layout.validate()
    if let clash = known.first(where: { $0.count == layout.count || $0.name == layout.name }) {
      throw TensorError(
        "joint_layout",
        "\(clash.name) already describes \(clash.count) joints; a new layout needs another "
          + "joint count and name")
    }
    Registered.shared.add(layout)
  }

  /// Every index inside the joints, names unique and non-empty.
  public func validate() throws {
    func check(_ j: Int, _ what: String) throws {
      guard (0..<count).contains(j) else {
        throw TensorError("joint_layout", "\(what): joint \(j) is not in 0..<\(count)")
      }
    }
    guard count >= 2, count <= 1000, !name.isEmpty, !name.hasPrefix("undescribed-") else {
      throw TensorError("joint_layout", "a layout has a name and 2...1000 joints, got \(count)")
    }
    guard Set(joints).count == count else {
      throw TensorError("joint_layout", "joint names must be unique")
    }
    for (a, b) in bones {
      try check(a, "bone")
      try check(b, "bone")
    }
    for part in parts { for j in part.joints { try check(j, "part '\(part.name)'") } }
    for (a, b) in mirrored {
      try check(a, "mirrored pair")
      try check(b, "mirrored pair")
    }
    try check(centre, "centre")
    try check(spine.0, "spine")
    try check(spine.1, "spine")
    try check(shoulders.0, "shoulders")
    try check(shoulders.1, "shoulders")
  }

  /// The layouts described in this process (a lock guards the list: readers may run on a
  /// loader's thread).
  final class Registered: @unchecked Sendable {
    // Sendable: `list` is read and written under `lock` only.
    static let shared = Registered()
    private let lock = NSLock()
    private var list: [JointLayout] = []
    var layouts: [JointLayout] { lock.withLock { list } }
    func add(_ layout: JointLayout) {
      lock.withLock {
        list.removeAll { $0.name == layout.name || $0.count == layout.count }
        list.append(layout)
      }
    }
  }
}

extension JointLayout {
  /// For each joint of `target`, the joint of this layout that stands in for it (Kinect v1 →
  /// v2: the spine shoulder is the v1 neck, hand tips and thumbs are the v1 hands), or nil
  /// when no mapping is known.
  public func mapping(to target: JointLayout) -> [Int]? {
    if self == target { return Array(0..<count) }
    if self == .msrAction3D && target == .kinectV2 {
      return [
        6, 3, 2, 19, 0, 7, 9, 11, 1, 8, 10, 12, 4, 13, 15, 17, 5, 14, 16, 18, 2, 11, 11, 12, 12,
      ]
    }
    return nil
  }
}
