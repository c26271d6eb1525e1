import Foundation
import TensorCore

/// A 3-vector for the kinematics.
struct Vec3 {
  var x: Double, y: Double, z: Double
  init(_ x: Double, _ y: Double, _ z: Double) { (self.x, self.y, self.z) = (x, y, z) }
  static func + (a: Vec3, b: Vec3) -> Vec3 { Vec3(a.x + b.x, a.y + b.y, a.z + b.z) }
  static func - (a: Vec3, b: Vec3) -> Vec3 { Vec3(a.x - b.x, a.y - b.y, a.z - b.z) }
  static func * (a: Vec3, s: Double) -> Vec3 { Vec3(a.x * s, a.y * s, a.z * s) }
  func dot(_ b: Vec3) -> Double { x * b.x + y * b.y + z * b.z }
  var length: Double { dot(self).squareRoot() }
  var unit: Vec3 {
    let l = length
    return l > 1e-12 ? self * (1 / l) : Vec3(0, -1, 0)
  }
  /// Rotation about the vertical axis by `angle` (yaw).
  func yawed(_ angle: Double) -> Vec3 {
    let (c, s) = (cos(angle), sin(angle))
    return Vec3(c * x + s * z, y, -s * x + c * z)
  }
}

/// The built-in synthetic dataset: procedurally generated actions of articulated 25-joint
/// Kinect-v2 skeletons (methods.md §9.2, the embedded default; needs no files).
///
/// Each sequence is a forward-kinematics animation: a subject (bone lengths scaled per subject
/// and per bone), an action class driving the joint angles over time with per-sample speed,
/// amplitude, phase, onset and duration, performed with either side (mirrored), a camera view
/// (yaw angles 60° apart ± 30°, a tilt of ± 10°, 2–4 m away, 1 m of sideways placement), and
/// sensor effects: per-joint noise, occasional tracking glitches on a hand or foot, occasional
/// dropped (zero) joints. Some single-person clips have an idle bystander as body 2, so the
/// number of bodies does not give the two-person classes away. Sample `i` depends only on the
/// seed and `i`, so random access is deterministic.
public struct SyntheticSkeletons: Sendable {
  /// The action classes, in label order.
  public static let classes = [
    "wave one hand", "wave both hands", "clap", "punch", "kick", "squat", "bow", "jump",
    "turn around", "raise both arms", "walk in place", "sit down", "drink", "phone call",
    "check watch", "handshake", "push",
  ]
  /// The two-person interactions are the last classes.
  public static let interactions = 2

  public let seed: UInt64
  public let subjects: Int
  public let views: Int
  public let repetitions: Int
  /// Frames per sample (valid frames vary from 60% of this up to it; the rest is zero).
  public let frames: Int

  public init(
    seed: UInt64 = 0, subjects: Int = 10, views: Int = 3, repetitions: Int = 2, frames: Int = 64
  )
    throws
  {
    guard subjects > 0, views > 0, repetitions > 0, frames >= 8 else {
      throw TensorError(
        "synthetic",
        "needs subjects, views and repetitions > 0 and at least 8 frames; got \(subjects), "
          + "\(views), \(repetitions), \(frames)")
    }
    self.seed = seed
    self.subjects = subjects
    self.views = views
    self.repetitions = repetitions
    self.frames = frames
  }

  /// The number of samples: classes × subjects × views × repetitions.
  public var count: Int { Self.classes.count * subjects * views * repetitions }

  /// The (label, subject, view, repetition) of sample `index` (all 1-based but the label).
  public func identity(_ index: Int) -> (label: Int, subject: Int, view: Int, repetition: Int) {
    var rest = index
    let repetition = rest % repetitions
    rest /= repetitions
    let view = rest % views
    rest /= views
    let subject = rest % subjects
    rest /= subjects
    return (rest, subject + 1, view + 1, repetition + 1)
  }

  /// A generator for one purpose of one sample (SplitMix-style mixing of the seed and keys).
  func generator(_ keys: UInt64...) -> RandomGenerator {
    var h = seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x632B_E59B_D9B4_E019
    for k in keys {
      h ^= k &+ 0x9E37_79B9_7F4A_7C15 &+ (h << 6) &+ (h >> 2)
      h = (h ^ (h >> 31)) &* 0xBF58_476D_1CE4_E5B9
    }
    return RandomGenerator(seed: h)
  }

