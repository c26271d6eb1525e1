import Foundation
import SkeletonData
import TensorCore
import TestSupport
import Testing

/// The golden values of methods.md §1 and §10 and the transforms' invariants.
@Suite("Transforms", .timed)
struct TransformTests {
  /// A [1, T, 1, 1] sequence holding `values` over time.
  func series(_ values: [Float]) throws -> Tensor {
    try Tensor(shape: [1, values.count, 1, 1], scalars: values)
  }

  @Test func cropResizeGoldenValues() throws {
    let a = try Transforms.centreCropResize(series([0, 1, 2, 3]), length: 4, window: 8, ratio: 1)
    expectClose(try a.reshaped([8]), Tensor([0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]), "4 -> 8")
    let b = try Transforms.centreCropResize(
      series([0, 10, 20, 30, 40]), length: 5, window: 3, ratio: 1)
    expectClose(
      try b.reshaped([3]), Tensor([3.3333333, 20, 36.666667]), rtol: 1e-6, atol: 1e-5, "5 -> 3")
    let c = try Transforms.centreCropResize(series([0, 10, 20]), length: 3, window: 5, ratio: 1)
    expectClose(try c.reshaped([5]), Tensor([0, 4, 10, 16, 20]), rtol: 1e-6, atol: 1e-5, "3 -> 5")
    // §10.2: a centre crop of n = 100 at p = 0.95 keeps frames [2, 98).
    let crop = Transforms.centreCrop(length: 100, ratio: 0.95)
    #expect(crop.start == 2 && crop.start + crop.count == 98)
    // Padding past the valid length is never read.
    let padded = try Transforms.centreCropResize(
      series([0, 1, 2, 3, 0, 0]), length: 4, window: 4, ratio: 1)
    #expect(padded.scalars == [0, 1, 2, 3])
  }

  @Test func randomCropStaysInsideTheValidFrames() throws {
    var generator = RandomGenerator(seed: 1)
    let values = (0..<100).map(Float.init) + [Float](repeating: -1, count: 20)
    for _ in 0..<50 {
      let out = try Transforms.randomCropResize(
        series(values), length: 100, window: 16, ratio: 0.5...1, minimum: 10, generator: &generator)
      let frames = out.scalars
      #expect(frames.allSatisfy { $0 >= 0 && $0 <= 99 })
      let span = (frames.last ?? 0) - (frames.first ?? 0)
      let shortest: Float = 50 * 15 / 16 - 1  // half the clip, resized to 16 frames
      #expect(span >= shortest)
    }
  }

