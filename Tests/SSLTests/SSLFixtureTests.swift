import Foundation
import NN
import SSL
import TensorCore
import TestSupport
import Testing

/// Masking, targets and the Skeleton2vec loss against the PyTorch fixtures, and the §10
/// invariants of the maskings.
@Suite("SSL fixtures and invariants", .timed)
struct SSLFixtureTests {
  func rows(_ t: Tensor) -> [[Double]] {
    let (b, l) = (t.shape[0], t.shape[1])
    let v = t.scalars
    return (0..<b).map { i in (0..<l).map { Double(v[i * l + $0]) } }
  }

  @Test func keepCountsFollowTheDoublePrecisionRule() {
    #expect(Masking.keepCount(tokens: 750, ratio: 0.9) == 74)
    #expect(Masking.keepCount(tokens: 200, ratio: 0.9) == 19)
    #expect(Masking.keepCount(tokens: 100, ratio: 0.9) == 9)
    #expect(Masking.keepCount(tokens: 40, ratio: 0.9) == 3)
    #expect(Masking.keepCount(tokens: 25, ratio: 0.9) == 2)
    #expect(Masking.keepCount(tokens: 750, ratio: 0.75) == 187)
  }

  /// The rows are sorted on every thread: the same masks at 1 and 2 threads, each the stable
  /// argsort of its row (ties, here every third score, in token order).
  @Test func masksFromScoresAreTheStableArgsortOnAnyThreadCount() throws {
    let before = Threading.threadCount
    defer { try? Threading.setThreadCount(before) }
    var generator = RandomGenerator(seed: 90)
    let scores = (0..<24).map { _ in
      (0..<200).map { token in token % 3 == 0 ? 0.5 : generator.nextDouble() }
    }
    var keep = [Float]()
    var restore = [Float]()
    var hidden = [Float]()
    for row in scores {
      let order = row.indices.sorted { row[$0] != row[$1] ? row[$0] < row[$1] : $0 < $1 }
      keep += order.prefix(19).map(Float.init)
      var ranks = [Float](repeating: 0, count: 200)
      var mask = [Float](repeating: 1, count: 200)
      for (rank, token) in order.enumerated() {
        ranks[token] = Float(rank)
        if rank < 19 { mask[token] = 0 }
      }
      restore += ranks
      hidden += mask
    }
    for threads in [1, 2] {
      try Threading.setThreadCount(threads)
      let mask = try Masking.fromScores(scores, keep: 19)
      #expect(mask.keep.scalars == keep, "\(threads) threads")
      #expect(mask.restore.scalars == restore, "\(threads) threads")
      #expect(mask.mask.scalars == hidden, "\(threads) threads")
    }
    #expect(throws: TensorError.self) { try Masking.fromScores([[0.1, 0.2], [0.3]], keep: 1) }
    let none = try Masking.fromScores([[0.2, 0.1], [0.3, 0.4]], keep: 0)
    #expect(none.keep.shape == [2, 0])
    #expect(none.restore.scalars == [1, 0, 0, 1])
    #expect(none.mask.scalars == [1, 1, 1, 1])
  }

  @Test func randomMaskingFromTheFixturesNoise() throws {
    let fixture = try Fixture("random_masking")
    let mask = try Masking.fromScores(rows(fixture.tensor("noise")), keep: 3)
    #expect(mask.keep.scalars == (try fixture.tensor("ids_keep").scalars))
    #expect(mask.restore.scalars == (try fixture.tensor("ids_restore").scalars))
    #expect(mask.mask.scalars == (try fixture.tensor("mask").scalars))
    let x = try fixture.tensor("x")
    let kept = try Tokens.select(x, mask.keep)
    expectClose(kept, try fixture.tensor("kept"), rtol: 0, atol: 0, "kept")
    let filler = try fixture.tensor("mask_token").expanded(to: [3, 37, 4])
    let filled = try Tokens.select(Tensor.concat([kept, filler], axis: 1), mask.restore)
    expectClose(filled, try fixture.tensor("filled"), rtol: 0, atol: 0, "filled")
  }

