import NN
import Optim
import TensorCore
import TestSupport
import Testing

/// A module holding the named tensors of the adamw fixture.
final class Holder: Module {
  init(_ values: [(String, Tensor)]) {
    super.init()
    for (name, value) in values { parameter(name, value) }
  }
}

@Suite("Optimisers and schedules", .timed)
struct OptimizerFixtureTests {
  @Test func adamWTakesPyTorchsTwoStepsExactly() throws {
    let fixture = try Fixture("adamw")
    let names = ["w", "b", "pos"]
    let model = Holder(try names.map { ($0, try fixture.tensor("p0." + $0)) })
    // The fixture's groups: tensors with ≤ 1 dimension take no decay.
    let groups = ParameterGroup.groups(
      model, weightDecay: Float(try fixture.scalar("weight_decay")), exclusion: .oneDimensional)
    #expect(groups.map(\.names) == [["w", "pos"], ["b"]])
    let optimizer = try AdamW(
      groups: groups, learningRate: try fixture.scalar("lr_step1"),
      beta1: try fixture.scalar("beta1"), beta2: try fixture.scalar("beta2"),
      eps: try fixture.scalar("eps"))
    for step in 1...2 {
      if step == 2 { optimizer.learningRate = try fixture.scalar("lr_step2") }
      for (name, parameter) in model.namedParameters() {
        parameter.grad = try fixture.tensor("g\(step).\(name)")
      }
      try optimizer.step()
      let state = Dictionary(
        uniqueKeysWithValues: optimizer.stateTensors().map { ($0.name, $0.tensor) })
      for (name, parameter) in model.namedParameters() {
        expectClose(
          parameter.value, try fixture.tensor("p\(step).\(name)"), rtol: 1e-6, atol: 1e-7,
          "p\(step).\(name)")
        expectClose(
          try #require(state[name + ".exp_avg"]), try fixture.tensor("m\(step).\(name)"),
          rtol: 1e-6,
          atol: 1e-9, "m\(step).\(name)")
        expectClose(
          try #require(state[name + ".exp_avg_sq"]), try fixture.tensor("v\(step).\(name)"),
          rtol: 1e-6, atol: 1e-12, "v\(step).\(name)")
      }
    }
    #expect(optimizer.stepCount == 2)
    optimizer.zeroGrad()
    #expect(model.namedParameters().allSatisfy { $0.parameter.grad == nil })
  }

  /// AdamW updates all parameters in one pass shared between the threads: many small tensors
  /// (one empty, one of a single element, one crossing 2,048-element blocks), two groups, three
  /// steps; the same bits on 1 and 2 threads, and a parameter without a gradient stays.
  @Test func adamWGivesTheSameBitsOnAnyThreadCount() throws {
    let before = Threading.threadCount
    defer { try? Threading.setThreadCount(before) }
    let sizes = [[0], [1], [5000]] + (0..<37).map { [3 + $0 * 41] }
    func run(threads: Int) throws -> [[UInt32]] {
      try Threading.setThreadCount(threads)
      let parameters = try sizes.enumerated().map {
        Parameter(try sampleTensor($0.element, seed: UInt64(100 + $0.offset)))
      }
      let names = parameters.indices.map { "p\($0)" }
      let optimizer = try AdamW(
        groups: [
          ParameterGroup(
            names: Array(names.prefix(20)), parameters: Array(parameters.prefix(20)),
            weightDecay: 0.05),
          ParameterGroup(
            names: Array(names.dropFirst(20)), parameters: Array(parameters.dropFirst(20)),
            weightDecay: 0, learningRateScale: 0.5),
        ], learningRate: 1e-2, beta2: 0.95)
      for step in 0..<3 {
        for (k, parameter) in parameters.enumerated() where k != 7 {
          parameter.grad = try sampleTensor(sizes[k], seed: UInt64(300 + 50 * step + k))
        }
        try optimizer.step()
      }
      #expect(parameters[7].value.scalars == (try sampleTensor(sizes[7], seed: 107)).scalars)
      return parameters.map { $0.value.scalars.map(\.bitPattern) }
        + optimizer.stateTensors().map { $0.tensor.scalars.map(\.bitPattern) }
    }
    let single = try run(threads: 1)
    let shared = try run(threads: 2)
    #expect(single == shared)
  }

