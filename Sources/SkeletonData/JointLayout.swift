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

  /// The layout with `count` joints among the known ones, or nil.
  public static func forJointCount(_ count: Int) -> JointLayout? {
    known.first { $0.count == count }
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