  @Test func mampTargetAndLoss() throws {
    let fixture = try Fixture("mamp_loss")
    let x = try fixture.tensor("x")
    expectClose(
      try MotionTarget.target(x, segment: 4, normalize: false), try fixture.tensor("target_raw"),
      rtol: 1e-6, atol: 1e-6, "target_raw")
    let target = try MotionTarget.target(x, segment: 4)
    expectClose(target, try fixture.tensor("target"), rtol: 1e-5, atol: 1e-5, "target")
    let prediction = try fixture.tensor("pred").requiringGrad()
    let loss = try MotionTarget.maskedLoss(prediction, target, mask: fixture.tensor("mask"))
    expectClose(loss, try fixture.tensor("loss"), rtol: 1e-5, atol: 1e-6, "loss")
    try loss.backward()
    expectClose(
      try #require(prediction.grad), try fixture.tensor("grad.pred"), rtol: 1e-4, atol: 1e-7,
      "grad.pred")
    // §5 golden: values 0..11 normalise with mean 5.5 and unbiased variance 13.
    let ramp = try Tensor(shape: [1, 4, 1, 3], scalars: (0..<12).map(Float.init))
    let one = try MotionTarget.target(ramp, segment: 4, motion: false)
    #expect(abs(try one.element(at: [0, 0, 0]) - -1.525425) < 1e-5)
  }

  @Test func skeleton2vecTargetsBothNormalisations() throws {
    let fixture = try Fixture("s2v_targets")
    let hidden = try (0..<3).map { try fixture.tensor("hidden.\($0)") }
    expectClose(
      try ContextualTarget.build(hidden: hidden, topK: 2),
      try fixture.tensor("target_instance_norm"),
      rtol: 1e-5, atol: 1e-5, "instance norm")
    expectClose(
      try ContextualTarget.build(hidden: hidden, topK: 2, perLayer: .layerNorm),
      try fixture.tensor("target_layer_norm"), rtol: 1e-5, atol: 1e-5, "layer norm")
    expectClose(
      try ContextualTarget.build(hidden: hidden, topK: 2, normalizeTargets: false),
      try fixture.tensor("target_instance_norm_unnormalized"), rtol: 1e-5, atol: 1e-5,
      "unnormalised")
    // §10.8: after the final layer norm each token has mean 0 and variance 1 over channels.
    let target = try ContextualTarget.build(hidden: hidden, topK: 3)
    expectClose(
      try target.mean(axes: [2]), Tensor.zeros([2, 20]), rtol: 0, atol: 1e-5, "token means")
    expectClose(
      try target.variance(axes: [2]), Tensor.ones([2, 20]), rtol: 0, atol: 1e-3, "token variances")
  }