  @Test func sgdWithMomentumNesterovAndWeightDecay() throws {
    for nesterov in [false, true] {
      let model = Holder([("w", Tensor([1, -2]))])
      let optimizer = try SGD(
        groups: ParameterGroup.groups(model, weightDecay: 0.1, exclusion: .oneDimensional)
          .map {
            var g = $0; g.weightDecay = 0.1; return g
          },
        learningRate: 0.5, momentum: 0.9, nesterov: nesterov)
      // By hand: d = g + 0.1·p; buf = d, then 0.9·buf + d; step d or d + 0.9·buf.
      var p: [Double] = [1, -2]
      var buffer: [Double] = [0, 0]
      for step in 0..<3 {
        let g: [Double] = [0.5 + Double(step), -1]
        model.namedParameters()[0].parameter.grad = Tensor(g.map(Float.init))
        try optimizer.step()
        for i in 0..<2 {
          let d = g[i] + 0.1 * p[i]
          buffer[i] = step == 0 ? d : 0.9 * buffer[i] + d
          p[i] -= 0.5 * (nesterov ? d + 0.9 * buffer[i] : buffer[i])
        }
        expectClose(
          model.namedParameters()[0].parameter.value, Tensor(p.map(Float.init)), rtol: 1e-6,
          atol: 1e-6, "sgd nesterov=\(nesterov) step \(step)")
      }
    }
  }

  @Test func globalNormClipping() throws {
    let fixture = try Fixture("grad_clip")
    let names = ["a", "b", "c"]
    let parameters = try names.map { name -> Parameter in
      let p = Parameter(try fixture.tensor("grad." + name))
      p.grad = try fixture.tensor("grad." + name)
      return p
    }
    let total = try clipGradientNorm(parameters, maxNorm: Float(try fixture.scalar("max_norm")))
    #expect(abs(total - (try fixture.tensor("total_norm").item())) < 1e-5)
    for (name, parameter) in zip(names, parameters) {
      expectClose(
        try #require(parameter.grad), try fixture.tensor("clipped." + name), rtol: 1e-6, atol: 1e-7,
        name)
    }
    // Below the limit nothing changes.
    let small = Parameter(Tensor([0.1]))
    small.grad = Tensor([0.1])
    try clipGradientNorm([small], maxNorm: 1)
    #expect(small.grad?.scalars == [0.1])
  }

