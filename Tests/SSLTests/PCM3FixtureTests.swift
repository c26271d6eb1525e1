import Foundation
import NN
import SSL
import SkeletonData
import TensorCore
import TestSupport
import Testing

/// The PCM3 encoder, mixing and one whole loss evaluation against the fixtures made by running
/// the official PCM3 code (Tests/Fixtures/README.md, "PCM3 cases").
@Suite("PCM3 fixtures", .timed)
struct PCM3FixtureTests {
  /// The state-dict entries of a fixture (everything that is not an output, input or grad).
  func state(_ fixture: Fixture, prefix: String = "") throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for name in fixture.file.names
    where !name.hasPrefix("grad.") && !name.hasPrefix("after.") && name.hasPrefix(prefix) {
      out[String(name.dropFirst(prefix.count))] = try fixture.tensor(name)
    }
    return out
  }

  /// The largest |value| over every `grad.*` tensor of a case (the case-wide scale).
  func gradientScale(_ fixture: Fixture) throws -> Float {
    try fixture.file.names.filter { $0.hasPrefix("grad.") }.map { name in
      try fixture.tensor(name).scalars.reduce(Float(0)) { max($0, abs($1)) }
    }.max() ?? 1
  }

  @Test func stepwiseGRUEncoderOutputsGradientsAndStatistics() throws {
    let fixture = try Fixture("gru_stepwise")
    let encoder = try GRUEncoder(hidden: 8, layers: 2, joints: 2, bodies: 2, frames: 6)
    var weights = try state(fixture)
    for input in ["x", "out", "feature", "x_norm", "gru_states", "grad_out"] {
      weights[input] = nil
    }
    try encoder.load(weights)
    let x = try fixture.tensor("x").requiringGrad()
    let out = try encoder(x)
    let expected = try fixture.tensor("out")
    expectClose(out, expected, rtol: 1e-6, atol: 1e-7, "out")
    expectClose(
      try out[.all, .index(5)], try fixture.tensor("feature"), rtol: 1e-6, atol: 1e-7, "feature")
    // The states of every layer and direction: gru_states[t, 2l + d] (layer 0 through a
    // one-layer encoder with the same weights).
    let states = try fixture.tensor("gru_states")  // [6, 4, 3, 8]
    expectClose(
      try out[.all, .all, .range(0, 8, 1)].permuted([1, 0, 2]).contiguous(),
      try states[.all, .index(2)], rtol: 1e-6, atol: 1e-7, "layer 1 forward states")
    expectClose(
      try out[.all, .all, .range(8, 16, 1)].permuted([1, 0, 2]).contiguous(),
      try states[.all, .index(3)], rtol: 1e-6, atol: 1e-7, "layer 1 reverse states")
    try (out * fixture.tensor("grad_out")).sum().backward()
    let scale = try gradientScale(fixture)
    expectClose(
      try #require(x.grad), try fixture.tensor("grad.x"), rtol: 0, atol: 1e-6 * scale, "grad.x")
    for (name, parameter) in encoder.namedParameters() {
      expectClose(
        try #require(parameter.grad), try fixture.tensor("grad." + name), rtol: 0,
        atol: 1e-6 * scale, "grad." + name)
    }
    for name in ["running_mean", "running_var", "num_batches_tracked"] {
      let buffer = try #require(encoder.namedBuffers().first { $0.name == "input_norm." + name })
      expectClose(
        try buffer.buffer.value.reshaped([-1]),
        try fixture.tensor("after.input_norm." + name).reshaped([-1]), rtol: 1e-6, atol: 1e-7,
        "after.input_norm." + name)
    }
  }

  @Test func mixingInEachOfItsThreeCases() throws {
    let fixture = try Fixture("pcm3_mix")
    let x = try fixture.tensor("x")
    for kind in ["swap", "paste", "mixup"] {
      let draw = Transforms.MixDraw(
        shift: try fixture.file.integers(kind + ".n")[0],
        parts: try fixture.file.integers(kind + ".parts"),
        segments: try fixture.file.integers(kind + ".ct")[0],
        start: try fixture.file.integers(kind + ".tem_idx")[0],
        p: Double(try fixture.tensor(kind + ".p").item()),
        lamb: kind == "mixup" ? Double(try fixture.tensor(kind + ".lamb").item()) : 0)
      let mix = try Transforms.mix(x, layout: .kinectV2, draw: draw)
      #expect(mix.kind == kind)
      let index = try fixture.file.integers(kind + ".index")
      #expect((0..<4).map { ($0 + mix.shift) % 4 } == index)
      // Selection is exact; the mixup blend within one float32 rounding.
      expectClose(
        mix.x, try fixture.tensor(kind + ".out"), rtol: kind == "mixup" ? 2.4e-7 : 0, atol: 0,
        kind + ".out")
      expectClose(mix.region, try fixture.tensor(kind + ".region"), rtol: 0, atol: 0, kind)
      #expect(abs(mix.lam - Double(try fixture.tensor(kind + ".lam").item())) < 1e-7)
    }
  }

  /// The tiny PCM3 trainer of the fixture with its state loaded.
  func tinyTrainer(_ fixture: Fixture) throws -> PCM3Trainer {
    let encoder = try GRUEncoder(hidden: 8, layers: 2, frames: 8)
    let trainer = try PCM3Trainer(
      encoder: encoder, layout: .kinectV2, dimension: 8, queue: 16, momentum: 0.999,
      temperature: 0.07, prompt: 8, prediction: 8, mixSegments: 1...1)
    var weights: [String: Tensor] = [:]
    for (name, _) in trainer.model.stateDict() { weights[name] = try fixture.tensor(name) }
    try trainer.model.load(weights)
    return trainer
  }

  func draws(_ fixture: Fixture) throws -> PCM3Draws {
    let mask = try fixture.tensor("mask")  // [N, T, M, V, C], 1 = visible
    let flat = try mask.permuted([0, 1, 3, 4, 2]).contiguous().reshaped([4, 8, 150])
    return PCM3Draws(
      offsets: try fixture.file.integers("st_idx"),
      mix: Transforms.MixDraw(
        shift: try fixture.file.integers("mix_n")[0], parts: try fixture.file.integers("mix_parts"),
        segments: try fixture.file.integers("mix_ct")[0],
        start: try fixture.file.integers("mix_tem_idx")[0],
        p: Double(try fixture.tensor("mix_p").item()), lamb: 0),
      mask: flat)
  }

  @Test func oneWholeLossEvaluationOfTheOfficialCode() throws {
    let fixture = try Fixture("pcm3_step_tiny")
    let trainer = try tinyTrainer(fixture)
    let out = try trainer.step(
      fixture.tensor("v1"), fixture.tensor("v2"), fixture.tensor("v3"), draws: draws(fixture))
    func close(_ actual: Tensor?, _ name: String, rtol: Float = 2e-6) throws {
      let expected = try fixture.tensor(name)
      guard let actual else {
        fail("\(name): not computed")
        return
      }
      expectClose(actual, expected, rtol: rtol, atol: 1e-7, name)
    }
    try close(out.loss, "loss")
    try close(out.terms["ce.base"], "loss_base")
    try close(out.terms["ce.mix"], "loss_mix")
    try close(out.terms["ce.mask"], "loss_mp_mask")
    try close(out.terms["ce.recons"], "loss_mp_recons")
    try close(out.terms["loss_sim"], "loss_sim")
    try close(out.terms["loss_rec"], "loss_rec")
    for kl in ["base", "mix", "mask", "recons"] { try close(out.terms["kl." + kl], "kl." + kl) }
    for name in [
      "logits", "logits_mix", "logits_mask", "logits_recons", "q", "k", "kc", "mask_q",
      "recons_q", "pc", "feat.q", "feat.mask_q", "feat.recons_q", "feat.pc", "seq_feat",
    ] {
      try close(out.tensors[name], name)
    }
    let layout = { (t: Tensor?) in try t.map { try unflattenFrames($0, coordinates: 3, bodies: 2) }
    }
    try close(layout(out.tensors["recons_data"]), "recons_data")
    try close(layout(out.tensors["pred_view"]), "pred_view")
    try close(out.tensors["mix_view"], "mix_view")
    // Side effects of the forward: the key branch, the running statistics, the queue.
    for (name, tensor) in trainer.model.stateDict()
    where fixture.file.names.contains("after." + name) {
      expectClose(
        try tensor.reshaped([-1]), try fixture.tensor("after." + name).reshaped([-1]), rtol: 1e-6,
        atol: 1e-7, "after." + name)
    }
    // Every query-side gradient, against the largest gradient of the case (six of them are 0
    // analytically and float noise here).
    try out.loss.backward()
    let scale = try gradientScale(fixture)
    var compared = 0
    for (name, parameter) in trainer.model.namedParameters() where !name.hasPrefix("encoder_k.") {
      expectClose(
        try #require(parameter.grad, "grad.\(name)"), try fixture.tensor("grad." + name),
        rtol: 0, atol: 1e-6 * scale, "grad." + name)
      compared += 1
    }
    #expect(compared == 44)
  }
}