  /// Sample `index` as `[3, frames, 25, 2]`.
  public func sample(_ index: Int) throws -> SkeletonSample {
    guard index >= 0, index < count else {
      throw TensorError("synthetic", "index \(index) is out of range for \(count) samples")
    }
    let id = identity(index)
    var random = generator(1, UInt64(index))
    var subjectRandom = generator(2, UInt64(id.subject))
    let body = Proportions(&subjectRandom)
    var bystanderRandom = generator(3, UInt64(index))
    let bystander = Proportions(&bystanderRandom)
    let length = Int(Double(frames) * (0.6 + 0.4 * random.nextDouble()))
    let style = Style(&random)
    // Views 60° apart with ±30° jitter (together −90° to 90°), a camera tilt of ±10°, the subject anywhere in a
    // 1 m × 2 m area; half of the performances are mirrored (the other hand or leg); the
    // action starts and ends at random times inside the clip.
    let viewYaw =
      Double(id.view - (views + 1) / 2) * (Double.pi / 3) + (random.nextDouble() - 0.5) * 1.05
    let tilt = (random.nextDouble() - 0.5) * 0.35
    let place = Vec3(
      (random.nextDouble() - 0.5) * 1.0, -0.9 + (random.nextDouble() - 0.5) * 0.3,
      2.0 + 2.0 * random.nextDouble())
    let mirrored = random.nextDouble() < 0.5
    let onset = 0.25 * random.nextDouble()
    let span = 0.65 + (1 - onset - 0.65) * random.nextDouble()
    let label = id.label
    let twoPerson = label >= Self.classes.count - Self.interactions
    let hasBystander = !twoPerson && random.nextDouble() < 0.3
    var values = [Float](repeating: 0, count: 3 * frames * 25 * 2)
    for f in 0..<length {
      let clock = length > 1 ? Double(f) / Double(length - 1) : 0
      let u = min(max((clock - onset) / span, 0), 1)
      var bodies: [[Vec3]] = []
      if twoPerson {
        bodies = Self.interaction(label, u: u, style: style, first: body, second: bystander)
      } else {
        bodies = [Self.pose(label, u: u, style: style, body: body).map { $0 }]
        if hasBystander {
          let idle = Self.pose(10, u: clock, style: Style.idle, body: bystander)
          bodies.append(idle.map { $0.yawed(-0.5) + Vec3(-1.2, 0, 0.6) })
        }
      }
      if mirrored { bodies = bodies.map(Self.mirror) }
      for (m, joints) in bodies.enumerated() {
        for (j, p) in joints.enumerated() {
          // Body frame (x left, y up, z forward) to the camera: the subject faces the camera,
          // which is tilted about its x axis.
          let r = p.yawed(Double.pi + viewYaw)
          let q =
            Vec3(r.x, cos(tilt) * r.y - sin(tilt) * r.z, sin(tilt) * r.y + cos(tilt) * r.z) + place
          for (c, value) in [q.x, q.y, q.z].enumerated() {
            values[((c * frames + f) * 25 + j) * 2 + m] = Float(value)
          }
        }
      }
    }
    try addSensorEffects(
      &values, length: length, bodies: twoPerson || hasBystander ? 2 : 1, random: &random)
    let data = try Tensor(shape: [3, frames, 25, 2], scalars: values)
    return SkeletonSample(
      data: data, length: length, label: label, subject: id.subject, view: id.view,
      replication: id.repetition, source: "synthetic:\(seed):\(index)")
  }

  /// The left-right mirror image of a body (x negated, left and right joints swapped).
  static func mirror(_ joints: [Vec3]) -> [Vec3] {
    var out = joints.map { Vec3(-$0.x, $0.y, $0.z) }
    for (left, right) in JointLayout.kinectV2.mirrored {
      out.swapAt(left, right)
    }
    return out
  }

