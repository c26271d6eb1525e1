import NN
import TensorCore
import TestSupport
import Testing

/// Every layer's gradients for its input and each parameter against finite differences, and
/// the train/eval behaviour of the stochastic and batch-statistics layers.
@Suite("Layer gradients and modes", .timed)
struct LayerGradientTests {
  @Test func linearLayerNormAttentionAndMLP() throws {
    let linear = Linear(5, 3)
    try randomize(linear, seed: 1)
    try checkModuleGradients(linear, inputs: [sampleTensor([2, 4, 5], seed: 2)], "linear") {
      try linear($0[0])
    }
    let norm = LayerNorm(6, eps: 1e-6)
    try randomize(norm, seed: 3)
    try checkModuleGradients(norm, inputs: [sampleTensor([3, 6], seed: 4)], "layer_norm") {
      try norm($0[0])
    }
    let attention = try Attention(8, heads: 2)
    try randomize(attention, seed: 5)
    try checkModuleGradients(attention, inputs: [sampleTensor([2, 3, 8], seed: 6)], "attention") {
      try attention($0[0])
    }
    let mlp = MLP(4, hidden: 8)
    try randomize(mlp, seed: 7)
    try checkModuleGradients(mlp, inputs: [sampleTensor([3, 4], seed: 8)], "mlp") { try mlp($0[0]) }
  }

  @Test func blocksWithAndWithoutLayerScale() throws {
    for layerScale in [nil, Float(0.5)] {
      let block = try Block(8, heads: 2, layerScale: layerScale)
      try randomize(block, seed: 9)
      try checkModuleGradients(block, inputs: [sampleTensor([2, 3, 8], seed: 10)], "block") {
        try block($0[0])
      }
    }
  }

  @Test func jointEmbeddingAndTinyEncoderOnKeptTokens() throws {
    let embedding = JointEmbedding(dimension: 4, segment: 2)
    try randomize(embedding, seed: 11)
    try checkModuleGradients(embedding, inputs: [sampleTensor([1, 4, 3, 3], seed: 12)], "embed") {
      try embedding($0[0])
    }
    let encoder = try Encoder(dimension: 8, depth: 1, heads: 2, segment: 2, frames: 4, joints: 3)
    try randomize(encoder, seed: 13)
    let keep = try Tensor(shape: [2, 3], scalars: [5, 0, 2, 1, 4, 3])
    try checkModuleGradients(encoder, inputs: [sampleTensor([2, 4, 3, 3], seed: 14)], "encoder") {
      try encoder.forwardWithHidden($0[0], keep: keep).tokens
    }
  }

  /// The passes that keep fewer block outputs give the same tokens and the same last hidden
  /// states as the pass that keeps them all.
  @Test func passesKeepingFewerBlockOutputsAgree() throws {
    let encoder = try Encoder(dimension: 8, depth: 3, heads: 2, segment: 2, frames: 4, joints: 3)
    try randomize(encoder, seed: 21)
    let x = try sampleTensor([2, 4, 3, 3], seed: 22)
    let keep = try Tensor(shape: [2, 3], scalars: [5, 0, 2, 1, 4, 3])
    let full = try encoder.forwardWithHidden(x, keep: keep)
    #expect(full.hidden.count == 3)
    #expect(try encoder.tokens(x, keep: keep).scalars == full.tokens.scalars)
    #expect(try encoder(x).scalars == encoder.forwardWithHidden(x).tokens.scalars)
    for last in 1...3 {
      let tail = try encoder.hiddenStates(x, keep: keep, last: last)
      #expect(tail.map(\.scalars) == full.hidden.suffix(last).map(\.scalars))
    }
    #expect(try encoder.hiddenStates(x, last: 5).count == 3)
  }