/// PCM3's switches, PCM3++'s clip contrast and post-distillation, and its checks.
@Suite("PCM3 trainer", .timed)
struct PCM3TrainerTests {
  let fixtures = PCM3FixtureTests()

  func total(_ out: PCM3Trainer.Outputs, _ names: [String], rec: Float = 40) throws -> Float {
    var sum: Float = 0
    for name in names { sum += try #require(out.terms[name], "\(name)").item() }
    if let r = out.terms["loss_rec"] { sum += try r.item() * rec }
    return sum
  }

  /// The momentum update, now in place, gives the bits of the official expression
  /// `k·m + q·(1 − m)` for every key parameter, with the query branch unchanged by the step.
  @Test func theKeyBranchTakesTheOfficialMomentumExpression() throws {
    let fixture = try Fixture("pcm3_step_tiny")
    let trainer = try fixtures.tinyTrainer(fixture)
    let parameters = { (prefix: String) in
      trainer.model.namedParameters().filter { $0.name.hasPrefix(prefix) }.map {
        (String($0.name.dropFirst(prefix.count)), $0.parameter.value.detached().contiguous())
      }
    }
    let (query, key) = (parameters("encoder_q."), parameters("encoder_k."))
    #expect(query.map(\.0) == key.map(\.0) && !key.isEmpty)
    let (keep, take) = (Float(trainer.momentum), Float(1 - trainer.momentum))
    let expected = try zip(query, key).map { try $1.1 * keep + $0.1 * take }
    _ = try trainer.step(
      fixture.tensor("v1"), fixture.tensor("v2"), fixture.tensor("v3"),
      draws: fixtures.draws(fixture))
    for ((name, after), wanted) in zip(parameters("encoder_k."), expected) {
      #expect(after.scalars == wanted.scalars, "encoder_k.\(name)")
    }
    for ((name, after), before) in zip(parameters("encoder_q."), query) {
      #expect(after.scalars == before.1.scalars, "encoder_q.\(name)")
    }
  }

  @Test func postDistillationTrainsTheDistillationTermsAlone() throws {
    let fixture = try Fixture("pcm3_step_tiny")
    let views = try ["v1", "v2", "v3"].map { try fixture.tensor($0) }
    let stage = try fixtures.tinyTrainer(fixture).distillation()
    #expect(stage.stage == "distill")
    let out = try stage.step(views[0], views[1], views[2], draws: fixtures.draws(fixture))
    // The forward is the reference's; only the total changes: Σ KL, no InfoNCE, no L_rec.
    expectClose(out.loss, try fixture.tensor("loss_sim"), rtol: 2e-6, atol: 1e-7, "loss")
    try out.loss.backward()
    // No reconstruction loss: the decoder learns only through the predicted view's KL term.
    let decoder = try #require(
      stage.model.namedParameters().first { $0.name == "recons_decoder.reconstruction.weight" })
    #expect(decoder.parameter.grad != nil)
  }