  /// Noise on every joint, glitches on a hand or foot for a few frames, dropped joints.
  func addSensorEffects(
    _ values: inout [Float], length: Int, bodies: Int, random: inout RandomGenerator
  )
    throws
  {
    let t = frames
    func at(_ c: Int, _ f: Int, _ j: Int, _ m: Int) -> Int { ((c * t + f) * 25 + j) * 2 + m }
    for m in 0..<bodies {
      for f in 0..<length {
        for j in 0..<25 {
          for c in 0..<3 { values[at(c, f, j, m)] += Float(random.nextNormal() * 0.004) }
        }
      }
    }
    if random.nextDouble() < 0.15 {
      let joint = [7, 11, 15, 19, 21, 23][try random.nextInt(below: 6)]
      let span = 5 + (try random.nextInt(below: 11))
      let start = try random.nextInt(below: max(length - span, 1))
      for f in start..<min(start + span, length) {
        for c in 0..<3 { values[at(c, f, joint, 0)] += Float(random.nextNormal() * 0.05) }
      }
    }
    if random.nextDouble() < 0.1 {
      let joint = try random.nextInt(below: 25)
      let span = 3 + (try random.nextInt(below: 8))
      let start = try random.nextInt(below: max(length - span, 1))
      for f in start..<min(start + span, length) {
        for c in 0..<3 { values[at(c, f, joint, 0)] = 0 }
      }
    }
  }

  /// A subject's proportions: an overall scale and per-bone variation.
  struct Proportions {
    let spine: Double, chest: Double, neck: Double, head: Double, shoulder: Double
    let upperArm: Double, forearm: Double, hand: Double, hip: Double, thigh: Double
    let shin: Double, foot: Double
    init(_ random: inout RandomGenerator) {
      let scale = 0.85 + 0.3 * random.nextDouble()
      func bone(_ base: Double) -> Double { base * scale * (0.95 + 0.1 * random.nextDouble()) }
      spine = bone(0.25)
      chest = bone(0.22)
      neck = bone(0.06)
      head = bone(0.15)
      shoulder = bone(0.17)
      upperArm = bone(0.28)
      forearm = bone(0.25)
      hand = bone(0.08)
      hip = bone(0.09)
      thigh = bone(0.42)
      shin = bone(0.40)
      foot = bone(0.15)
    }
  }

  /// A performance's style: speed (cycles), amplitude, phase, and the posture of whatever the
  /// action does not drive (rest arms, stance, lean) — nuisance variation a classifier must see
  /// through.
  struct Style {
    let speed: Double, amplitude: Double, phase: Double, lean: Double
    var rest = (elevation: 0.15, azimuth: 0.3, elbow: 0.2)
    var stance = 0.05
    var reach = 0.0
    init(_ random: inout RandomGenerator) {
      speed = 0.7 + 0.6 * random.nextDouble()
      amplitude = 0.7 + 0.6 * random.nextDouble()
      phase = 2 * Double.pi * random.nextDouble()
      lean = (random.nextDouble() - 0.5) * 0.25
      rest = (
        0.05 + 0.35 * random.nextDouble(), 0.6 * random.nextDouble(),
        0.1 + 0.9 * random.nextDouble()
      )
      stance = 0.02 + 0.16 * random.nextDouble()
      reach = (random.nextDouble() - 0.5) * 0.4
    }
    init(speed: Double, amplitude: Double, phase: Double, lean: Double) {
      (self.speed, self.amplitude, self.phase, self.lean) = (speed, amplitude, phase, lean)
    }
    static let idle = Style(speed: 0.3, amplitude: 0.15, phase: 0, lean: 0)
  }

  /// Joint angles of one frame (radians).
  struct Angles {
    var pitch = 0.0, roll = 0.0, yaw = 0.0, nod = 0.0
    var leftArm = (elevation: 0.15, azimuth: 0.3, elbow: 0.2)
    var rightArm = (elevation: 0.15, azimuth: 0.3, elbow: 0.2)
    var leftLeg = (flexion: 0.0, abduction: 0.05, knee: 0.05)
    var rightLeg = (flexion: 0.0, abduction: 0.05, knee: 0.05)
    var lift = 0.0
    var shift = Vec3(0, 0, 0)
  }

  /// A smooth 0→1→0 bump over `u` in [a, b].
  static func bump(_ u: Double, _ a: Double, _ b: Double) -> Double {
    guard u > a, u < b else { return 0 }
    return 0.5 - 0.5 * cos(2 * Double.pi * (u - a) / (b - a))
  }