  @Test func batchNormTrainsOnBatchStatisticsAndEvaluatesOnRunningOnes() throws {
    let bn = BatchNorm1d(3, eps: 1e-5)
    try randomize(bn, seed: 15)
    let x = try sampleTensor([4, 3, 5], seed: 16, scale: 2, shift: 1)
    try checkModuleGradients(bn, inputs: [x], "batch_norm [N, C, L]") { try bn($0[0]) }
    let fresh = BatchNorm1d(3)
    let y = try fresh(x)
    // Normalised per channel over N and L: mean 0, biased variance 1 (up to eps).
    let mean = try y.mean(axes: [0, 2])
    let variance = try y.variance(axes: [0, 2])
    expectClose(mean, Tensor.zeros([3]), rtol: 0, atol: 1e-5, "batch mean")
    expectClose(variance, Tensor.ones([3]), rtol: 0, atol: 1e-4, "batch variance")
    // running = 0.9·initial + 0.1·batch statistic, the variance unbiased (n = 20).
    let expectedMean = try x.mean(axes: [0, 2]) * 0.1
    let expectedVar = try x.variance(axes: [0, 2], unbiased: true) * 0.1 + 0.9
    expectClose(fresh.runningMean.value, expectedMean, "running_mean")
    expectClose(fresh.runningVar.value, expectedVar, "running_var")
    #expect(try fresh.batchesTracked.value.item() == 1)
    fresh.setTraining(false)
    let evaluated = try fresh(x)
    let manual =
      try (x - expectedMean.reshaped([1, 3, 1])) / (expectedVar.reshaped([1, 3, 1]) + 1e-5).sqrt()
    expectClose(evaluated, manual, "eval mode")
    let probe = BatchNorm1d(4, affine: false)
    #expect(probe.namedParameters().isEmpty)
    #expect(
      probe.namedBuffers().map(\.name) == ["running_mean", "running_var", "num_batches_tracked"])
    let error = #expect(throws: TensorError.self) { try probe(Tensor.zeros([1, 4])) }
    #expect(error?.message.contains("more than 1 value per channel") == true)
  }

  @Test func dropPathKeepsOrZeroesWholeSamples() throws {
    Random.seed(21)
    let dropPath = DropPath(0.5)
    let x = Tensor.ones([64, 3, 2])
    let y = try dropPath(x).scalars
    var kept = 0
    for sample in 0..<64 {
      let values = Set(y[(sample * 6)..<(sample * 6 + 6)])
      #expect(values == [0] || values == [2])
      if values == [2] { kept += 1 }
    }
    #expect(kept > 16 && kept < 48)
    dropPath.setTraining(false)
    #expect(try dropPath(x).scalars == x.scalars)
    // Drop path rates grow linearly over the blocks: p_i = rate · i/(depth − 1).
    let encoder = try Encoder(
      dimension: 8, depth: 3, heads: 2, segment: 2, frames: 4, joints: 3, dropPath: 0.3)
    #expect(encoder.blocks.map(\.dropPath.probability) == [0, 0.15, 0.3])
  }

  @Test func gruCellAndStackedGRUs() throws {
    Random.seed(5)
    let cell = try GRUCell(input: 3, hidden: 4)
    try checkModuleGradients(
      cell, inputs: [sampleTensor([2, 3], seed: 1), sampleTensor([2, 4], seed: 2)], "gru cell"
    ) { try cell($0[0], $0[1]) }
    for mode in GRU.Mode.allCases {
      let gru = try GRU(input: 3, hidden: 2, layers: 2, mode: mode)
      try checkModuleGradients(gru, inputs: [sampleTensor([2, 3, 3], seed: 3)], "gru \(mode)") {
        try gru($0[0])
      }
    }
  }

  /// Batches through the GRU encoder together give what each gets alone, up to rounding: the
  /// per-frame and sequence features, the input norm's running statistics (updated once a
  /// batch, in order: the same bits) and the gradients of every parameter and input.
  @Test func gruEncoderBatchesTogetherAsAlone() throws {
    func run(together: Bool) throws -> (features: [[Float]], state: [[Float]], grads: [[Float]]) {
      Random.seed(8)
      let encoder = try GRUEncoder(hidden: 4, layers: 2, joints: 2, bodies: 1, frames: 5)
      let batches = [
        try sampleTensor([3, 5, 6], seed: 31).requiringGrad(),
        try sampleTensor([2, 5, 6], seed: 32, scale: 2, shift: 1).requiringGrad(),
        try sampleTensor([4, 5, 6], seed: 33).requiringGrad(),
      ]
      let outputs =
        together
        ? try encoder.frameFeatures(batches: batches, coordinates: 3, bodies: 1)
        : try batches.map { try encoder.frameFeatures($0, coordinates: 3, bodies: 1) }
      var loss = Tensor(0)
      for (i, output) in outputs.enumerated() {
        loss = try loss + (output.frames * Float(i + 1)).sum() + output.sequence.pow(2).sum()
      }
      try loss.backward()
      let features: [[Float]] = outputs.flatMap { [$0.frames.scalars, $0.sequence.scalars] }
      let state: [[Float]] = encoder.stateDict().filter { $0.name.contains("running") }.map {
        $0.tensor.scalars
      }
      var grads: [[Float]] = encoder.namedParameters().map { $0.1.value.grad?.scalars ?? [] }
      grads += batches.map { $0.grad?.scalars ?? [] }
      return (features, state, grads)
    }
    let (alone, together) = (try run(together: false), try run(together: true))
    #expect(together.state == alone.state)
    #expect(alone.state.count == 2)
    for (a, b) in zip(alone.features + alone.grads, together.features + together.grads) {
      #expect(a.count == b.count && a.count > 0)
      let worst = zip(a, b).map { Swift.abs($0 - $1) / Swift.max(1, Swift.abs($0)) }.max() ?? 0
      // Products over more rows may round differently in BLAS (measured 1.0e-6).
      #expect(worst < 1e-5, "relative difference \(worst)")
    }
  }

  @Test func stepwiseGRUEqualsTwoCausalCellsPerLayer() throws {
    // methods.md §10.12: the PCM3 reference drives both direction cells forward in time.
    Random.seed(6)
    let gru = try GRU(input: 5, hidden: 3, layers: 2, mode: .stepwise)
    let names = gru.namedParameters().map(\.name)
    #expect(
      names.prefix(8) == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse",
        "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
      ])
    let x = try sampleTensor([2, 4, 5], seed: 7)
    let output = try gru(x)
    #expect(output.shape == [2, 4, 6])
    let state = Dictionary(uniqueKeysWithValues: gru.stateDict().map { ($0.name, $0.tensor) })
    func cell(_ suffix: String, input: Int) throws -> GRUCell {
      let c = try GRUCell(input: input, hidden: 3)
      try c.load([
        "weight_ih": #require(state["weight_ih" + suffix]),
        "weight_hh": #require(state["weight_hh" + suffix]),
        "bias_ih": #require(state["bias_ih" + suffix]),
        "bias_hh": #require(state["bias_hh" + suffix]),
      ])
      return c
    }
    let cells = [
      [try cell("_l0", input: 5), try cell("_l0_reverse", input: 5)],
      [try cell("_l1", input: 6), try cell("_l1_reverse", input: 6)],
    ]
    var h = [[Tensor]](repeating: [Tensor.zeros([2, 3]), Tensor.zeros([2, 3])], count: 2)
    for t in 0..<4 {
      var input = try x[.all, .index(t)]
      for layer in 0..<2 {
        h[layer][0] = try cells[layer][0](input, h[layer][0])
        h[layer][1] = try cells[layer][1](input, h[layer][1])
        input = try Tensor.concat(h[layer], axis: 1)
      }
      expectClose(try output[.all, .index(t)], input, "frame \(t)")
    }
    // A true bidirectional GRU differs: its reverse direction runs backward in time.
    let bidirectional = try GRU(input: 5, hidden: 3, layers: 2, mode: .bidirectional)
    try bidirectional.load(state)
    #expect(maxAbsDifference(try bidirectional(x), output) > 1e-3)
  }

  /// The fused layer names what does not fit: the input's rank, a weight's shape, a count.
  @Test func fusedGRULayerRejectsWhatDoesNotFit() throws {
    let (w, b) = (Tensor.zeros([6, 3]), Tensor.zeros([6]))
    func message(_ body: () throws -> Tensor) -> String {
      (#expect(throws: TensorError.self) { _ = try body() })?.message ?? ""
    }
    #expect(
      message {
        try Tensor.gruLayer(
          Tensor.zeros([2, 3]), weightsIH: [w], biasesIH: [b], weightsHH: [Tensor.zeros([6, 2])],
          biasesHH: [b], reverse: [false])
      }.contains("expects an input [B, T > 0, I], got [2, 3]"))
    #expect(
      message {
        try Tensor.gruLayer(
          Tensor.zeros([2, 4, 5]), weightsIH: [w], biasesIH: [b],
          weightsHH: [Tensor.zeros([6, 2])], biasesHH: [b], reverse: [false])
      }.contains("weight_ih [3H, 5]"))
    #expect(
      message {
        try Tensor.gruLayer(
          Tensor.zeros([2, 4, 3]), weightsIH: [w], biasesIH: [b, b],
          weightsHH: [Tensor.zeros([6, 2])], biasesHH: [b], reverse: [false])
      }.contains("the same number"))
  }

  /// The fused layer keeps r alone and recomputes z and n in backward; its output
  /// and every gradient match the same GRU run a cell at a time through autograd, for both
  /// orders in time, several samples (the backward's products pair rows across sample
  /// boundaries) and several frames, and for one sample or one frame. Without a gradient it
  /// gives the same bits.
  @Test(arguments: [(3, 5), (1, 1), (1, 4), (3, 1)])
  func fusedGRULayerMatchesCellsStepByStep(batch: Int, frames: Int) throws {
    for mode in [GRU.Mode.stepwise, .bidirectional] {
      Random.seed(9)
      let (inputs, hidden) = (4, 6)
      let gru = try GRU(input: inputs, hidden: hidden, layers: 2, mode: mode)
      let x = try sampleTensor([batch, frames, inputs], seed: 10).requiringGrad()
      let weight = try sampleTensor([batch, frames, 2 * hidden], seed: 11)
      let output = try gru(x)
      try (output * weight).sum().backward()
      let inference = try Autograd.noGrad { try gru(x) }
      #expect(inference.scalars == output.scalars)
      let fused = try gru.namedParameters().map { ($0.name, try #require($0.parameter.value.grad)) }
      let fusedInput = try #require(x.grad)

      // The same function from cells: each layer's directions in turn, the reverse one
      // backward in time when bidirectional.
      let state = Dictionary(uniqueKeysWithValues: gru.stateDict().map { ($0.name, $0.tensor) })
      let y = try sampleTensor([batch, frames, inputs], seed: 10).requiringGrad()
      var cells: [GRUCell] = []
      var input = y
      for layer in 0..<2 {
        var directions: [Tensor] = []
        for direction in 0..<2 {
          let suffix = "_l\(layer)" + (direction == 1 ? "_reverse" : "")
          let cell = try GRUCell(input: input.shape[2], hidden: hidden)
          try cell.load([
            "weight_ih": #require(state["weight_ih" + suffix]),
            "weight_hh": #require(state["weight_hh" + suffix]),
            "bias_ih": #require(state["bias_ih" + suffix]),
            "bias_hh": #require(state["bias_hh" + suffix]),
          ])
          cells.append(cell)
          let order = Array(0..<frames)
          var h = Tensor.zeros([batch, hidden])
          var states = [Tensor](repeating: h, count: frames)
          for t in direction == 1 && mode == .bidirectional ? order.reversed() : order {
            h = try cell(input[.all, .index(t)], h)
            states[t] = h
          }
          directions.append(try Tensor.stack(states, axis: 1))
        }
        input = try Tensor.concat(directions, axis: 2)
      }
      expectClose(input, output, "\(mode) output")
      try (input * weight).sum().backward()
      expectClose(try #require(y.grad), fusedInput, rtol: 1e-4, atol: 1e-5, "\(mode) dx")
      let composed = try cells.flatMap { cell in
        try ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map { name in
          try #require(cell.namedParameters().first { $0.name == name }?.parameter.value.grad)
        }
      }
      #expect(composed.count == fused.count)
      for ((name, a), b) in zip(fused, composed) {
        expectClose(a, b, rtol: 1e-4, atol: 1e-5, "\(mode) \(name)")
      }
    }
  }
}

@Suite("Model gradients", .timed)
struct ModelGradientTests {
  @Test func decoderGradientsForVisibleTokensAndEveryParameter() throws {
    let decoder = try Decoder(
      encoderDimension: 6, dimension: 4, depth: 1, heads: 2, segments: 2, joints: 2,
      head: .motion(outputs: 3), layerScale: 0.5)
    try randomize(decoder, seed: 31)
    let restore = try Tensor(shape: [2, 4], scalars: [2, 0, 3, 1, 1, 3, 0, 2])
    try checkModuleGradients(decoder, inputs: [sampleTensor([2, 2, 6], seed: 32)], "decoder") {
      try decoder($0[0], restore: restore)
    }
  }

  @Test func classifierHeadsGradients() throws {
    for head in Classifier.HeadKind.allCases {
      let encoder = try Encoder(dimension: 4, depth: 1, heads: 2, segment: 2, frames: 2, joints: 2)
      let classifier = try Classifier(
        encoder: encoder, classes: 3, head: head, hidden: 5, dropout: 0)
      try randomize(classifier, seed: 33)
      // Batch statistics (training mode) are deterministic; dropout is off. The probe's
      // BatchNorm over few samples is strongly curved, so the difference step is small.
      try checkModuleGradients(
        classifier, inputs: [sampleTensor([8, 3, 2, 2, 2], seed: 34)], eps: 2e-3, rtol: 3e-2,
        atol: 2e-3, "classifier \(head)"
      ) { try classifier($0[0]) }
    }
  }
}