  @Test func tubeMaskKeepsTheSameJointsInEveryTubeSegment() throws {
    var g = RandomGenerator(seed: 1)
    let x = try sampleTensor([2, 90, 25, 3], seed: 2)
    let mask = try Masking.tube(x, segment: 3, ratio: 0.9, length: 5, motion: 0.1, generator: &g)
    #expect(mask.visibleCount == 60)  // 2 joints per segment, 30 segments (§10.5)
    let keep = mask.keep.scalars.map { Int($0) }
    for s in 0..<2 {
      for tube in 0..<6 {
        let joints = (0..<5).map { p in
          Set(
            keep[(s * 60 + (tube * 5 + p) * 2)..<(s * 60 + (tube * 5 + p) * 2 + 2)].map { $0 % 25 })
        }
        #expect(Set(joints).count == 1, "tube \(tube) of sequence \(s)")
      }
    }
    let hidden = try mask.mask.sum().item()
    #expect(hidden == Float(2 * (750 - 60)))
    #expect(throws: TensorError.self) {
      try Masking.tube(x, segment: 3, ratio: 0.9, length: 7, motion: 0, generator: &g)
    }
  }

  @Test func motionAwareMaskingHidesMovingTokensMoreOften() throws {
    // All motion equal: every token is hidden about equally often (random masking).
    var g = RandomGenerator(seed: 3)
    let still = Tensor.zeros([1, 32, 25, 3])
    let one = try Masking.motionAware(
      still, segment: 4, ratio: 0.9, temperature: 0.8, generator: &g)
    #expect(one.visibleCount == 19)
    // One token moving much more than the others is hidden in nearly every draw (§10.6).
    var values = [Float](repeating: 0, count: 32 * 25 * 3)
    // Joint 7 of segment 3 (frames 12..<16) jumps away; everything else stays still. (A
    // motion with a period dividing 4 frames would be invisible: motion is measured between
    // segments.)
    for t in 12..<16 { for c in 0..<3 { values[(t * 25 + 7) * 3 + c] = 5 } }
    let moving = try Tensor(shape: [1, 32, 25, 3], scalars: values)
    var hidden = 0
    for _ in 0..<200 {
      let m = try Masking.motionAware(
        moving, segment: 4, ratio: 0.9, temperature: 0.8, generator: &g)
      if try m.mask.element(at: [0, 3 * 25 + 7]) == 1 { hidden += 1 }
    }
    #expect(hidden >= 195, "hidden in \(hidden) of 200 draws")
  }

  @Test func skeleton2vecStepReproducesTargetsMaskLossAndGradients() throws {
    let fixture = try Fixture("s2v_step_tiny")
    func model() throws -> (Encoder, Decoder, Module) {
      let encoder = try Encoder(
        flavor: .skeleton2vec, dimension: 32, depth: 2, heads: 4, frames: 16, segment: 4)
      let decoder = try Decoder(
        encoderDimension: 32, dimension: 32, depth: 1, heads: 4, segments: 4, joints: 25,
        head: .features(outputs: 32), eps: 1e-6, layerScale: 1e-4, flavor: .skeleton2vec)
      let whole = Module()
      whole.child("", encoder)
      whole.child("", decoder)
      return (encoder, decoder, whole)
    }
    var weights: [String: Tensor] = [:]
    for name in fixture.file.names where !name.hasPrefix("grad.") {
      weights[name] = try fixture.tensor(name)
    }
    let (student, decoder, whole) = try model()
    try whole.load(Skeleton2vecNames.ourState(weights, prefix: "auto_encoder."))
    let (teacher, _, teacherWhole) = try model()
    try teacherWhole.load(Skeleton2vecNames.ourState(weights, prefix: "ema.model."))
    let x = try fixture.tensor("x")
    // Teacher on every token, no gradients: top-2 instance-normalised targets.
    let target = try Autograd.noGrad {
      try ContextualTarget.build(hidden: teacher.forwardWithHidden(x).hidden, topK: 2)
    }
    expectClose(target, try fixture.tensor("target"), rtol: 1e-5, atol: 1e-5, "target")
    // The mask from the fixture's noise; the student on the visible tokens, then the decoder.
    let mask = try Masking.fromScores(rows(fixture.tensor("noise")), keep: 9)
    #expect(mask.mask.scalars == (try fixture.tensor("mask").scalars))
    let prediction = try decoder(
      student.forwardWithHidden(x, keep: mask.keep).tokens, restore: mask.restore)
    // Skeleton2vec's loss: a plain mean over hidden tokens × channels = masked per-token mean.
    let loss = try MotionTarget.maskedLoss(prediction, target, mask: mask.mask)
    expectClose(loss, try fixture.tensor("loss"), rtol: 1e-5, atol: 1e-7, "loss")
    try loss.backward()
    let expected = try Skeleton2vecNames.ourState(
      Dictionary(
        uniqueKeysWithValues: fixture.file.names.filter { $0.hasPrefix("grad.auto_encoder.") }
          .map { ($0, try fixture.tensor($0)) }), prefix: "grad.auto_encoder.")
    for (name, parameter) in whole.namedParameters() {
      let e = try #require(expected[name], "\(name)")
      let scale = maxAbsDifference(e, Tensor.zeros(e.shape))
      expectClose(
        try #require(parameter.grad), e, rtol: 0, atol: 1e-5 * scale + 1e-8, "grad.\(name)")
    }
  }
}