  /// A smooth 0→1 ramp over `u` in [a, b].
  static func ramp(_ u: Double, _ a: Double, _ b: Double) -> Double {
    if u <= a { return 0 }
    if u >= b { return 1 }
    return 0.5 - 0.5 * cos(Double.pi * (u - a) / (b - a))
  }

  /// The joint angles of a single-person action at normalised time `u`.
  static func angles(_ label: Int, u: Double, style s: Style) -> Angles {
    var a = Angles()
    a.leftArm = s.rest
    a.rightArm = s.rest
    a.leftLeg.abduction = s.stance
    a.rightLeg.abduction = s.stance
    let w = 2 * Double.pi * s.speed * u + s.phase
    let amp = s.amplitude
    a.pitch = s.lean
    a.nod = 0.05 * sin(w * 0.5)
    switch label {
    case 0:  // wave one hand (right)
      a.rightArm = (2.5, 0.6 + 0.45 * amp * sin(3 * w), 0.5 + 0.3 * sin(3 * w + 1))
    case 1:  // wave both hands
      a.rightArm = (2.5, 0.6 + 0.45 * amp * sin(3 * w), 0.4)
      a.leftArm = (2.5, 0.6 + 0.45 * amp * sin(3 * w + Double.pi), 0.4)
    case 2:  // clap: arms forward, hands meet and part
      let open = 0.5 + 0.5 * sin(4 * w)
      a.rightArm = (1.35, 0.05 + 0.55 * amp * open, 0.5)
      a.leftArm = (1.35, 0.05 + 0.55 * amp * open, 0.5)
    case 3:  // punch with the right, left on guard
      let strike = pow(0.5 + 0.5 * sin(2.5 * w), 3)
      a.rightArm = (1.45, 0.15, 2.1 - 2.0 * amp * strike)
      a.leftArm = (0.9, 0.2, 2.2)
      a.yaw = -0.2 * strike
    case 4:  // kick with the right leg
      let k = bump(u, 0.2, 0.8) * amp
      a.rightLeg = (1.3 * k, 0.05, 1.2 * bump(u, 0.15, 0.55) + 0.2 * k)
      a.leftArm = (0.5 * k, 0.9, 0.4)
      a.rightArm = (0.4 * k, 0.9, 0.4)
      a.pitch = s.lean - 0.15 * k
    case 5:  // squat
      let d = bump(u, 0.1, 0.9) * amp
      a.leftLeg = (1.2 * d, 0.15, 2.0 * d)
      a.rightLeg = (1.2 * d, 0.15, 2.0 * d)
      a.pitch = s.lean + 0.5 * d
      a.leftArm = (1.4 * d, 0.1, 0.2)
      a.rightArm = (1.4 * d, 0.1, 0.2)
    case 6:  // bow
      let d = bump(u, 0.1, 0.9) * amp
      a.pitch = s.lean + 1.0 * d
      a.nod = 0.3 * d
      a.leftArm = (0.1 + 0.6 * d, 0.05, 0.1)
      a.rightArm = (0.1 + 0.6 * d, 0.05, 0.1)
    case 7:  // jump (two or three hops)
      let hop = max(0, sin(2 * Double.pi * (1.5 + s.speed) * u))
      let crouch = max(0, -sin(2 * Double.pi * (1.5 + s.speed) * u))
      a.lift = 0.25 * amp * hop * hop
      a.leftLeg = (0.6 * crouch, 0.05, 1.1 * crouch)
      a.rightLeg = (0.6 * crouch, 0.05, 1.1 * crouch)
      a.leftArm = (0.3 + 1.8 * hop, 0.3, 0.3)
      a.rightArm = (0.3 + 1.8 * hop, 0.3, 0.3)
      a.pitch = s.lean + 0.3 * crouch
    case 8:  // turn around (half a turn, stepping)
      a.yaw = Double.pi * ramp(u, 0.1, 0.9) * (s.phase > Double.pi ? 1 : -1)
      let step = sin(2 * w)
      a.leftLeg = (0.25 * max(0, step), 0.05, 0.5 * max(0, step))
      a.rightLeg = (0.25 * max(0, -step), 0.05, 0.5 * max(0, -step))
    case 9:  // raise both arms
      let r = bump(u, 0.05, 0.95) * amp
      a.leftArm = (0.15 + 2.7 * r, 1.2, 0.1)
      a.rightArm = (0.15 + 2.7 * r, 1.2, 0.1)
    case 10:  // walk in place
      let step = sin(2 * w)
      a.leftLeg = (0.55 * amp * max(0, step), 0.05, 1.0 * amp * max(0, step))
      a.rightLeg = (0.55 * amp * max(0, -step), 0.05, 1.0 * amp * max(0, -step))
      a.leftArm = (0.15 + 0.35 * max(0, -step), 0.1, 0.4)
      a.rightArm = (0.15 + 0.35 * max(0, step), 0.1, 0.4)
    case 11:  // sit down (and stay)
      let d = ramp(u, 0.1, 0.7) * min(amp, 1.1)
      a.leftLeg = (1.5 * d, 0.12, 1.5 * d)
      a.rightLeg = (1.5 * d, 0.12, 1.5 * d)
      a.pitch = s.lean + 0.35 * bump(u, 0.05, 0.75)
      a.leftArm = (0.3 * d, 0.4, 0.8 * d)
      a.rightArm = (0.3 * d, 0.4, 0.8 * d)
    case 12:  // drink: the right hand to the mouth, sips with the head back
      let raise = bump(u, 0.05, 0.95)
      let sip = 0.5 + 0.5 * sin(2 * w)
      a.rightArm = (
        s.rest.elevation + (0.55 + s.reach) * raise, 0.1,
        s.rest.elbow + (2.2 - s.rest.elbow) * raise - 0.15 * sip * raise
      )
      a.nod = -0.25 * raise * sip
    case 13:  // phone call: the right hand held at the ear
      let hold = ramp(u, 0.05, 0.25) * (1 - ramp(u, 0.85, 1))
      a.rightArm = (
        s.rest.elevation + (0.75 + s.reach) * hold, 0.3 + 0.6 * hold,
        s.rest.elbow + (2.5 - s.rest.elbow) * hold
      )
      a.roll = 0.12 * hold
      a.nod = 0.05 * sin(w) * hold
    case 14:  // check watch: the left forearm across the chest, the head down to it
      let look = ramp(u, 0.05, 0.3) * (1 - ramp(u, 0.75, 0.95))
      a.leftArm = (
        s.rest.elevation + (0.4 + s.reach) * look, 0.2, s.rest.elbow + (1.7 - s.rest.elbow) * look
      )
      a.nod = 0.35 * look
      a.pitch = s.lean + 0.1 * look
    default:
      break
    }
    return a
  }