  @Test func emaUpdateAndItsAnnealedDecay() throws {
    let fixture = try Fixture("ema_update")
    let teacher = Holder([("w", try fixture.tensor("teacher"))])
    let student = Holder([("w", try fixture.tensor("student"))])
    try ExponentialMovingAverage.update(
      teacher: teacher, student: student, oneMinusDecay: 1 - (try fixture.scalar("decay")))
    expectClose(
      teacher.namedParameters()[0].parameter.value, try fixture.tensor("teacher_after"), rtol: 1e-6,
      atol: 1e-7, "teacher_after")
    // The teacher starts as an exact, frozen copy.
    let copy = Holder([("w", Tensor.zeros([9, 7]))])
    try ExponentialMovingAverage.copy(from: student, to: copy)
    #expect(
      copy.namedParameters()[0].parameter.value.scalars == (try fixture.tensor("student").scalars))
    #expect(copy.namedParameters()[0].parameter.isFrozen)
    // methods.md §6 goldens: d(0) = 0.9999, d(S/2) = 0.99995, d(S) = 1.
    let schedule = EMADecaySchedule(start: 0.9999, end: 1, annealSteps: 251_200)
    #expect(abs(schedule.decay(updates: 0) - 0.9999) < 1e-15)
    #expect(abs(schedule.decay(updates: 125_600) - 0.99995) < 1e-15)
    #expect(schedule.decay(updates: 251_200) == 1)
  }

  @Test func cosineScheduleAndEMADecayMatchTheFixture() throws {
    let fixture = try Fixture("cosine_schedule")
    let schedule = CosineSchedule(
      base: try fixture.scalar("base_lr"), minimum: try fixture.scalar("min_lr"),
      warmupEpochs: try fixture.scalar("warmup_epochs"), epochs: try fixture.scalar("epochs"))
    let stepsPerEpoch = Int(try fixture.scalar("steps_per_epoch"))
    let steps = try fixture.file.integers("step")
    let lr = try fixture.tensor("lr").scalars
    for (i, step) in steps.enumerated() {
      let value = schedule.learningRate(step: step, stepsPerEpoch: stepsPerEpoch)
      #expect(abs(Float(value) - lr[i]) <= 1e-6 * abs(lr[i]) + 1e-12, "lr at step \(step)")
    }
    let ema = EMADecaySchedule(
      start: try fixture.scalar("ema_start"), end: try fixture.scalar("ema_end"),
      annealSteps: Int(try fixture.scalar("ema_anneal_end_step")))
    let updates = try fixture.file.integers("ema_update_index")
    let decay = try fixture.tensor("ema_decay").scalars
    let oneMinus = try fixture.tensor("one_minus_ema_decay").scalars
    for (i, n) in updates.enumerated() {
      #expect(Float(ema.decay(updates: n)) == decay[i])
      #expect(abs(Float(ema.oneMinusDecay(updates: n)) - oneMinus[i]) <= 1e-6 * oneMinus[i] + 1e-12)
    }
    // methods.md §9.1 goldens (MAMP pretraining: base 1e-3, min 5e-4, warm-up 20, 400 epochs).
    let mamp = CosineSchedule(base: 1e-3, minimum: 5e-4, warmupEpochs: 20, epochs: 400)
    let golden: [(Double, Double)] = [(0, 0), (10, 5e-4), (20, 1e-3), (210, 7.5e-4), (400, 5e-4)]
    for (epoch, expected) in golden {
      #expect(abs(mamp.learningRate(epoch: epoch) - expected) < 1e-15, "lr(\(epoch))")
    }
    let steps351 = MultiStepSchedule(base: 0.02, milestones: [351])
    #expect(steps351.learningRate(epoch: 350) == 0.02)
    #expect(abs(steps351.learningRate(epoch: 351) - 0.002) < 1e-15)
  }

  @Test func layerDecayScalesAndWeightDecayGroups() throws {
    let decay = LayerDecay(factor: 0.8, depth: 8)
    let names = ["pos_embed"] + (0..<8).map { "blocks.\($0).mlp.fc1.weight" } + ["head.fc2.weight"]
    let expected: [Float] = [
      0.134218, 0.167772, 0.209715, 0.262144, 0.32768, 0.4096, 0.512, 0.64, 0.8, 1.0,
    ]
    for (name, scale) in zip(names, expected) {
      #expect(abs(decay.scale(of: name) - scale) < 1e-6, "\(name)")
    }
    #expect(decay.layer(of: "norm.weight") == 9)
    #expect(LayerDecay(factor: 0.8, depth: 8, flavor: .skeleton2vec).layer(of: "norm.weight") == 8)
    #expect(decay.layer(of: "joints_embed.proj.weight") == 0)
    // MAMP decays positional embeddings and the mask token; Skeleton2vec only the mask token.
    #expect(!DecayExclusion.mamp.excludes("pos_embed", shape: [1, 1, 25, 8]))
    #expect(DecayExclusion.skeleton2vec.excludes("decoder_temp_embed", shape: [1, 8, 1, 8]))
    #expect(!DecayExclusion.skeleton2vec.excludes("mask_token", shape: [1, 1, 8]))
    #expect(DecayExclusion.mamp.excludes("blocks.0.gamma_1", shape: [8]))
    let encoder = try Encoder(dimension: 8, depth: 2, heads: 2, segment: 2, frames: 4, joints: 3)
    let groups = ParameterGroup.groups(
      encoder, weightDecay: 0.05, exclusion: .mamp, layerDecay: LayerDecay(factor: 0.5, depth: 2))
    let total = groups.reduce(0) { $0 + $1.parameters.count }
    #expect(total == encoder.namedParameters().count)
    let qkv = try #require(groups.first { $0.names.contains("blocks.0.attn.qkv.weight") })
    #expect(qkv.weightDecay == 0.05 && qkv.learningRateScale == 0.25)
    encoder.blocks[0].setFrozen(true)
    let trainable = ParameterGroup.groups(encoder, weightDecay: 0.05)
    #expect(!trainable.flatMap(\.names).contains { $0.hasPrefix("blocks.0.") })
  }
}