  @Test func rotationGoldenMatrix() throws {
    let r = Transforms.rotationMatrix(0.1, 0.2, 0.3)
    let expected = [
      0.936293, 0.312992, -0.159345, -0.289629, 0.944702, 0.153792, 0.198669, -0.097843, 0.97517,
    ]
    for (a, e) in zip(r, expected) { #expect(abs(a - e) < 5e-6) }
    let point = try Tensor(shape: [3, 1, 1, 1], scalars: [1, 2, 3])
    let rotated = try Transforms.rotate(point, r)
    expectClose(
      try rotated.reshaped([3]), Tensor([1.084242, 2.061151, 2.928494]), rtol: 0, atol: 5e-6, "R·p")
  }

  @Test func uniformSamplingFollowsPyskl() throws {
    var generator = RandomGenerator(seed: 2)
    for total in [7, 90, 100, 179, 180, 300] {
      let indices = try Transforms.uniformSampleIndices(
        total: total, clip: 90, generator: &generator)
      #expect(indices.count == 90)
      #expect(indices.allSatisfy { $0 >= 0 && $0 < total })
      if total < 90 {
        // Loops from a random start.
        for i in 1..<90 { #expect(indices[i] == (indices[i - 1] + 1) % total) }
      } else {
        #expect(zip(indices, indices.dropFirst()).allSatisfy { $0 < $1 }, "\(total) increasing")
        if total >= 180 {
          for (i, index) in indices.enumerated() {
            #expect(index >= i * total / 90 && index < (i + 1) * total / 90)
          }
        } else {
          #expect(indices.last! <= total - 1 && Set(indices).count == 90)
        }
      }
    }
  }

  @Test func motionIsTheFrameDifference() throws {
    let m = try Transforms.motion(series([1, 4, 9, 16]))
    #expect(m.scalars == [3, 5, 7, 0])
  }

  @Test func alignmentTurnsSpineToZAndShouldersToX() throws {
    // Frame 0 of body 1: spine along (1, 1, 0), shoulders perpendicular to it (so the second
    // rotation, about z once the spine is on z, keeps the spine there).
    let layout = JointLayout.kinectV2
    var values = [Float](repeating: 0, count: 3 * 1 * 25 * 1)
    func set(_ joint: Int, _ p: [Float]) { for c in 0..<3 { values[c * 25 + joint] = p[c] } }
    set(0, [0.1, 0.1, 0.3])
    set(1, [1.1, 1.1, 0.3])
    set(4, [0.1, -0.1, 0.5])
    set(8, [-0.1, 0.1, 0.5])
    let aligned = try Transforms.align(
      Tensor(shape: [3, 1, 25, 1], scalars: values), frame: 0, layout: layout)
    func point(_ joint: Int) throws -> [Float] {
      try (0..<3).map { try aligned.element(at: [$0, 0, joint, 0]) }
    }
    let spine = zip(try point(1), try point(0)).map { $0 - $1 }
    #expect(abs(spine[0]) < 1e-5 && abs(spine[1]) < 1e-5 && spine[2] > 0)
    let shoulders = zip(try point(8), try point(4)).map { $0 - $1 }
    #expect(abs(shoulders[1]) < 1e-5 && abs(shoulders[2]) < 1e-5 && shoulders[0] > 0)
    #expect(try point(3) == [0, 0, 0])  // zero joints stay zero
  }

  @Test func bodyPartMaskHidesThreeOfFivePartsPerChunk() throws {
    var generator = RandomGenerator(seed: 3)
    let mask = try Transforms.bodyPartMask(frames: 64, layout: .kinectV2, generator: &generator)
    let values = mask.scalars
    for chunk in 0..<8 {
      let rows = (chunk * 8..<(chunk * 8 + 8)).map { Array(values[($0 * 25)..<($0 * 25 + 25)]) }
      #expect(Set(rows.map { $0.map(Int.init) }).count == 1, "one choice per chunk")
      let hiddenParts = JointLayout.kinectV2.parts.filter { part in
        part.joints.allSatisfy { rows[0][$0] == 1 }
      }
      #expect(hiddenParts.count == 3)
      #expect(rows[0].reduce(0, +) == Float(hiddenParts.reduce(0) { $0 + $1.joints.count }))
    }
    let x = Tensor.ones([3, 64, 25, 2])
    let masked = try Transforms.applyMask(x, mask: mask)
    #expect(try masked[.all, .all, .all, .index(1)].min().item() == 1)  // body 2 untouched
    #expect(try masked.sum().item() == Float(3 * 64 * 25 * 2) - 3 * values.reduce(0, +))
  }

  @Test func shearCorruptionAndOcclusionKeepShapesAndDoWhatTheySay() throws {
    var generator = RandomGenerator(seed: 4)
    let x = try sampleTensor([3, 20, 25, 2], seed: 5)
    #expect(try Transforms.shear(x, generator: &generator).shape == x.shape)
    let corrupted = try Transforms.jointCorruption(x, generator: &generator)
    /// The largest absolute value of `t` (throws on a failed slice).
    func peak(_ t: Tensor) throws -> Float { try t.abs().max().item() }
    let changed = try (0..<25).filter { j in
      try peak(corrupted[.all, .all, .index(j)] - x[.all, .all, .index(j)]) > 0
    }
    #expect(changed.count == 15)
    let occluded = try Transforms.occludeTime(x, length: 20, ratio: 0.5, generator: &generator)
    let zeroFrames = try (0..<20).filter { f in try peak(occluded[.all, .index(f)]) == 0 }
    #expect(zeroFrames.count == 10 && (zeroFrames.last ?? 0) - (zeroFrames.first ?? 0) == 9)
    let parts = try Transforms.occludeParts(x, layout: .kinectV2, count: 2, generator: &generator)
    let hidden = try (0..<25).filter { j in try peak(parts[.all, .all, .index(j)]) == 0 }
    #expect([8, 9, 10, 11].contains(hidden.count))
  }
}

@Suite("Mixing", .timed)
struct MixingTests {
  @Test func everyCaseMixesWithThePartnerAndReportsLam() throws {
    // Sample i is filled with the value i + 1, so each output value names its source.
    let n = 4
    let per = 3 * 64 * 25 * 2
    let batch = try Tensor(
      shape: [n, 3, 64, 25, 2], scalars: (0..<(n * per)).map { Float($0 / per + 1) })
    var kinds: Set<String> = []
    for seed in 0..<40 {
      var g = RandomGenerator(seed: UInt64(seed))
      let mix = try Transforms.mix(batch, layout: .kinectV2, generator: &g)
      kinds.insert(mix.kind)
      #expect((1...(n - 2)).contains(mix.shift))
      let values = mix.x.scalars
      for i in 0..<n {
        let own = Float(i + 1)
        let partner = Float((i + mix.shift) % n + 1)
        let sample = values[(i * per)..<((i + 1) * per)]
        if mix.kind == "mixup" {
          let expected = Float((1 - mix.lam) * Double(own) + mix.lam * Double(partner))
          #expect(sample.allSatisfy { abs($0 - expected) < 1e-5 })
        } else {
          let taken = sample.filter { $0 == partner }.count
          #expect(sample.allSatisfy { $0 == own || $0 == partner })
          // lam = Ct · joints / (16 · 25); the region covers 4·Ct frames × joints × 3 × 2.
          #expect(abs(Double(taken) / Double(per) - mix.lam) < 1e-9)
          #expect(mix.lam > 0 && mix.lam < 1)
        }
      }
    }
    #expect(kinds == ["swap", "paste", "mixup"])
  }
}

@Suite("Centring step", .timed)
struct CentringStepTests {
  @Test func centreAugmentationMovesTheFirstSpineMidToTheOrigin() throws {
    let ds = SkeletonDataset.synthetic(
      try SyntheticSkeletons(seed: 2, subjects: 1, views: 1, repetitions: 1, frames: 16))
    var g = RandomGenerator(seed: 0)
    let sample = try Augmentation.centre.apply(ds.sample(0), layout: .kinectV2, generator: &g)
    for c in 0..<3 { #expect(abs(try sample.data.element(at: [c, 0, 1, 0])) < 1e-6) }
    // Every joint moved by the same translation.
    let original = try ds.sample(0).data
    let shift = try original.element(at: [0, 5, 7, 0]) - sample.data.element(at: [0, 5, 7, 0])
    #expect(abs(shift - (try original.element(at: [0, 0, 1, 0]))) < 1e-6)
  }
}