  /// A limb: the middle and end joints from a start, a first direction and a bend toward
  /// `reference`.
  static func limb(
    _ start: Vec3, _ direction: Vec3, _ first: Double, bend: Double, toward reference: Vec3,
    _ second: Double
  )
    -> (middle: Vec3, end: Vec3, direction: Vec3)
  {
    let d = direction.unit
    let middle = start + d * first
    var perpendicular = reference - d * reference.dot(d)
    if perpendicular.length < 1e-6 { perpendicular = Vec3(0, 0, 1) - d * d.z }
    let bent = (d * cos(bend) + perpendicular.unit * sin(bend)).unit
    return (middle, middle + bent * second, bent)
  }

  /// Forward kinematics: the 25 joints of a body (its frame: x left, y up, z forward) for one
  /// frame of action `label`, feet on the ground.
  static func pose(_ label: Int, u: Double, style: Style, body b: Proportions) -> [Vec3] {
    skeleton(angles(label, u: u, style: style), body: b)
  }

  static func skeleton(_ a: Angles, body b: Proportions) -> [Vec3] {
    var p = [Vec3](repeating: Vec3(0, 0, 0), count: 25)
    let base = Vec3(0, 0, 0)
    let up = Vec3(sin(a.roll), cos(a.pitch) * cos(a.roll), sin(a.pitch)).unit
    p[0] = base
    p[1] = base + up * b.spine
    p[20] = p[1] + up * b.chest
    p[2] = p[20] + up * b.neck
    p[3] = p[2] + (up + Vec3(0, 0, sin(a.nod))).unit * b.head
    // Arms: side +1 left (x > 0), −1 right.
    for (side, arm, indices) in [
      (1.0, a.leftArm, [4, 5, 6, 7, 21, 22]), (-1.0, a.rightArm, [8, 9, 10, 11, 23, 24]),
    ] {
      let shoulder = p[20] + Vec3(side * b.shoulder, 0, 0) - up * 0.03
      let (e, az) = (arm.elevation, arm.azimuth)
      let direction = Vec3(side * sin(e) * sin(az), -cos(e), sin(e) * cos(az))
      let (elbow, wrist, forearm) = limb(
        shoulder, direction, b.upperArm, bend: arm.elbow, toward: Vec3(-side * 0.3, 0.4, 1),
        b.forearm)
      let hand = wrist + forearm * b.hand
      p[indices[0]] = shoulder
      p[indices[1]] = elbow
      p[indices[2]] = wrist
      p[indices[3]] = hand
      p[indices[4]] = hand + forearm * (0.7 * b.hand)
      p[indices[5]] = wrist + (forearm + Vec3(-side * 0.6, 0.2, 0.3)).unit * (0.8 * b.hand)
    }
    // Legs.
    for (side, leg, indices) in [
      (1.0, a.leftLeg, [12, 13, 14, 15]), (-1.0, a.rightLeg, [16, 17, 18, 19]),
    ] {
      let hip = base + Vec3(side * b.hip, -0.05, 0)
      let (f, ab) = (leg.flexion, leg.abduction)
      let direction = Vec3(side * sin(ab), -cos(f) * cos(ab), sin(f) * cos(ab))
      let (knee, ankle, _) = limb(
        hip, direction, b.thigh, bend: leg.knee, toward: Vec3(0, 0, -1), b.shin)
      p[indices[0]] = hip
      p[indices[1]] = knee
      p[indices[2]] = ankle
      p[indices[3]] = ankle + Vec3(0, -0.4, 1).unit * b.foot
    }
    // Feet on the ground (the lower ankle 8 cm up), then the lift of a jump; yaw about the root.
    let lowest = min(p[14].y, p[18].y)
    let raise = 0.08 - lowest + a.lift
    return p.map { ($0 + Vec3(0, raise, 0)).yawed(a.yaw) + a.shift }
  }