  /// The fixture's model with PCM3++'s clip contrast.
  func clipTrainer(_ fixture: Fixture) throws -> PCM3Trainer {
    let encoder = try GRUEncoder(hidden: 8, layers: 2, frames: 8)
    let trainer = try PCM3Trainer(
      encoder: encoder, layout: .kinectV2, dimension: 8, queue: 16, prompt: 8, prediction: 8,
      clip: 0.5, mixSegments: 1...1)
    var weights: [String: Tensor] = [:]
    for (name, _) in trainer.model.stateDict() { weights[name] = try fixture.tensor(name) }
    try trainer.model.load(weights)
    return trainer
  }

  @Test func theClipContrastAddsOnePositivePair() throws {
    let fixture = try Fixture("pcm3_step_tiny")
    let views = try ["v1", "v2", "v3"].map { try fixture.tensor($0) }
    let trainer = try clipTrainer(fixture)
    var draws = try fixtures.draws(fixture)
    draws.clips = [(0, 4), (2, 4), (4, 2), (1, 3)]
    let out = try trainer.step(views[0], views[1], views[2], draws: draws)
    #expect(trainer.name == "pcm3pp")
    let expected = try total(
      out, ["ce.base", "ce.mix", "ce.mask", "ce.recons", "loss_sim", "ce.clip", "kl.clip"])
    #expect(abs(try out.loss.item() - expected) <= 1e-5 * abs(expected))
    // The other terms are PCM3's, unchanged by the extra pair.
    expectClose(
      try #require(out.terms["ce.base"]), try fixture.tensor("loss_base"), rtol: 2e-6, atol: 1e-7)
    // A clip sees only its frames: changing every frame outside the clips changes nothing of
    // the clip query (the same weights, fresh statistics).
    var changed = views[0].scalars
    for (i, clip) in draws.clips.enumerated() {
      for c in 0..<3 {
        for f in 0..<8 where !(clip.start..<(clip.start + clip.length)).contains(f) {
          for k in 0..<50 { changed[((i * 3 + c) * 8 + f) * 50 + k] += 1 }
        }
      }
    }
    let other = try clipTrainer(fixture).step(
      Tensor(shape: views[0].shape, scalars: changed), views[1], views[2], draws: draws)
    let clipQuery = try #require(out.tensors["clip_q"])
    expectClose(try #require(other.tensors["clip_q"]), clipQuery, rtol: 0, atol: 0, "clip_q")
    #expect(other.tensors["q"]?.scalars != out.tensors["q"]?.scalars)
  }

  @Test func everyTermSwitchesOff() throws {
    let views = try (0..<3).map { try sampleTensor([4, 3, 8, 25, 2], seed: UInt64($0 + 1)) }
    let encoder = try Random.withSeed(2) { try GRUEncoder(hidden: 8, layers: 1, frames: 8) }
    let trainer = try Random.withSeed(3) {
      try PCM3Trainer(
        encoder: encoder, layout: .kinectV2, dimension: 8, queue: 16, prompt: 8, prediction: 8,
        prompts: false, mixing: false, masked: false, distill: 0, mixSegments: 1...1)
    }
    var g = RandomGenerator(seed: 4)
    let out = try trainer.step(
      views[0], views[1], views[2], draws: trainer.draw(batch: 4, frames: 8, generator: &g))
    #expect(Set(out.terms.keys) == ["ce.base"])
    try out.loss.backward()
    for (name, parameter) in trainer.model.namedParameters() {
      let trained = name.hasPrefix("encoder_q.")
      #expect((parameter.grad != nil) == trained, "\(name)")
    }
    // The queue took the batch's keys at the pointer.
    #expect(Int(try trainer.model.queuePointer.value.item()) == 4)
  }

  @Test func aTransformerBackboneTrainsEveryQuerySideTensor() throws {
    let views = try (0..<3).map { try sampleTensor([4, 3, 16, 25, 2], seed: UInt64($0 + 5)) }
    let encoder = try Random.withSeed(6) {
      try Encoder(dimension: 16, depth: 1, heads: 2, segment: 4, frames: 16, joints: 25)
    }
    let trainer = try Random.withSeed(7) {
      try PCM3Trainer(
        encoder: encoder, layout: .kinectV2, dimension: 8, queue: 16, prompt: 8, prediction: 8,
        clip: 0.5)
    }
    var g = RandomGenerator(seed: 8)
    let out = try trainer.step(
      views[0], views[1], views[2], draws: trainer.draw(batch: 4, frames: 16, generator: &g))
    #expect(try out.loss.item().isFinite)
    try out.loss.backward()
    for (name, parameter) in trainer.model.namedParameters() where !name.hasPrefix("encoder_k.") {
      let grad = try #require(parameter.grad, "\(name)")
      let finite = grad.scalars.allSatisfy { $0.isFinite }
      #expect(finite, "\(name)")
    }
    // The key branch is frozen and moved towards the query branch by the momentum update.
    #expect(trainer.model.key.namedParameters().allSatisfy { $0.parameter.isFrozen })
  }

  @Test func itsChecksNameWhatToChange() throws {
    let encoder = try GRUEncoder(hidden: 8, layers: 1, frames: 16)
    func message(_ body: () throws -> Void) -> String {
      do {
        try body()
        return ""
      } catch {
        return "\(error)"
      }
    }
    #expect(
      message {
        _ = try PCM3Trainer(encoder: encoder, layout: .kinectV2, queue: 16, prompt: 16)
      }.contains("prompt (16)"))
    #expect(
      message { _ = try PCM3Trainer(encoder: encoder, layout: .msrAction3D) }.contains(
        "25 joints"))
    #expect(
      message {
        _ = try PCM3Trainer(
          encoder: try GRUEncoder(hidden: 8, layers: 1, frames: 8), layout: .kinectV2,
          mixSegments: 3...5)
      }.contains("mixing needs 3...5 segments"))
    let trainer = try PCM3Trainer(encoder: encoder, layout: .kinectV2, queue: 24, prompt: 8)
    let data = SkeletonDataset.synthetic(
      try SyntheticSkeletons(seed: 1, subjects: 1, views: 1, repetitions: 1, frames: 16))
    #expect(message { try trainer.validate(data, batch: 16) }.contains("divide the queue (24"))
    #expect(message { try trainer.validate(data, batch: 8) } == "")
  }
}