  /// The two bodies of an interaction, facing each other 1 m apart.
  static func interaction(
    _ label: Int, u: Double, style s: Style, first: Proportions, second: Proportions
  )
    -> [[Vec3]]
  {
    var a = angles(-1, u: u, style: s)
    var b = angles(-1, u: u, style: Style.idle)
    var gap = 1.0
    switch label {
    case classes.count - 2:  // handshake: right hands meet and shake
      let reach = ramp(u, 0.05, 0.35) * (1 - ramp(u, 0.8, 0.98))
      let shake = 0.15 * sin(2 * Double.pi * 3 * s.speed * u) * reach
      a.rightArm = (0.2 + 1.05 * reach + shake, 0.15, 0.6 - 0.3 * reach)
      b.rightArm = (0.2 + 1.05 * reach + shake, 0.15, 0.6 - 0.3 * reach)
      gap = 0.95
    default:  // push: the first pushes with both arms, the second steps back
      let push = bump(u, 0.2, 0.7) * s.amplitude
      a.leftArm = (1.4, 0.1, 1.6 - 1.5 * push)
      a.rightArm = (1.4, 0.1, 1.6 - 1.5 * push)
      a.pitch = s.lean + 0.25 * push
      let back = ramp(u, 0.35, 0.75) * 0.45 * s.amplitude
      b.shift = Vec3(0, 0, -back)
      b.pitch = -0.2 * bump(u, 0.35, 0.8)
      b.leftArm = (0.6 * bump(u, 0.35, 0.8), 0.6, 0.5)
      b.rightArm = (0.6 * bump(u, 0.35, 0.8), 0.6, 0.5)
      gap = 0.8
    }
    let one = skeleton(a, body: first).map { $0.yawed(Double.pi / 2) + Vec3(-gap / 2, 0, 0) }
    let two = skeleton(b, body: second).map { $0.yawed(-Double.pi / 2) + Vec3(gap / 2, 0, 0) }
    return [one, two]
  }
}
