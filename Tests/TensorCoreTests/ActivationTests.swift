import TensorCore
import TestSupport
import Testing

@Suite("Softmax, layer norm, dropout", .timed)
struct ActivationTests {
  @Test(arguments: [-1, 0, 1])
  func softmaxMatchesComposedOracle(axis: Int) throws {
    let x = try sampleTensor([3, 5, 4], seed: 50, scale: 3)
    let shifted = try x - x.max(axes: [axis], keepDim: true)
    let oracle = try shifted.exp() / shifted.exp().sum(axes: [axis], keepDim: true)
    expectClose(try x.softmax(axis: axis), oracle, "softmax axis \(axis)")
    expectClose(try x.logSoftmax(axis: axis), oracle.log(), rtol: 1e-5, atol: 1e-5, "log_softmax")
    try checkGradients([x], "softmax axis \(axis)") { t in try t[0].softmax(axis: axis) }
    try checkGradients([x], "log_softmax axis \(axis)") { t in try t[0].logSoftmax(axis: axis) }
  }

  @Test func softmaxSurvivesLargeOffsets() throws {
    let x = try Tensor(shape: [2, 3], scalars: [1000, 1001, 1002, -.infinity, 0, 0])
    let y = try x.softmax()
    expectClose(
      y,
      try Tensor(shape: [2, 3], scalars: [0.090_030_57, 0.244_728_47, 0.665_240_96, 0, 0.5, 0.5]))
    #expect(try x.logSoftmax().element(at: [0, 2]) > -0.41)
  }

  @Test(arguments: [[2, 3, 8], [5, 33], [1, 64]])
  func layerNormMatchesComposedOracle(shape: [Int]) throws {
    let x = try sampleTensor(shape, seed: 51, scale: 2, shift: 3)
    let d = shape.last ?? 1
    let weight = try sampleTensor([d], seed: 52)
    let bias = try sampleTensor([d], seed: 53)
    let centred = try x - x.mean(axes: [-1], keepDim: true)
    let oracle = try centred / (x.variance(axes: [-1], keepDim: true) + 1e-5).sqrt() * weight + bias
    expectClose(try x.layerNorm(weight: weight, bias: bias), oracle, rtol: 2e-5, "layer_norm")
    try checkGradients([x, weight, bias], "layer_norm \(shape)") { t in
      try t[0].layerNorm(weight: t[1], bias: t[2], eps: 1e-5)
    }
    try checkGradients([x], "layer_norm without affine \(shape)") { t in
      try t[0].layerNorm(eps: 1e-6)
    }
  }

  @Test func layerNormRejectsWrongParameters() throws {
    let error = #expect(throws: TensorError.self) {
      try Tensor.zeros([2, 4]).layerNorm(weight: Tensor.ones([3]))
    }
    #expect(error?.description == "[layer_norm] weight of shape [3] for input [2, 4]; expected [4]")
  }

  @Test func dropoutKeepsExpectationAndIsSeeded() throws {
    var g1 = RandomGenerator(seed: 7)
    var g2 = RandomGenerator(seed: 7)
    let x = Tensor.ones([10_000])
    let a = try x.dropout(probability: 0.25, generator: &g1)
    let b = try x.dropout(probability: 0.25, generator: &g2)
    #expect(a.scalars == b.scalars)
    let zeros = a.scalars.filter { $0 == 0 }.count
    #expect((2300...2700).contains(zeros))
    #expect(Swift.abs(try a.mean().item() - 1) < 0.03)
    #expect(try x.dropout(probability: 0.5, training: false, generator: &g1).scalars == x.scalars)
    #expect(throws: TensorError.self) { try x.dropout(probability: 1.5, generator: &g1) }
    // The gradient is the same mask.
    let leaf = x.requiringGrad()
    var g3 = RandomGenerator(seed: 7)
    try leaf.dropout(probability: 0.25, generator: &g3).sum().backward()
    #expect(leaf.grad?.scalars == a.scalars)
  }

  /// In-place GELU gives `gelu()`'s bits, never writes a buffer another tensor shares, and with
  /// gradients recorded it is `gelu()` with its gradient.
  @Test func inPlaceGELUIsGELU() throws {
    let x = try sampleTensor([300, 70], seed: 90, scale: 3)
    let expected = x.gelu().scalars
    var fresh = Autograd.noGrad { x * 1 }
    fresh.applyGELU()
    #expect(fresh.scalars.map(\.bitPattern) == expected.map(\.bitPattern))
    var shared = x
    shared.applyGELU()
    #expect(shared.scalars.map(\.bitPattern) == expected.map(\.bitPattern))
    #expect(x.scalars == (try sampleTensor([300, 70], seed: 90, scale: 3)).scalars)
    let leaf = x.requiringGrad()
    var recorded = leaf * 1
    recorded.applyGELU()
    try recorded.sum().backward()
    let reference = x.requiringGrad()
    try reference.gelu().sum().backward()
    #expect(leaf.grad?.scalars == reference.grad?.scalars)
  }

  /// The product over GELU's output that recomputes it in backward gives the bits of GELU
  /// then `linear`: the output, and the gradients of the input, weight, bias and residual,
  /// with and without each of bias and residual, and when only the weight needs a gradient.
  @Test func geluLinearIsGELUThenLinear() throws {
    let x = try sampleTensor([3, 37, 24], seed: 91, scale: 3)
    let weight = try sampleTensor([10, 24], seed: 92)
    let bias = try sampleTensor([10], seed: 93)
    let residual = try sampleTensor([3, 37, 10], seed: 94)
    let upstream = try sampleTensor([3, 37, 10], seed: 95)
    func bits(_ t: Tensor?) -> [UInt32] { t?.scalars.map(\.bitPattern) ?? [] }
    for (withBias, withResidual, inputGrad) in [
      (true, true, true), (true, false, true), (false, true, true), (false, false, true),
      (true, true, false),
    ] {
      var runs: [[[UInt32]]] = []
      for fused in [true, false] {
        let (xl, wl, bl, rl) = (
          inputGrad ? x.requiringGrad() : x, weight.requiringGrad(), bias.requiringGrad(),
          residual.requiringGrad()
        )
        let (b, r) = (withBias ? bl : nil, withResidual ? rl : nil)
        let y =
          fused
          ? try Tensor.linear(gelu: xl, weight: wl, bias: b, adding: r)
          : try Tensor.linear(xl.gelu(), weight: wl, bias: b, adding: r)
        try (y * upstream).sum().backward()
        runs.append([
          bits(y), bits(xl.grad), bits(wl.grad), withBias ? bits(bl.grad) : [],
          withResidual ? bits(rl.grad) : [],
        ])
      }
      #expect(runs[0] == runs[1], "bias \(withBias), residual \(withResidual), dx \(inputGrad)")
      #expect(runs[0][2].count == 240)
    }
    // Without gradients: the same values, and a shared input is left as it was.
    let plain = try Tensor.linear(x.gelu(), weight: weight, bias: bias, adding: residual)
    let fused = try Autograd.noGrad {
      try Tensor.linear(gelu: x, weight: weight, bias: bias, adding: residual)
    }
    #expect(bits(fused) == bits(plain))
    #expect(x.scalars == (try sampleTensor([3, 37, 24], seed: 91, scale: 3)).scalars)
  }

  /// The MLP run a chunk of rows at a time without gradients gives the bits of the norm,
  /// `linear`, GELU and `linear` with the residual, composed: over several chunks a thread
  /// and a short last one, with and without the biases; a residual of another shape is an
  /// error that names both shapes.
  @Test func normalizedMLPIsTheComposedOps() throws {
    // Hidden 1,024: chunks of 512 rows; 2,201 rows make several chunks on any thread count.
    let x = try sampleTensor([1, 2201, 32], seed: 120, scale: 2)
    let (nw, nb) = (try sampleTensor([32], seed: 121), try sampleTensor([32], seed: 122))
    let w1 = try sampleTensor([1024, 32], seed: 123)
    let b1 = try sampleTensor([1024], seed: 124)
    let w2 = try sampleTensor([24, 1024], seed: 125, scale: 0.1)
    let b2 = try sampleTensor([24], seed: 126)
    let residual = try sampleTensor([1, 2201, 24], seed: 127)
    #expect(Tensor.mlpChunkRows(hidden: 1024) == 512)
    func bits(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }
    for (first, second) in [(true, true), (false, true), (true, false), (false, false)] {
      let (bias1, bias2) = (first ? b1 : nil, second ? b2 : nil)
      let composed = try Tensor.linear(
        Tensor.linear(x.layerNorm(weight: nw, bias: nb, eps: 1e-5), weight: w1, bias: bias1)
          .gelu(), weight: w2, bias: bias2, adding: residual)
      let fused = try Tensor.normalizedMLP(
        x, normWeight: nw, normBias: nb, eps: 1e-5, weight1: w1, bias1: bias1, weight2: w2,
        bias2: bias2, adding: residual)
      #expect(fused.shape == [1, 2201, 24])
      #expect(bits(fused) == bits(composed), "bias1 \(first), bias2 \(second)")
    }
    let wrong = try sampleTensor([1, 2201, 23], seed: 128)
    let error = #expect(throws: TensorError.self) {
      try Tensor.normalizedMLP(
        x, normWeight: nw, normBias: nb, eps: 1e-5, weight1: w1, bias1: b1, weight2: w2,
        bias2: b2, adding: wrong)
    }
    #expect(error?.description.contains("[1, 2201, 23]") == true)
    #expect(error?.description.contains("[1, 2201, 24]") == true)
  }

  /// Over several blocks of rows, `gelu_linear` gives the bits of GELU then `linear` for the
  /// output and the input's gradient, and the weight's gradient to rounding (its product is
  /// summed a block of rows at a time). In a backward that frees the graph, the input's gradient
  /// is written over the argument's own buffer, which only the graph held.
  @Test func geluLinearOverManyRowsReusesItsArgument() throws {
    // 8,997 rows of 64: three blocks of 2,999 rows (blocks are about 1 MiB).
    let x = try sampleTensor([3, 2999, 64], seed: 102, scale: 3)
    let weight = try sampleTensor([16, 64], seed: 103)
    let bias = try sampleTensor([16], seed: 104)
    let upstream = try sampleTensor([3, 2999, 16], seed: 105)
    func bits(_ t: Tensor?) -> [UInt32] { t?.scalars.map(\.bitPattern) ?? [] }
    for retain in [false, true] {
      var runs: [(y: Tensor, dx: Tensor?, dw: Tensor?, db: Tensor?)] = []
      var reused = false
      for fused in [true, false] {
        let (xl, wl, bl) = (x.requiringGrad(), weight.requiringGrad(), bias.requiringGrad())
        var argument: UnsafeMutablePointer<Float>?
        var reached: UnsafeMutablePointer<Float>?
        // The argument is an intermediate that only the graph holds; the probe sees the
        // gradient that reaches it.
        let y = try {
          let copy = Autograd.noGrad { x * 1 }
          argument = copy.storage.base
          let h = Autograd.record("probe", copy, [xl]) { g in
            reached = g.storage.base
            return [g]
          }
          return fused
            ? try Tensor.linear(gelu: h, weight: wl, bias: bl, adding: nil)
            : try Tensor.linear(h.gelu(), weight: wl, bias: bl)
        }()
        try (y * upstream).sum().backward(retainGraph: retain)
        if fused { reused = reached == argument }
        runs.append((y, xl.grad, wl.grad, bl.grad))
      }
      #expect(bits(runs[0].y) == bits(runs[1].y))
      #expect(bits(runs[0].dx) == bits(runs[1].dx))
      #expect(bits(runs[0].db) == bits(runs[1].db))
      let (dw, reference) = (try #require(runs[0].dw), try #require(runs[1].dw))
      expectClose(dw, reference, rtol: 1e-5, atol: 1e-4, "weight gradient")
      #expect(reused == !retain, "retain_graph \(retain)")
    }
  }

  /// Over several blocks of rows, `layer_norm_linear` gives the bits of the norm then `linear`
  /// for the output and the gradients of x, the norm's weight and bias and the product's bias,
  /// and the product weight's gradient to rounding, also when x wants no gradient. In a
  /// backward that frees the graph, x's gradient is written over x's own buffer.
  @Test func layerNormLinearOverManyRowsReusesItsArgument() throws {
    // 8,997 rows of 64: blocks of 3,008, 3,008 and 2,981 rows (multiples of the norm's 64).
    let x = try sampleTensor([3, 2999, 64], seed: 106, scale: 2, shift: 0.5)
    let (normWeight, normBias) = (
      try sampleTensor([64], seed: 107), try sampleTensor([64], seed: 108)
    )
    let weight = try sampleTensor([24, 64], seed: 109)
    let bias = try sampleTensor([24], seed: 110)
    let upstream = try sampleTensor([3, 2999, 24], seed: 111)
    func bits(_ t: Tensor?) -> [UInt32] { t?.scalars.map(\.bitPattern) ?? [] }
    for (retain, inputGrad) in [(false, true), (true, true), (false, false)] {
      var runs: [[Tensor?]] = []
      var reused = false
      for fused in [true, false] {
        let xl = x.requiringGrad()
        let (nw, nb, wl, bl) = (
          normWeight.requiringGrad(), normBias.requiringGrad(), weight.requiringGrad(),
          bias.requiringGrad()
        )
        var argument: UnsafeMutablePointer<Float>?
        var reached: UnsafeMutablePointer<Float>?
        let y = try {
          let copy = Autograd.noGrad { x * 1 }
          argument = copy.storage.base
          // x's stand-in: an intermediate only the graph holds, or a constant.
          let h =
            inputGrad
            ? Autograd.record("probe", copy, [xl]) { g in
              reached = g.storage.base
              return [g]
            } : copy
          return fused
            ? try Tensor.linear(
              normalizing: h, normWeight: nw, normBias: nb, eps: 1e-5, weight: wl, bias: bl)
            : try Tensor.linear(
              h.layerNorm(weight: nw, bias: nb, eps: 1e-5), weight: wl, bias: bl)
        }()
        try (y * upstream).sum().backward(retainGraph: retain)
        if fused { reused = reached != nil && reached == argument }
        runs.append([y, xl.grad, nw.grad, nb.grad, bl.grad, wl.grad])
      }
      let label = "retain_graph \(retain), dx \(inputGrad)"
      for i in 0..<5 { #expect(bits(runs[0][i]) == bits(runs[1][i]), "\(label), result \(i)") }
      #expect((runs[0][1] != nil) == inputGrad, "\(label)")
      expectClose(
        try #require(runs[0][5]), try #require(runs[1][5]), rtol: 1e-5, atol: 1e-4,
        "\(label), weight gradient")
      #expect(reused == (inputGrad && !retain), "\(label)")
    }
  }

  /// The product after a layer norm that recomputes the norm in backward gives the bits of the
  /// norm then `linear`: the output and every gradient, with and without a bias, and when only
  /// some inputs need gradients.
  @Test func layerNormLinearIsLayerNormThenLinear() throws {
    let x = try sampleTensor([2, 13, 8], seed: 96, scale: 2, shift: 0.5)
    let (normWeight, normBias) = (try sampleTensor([8], seed: 97), try sampleTensor([8], seed: 98))
    let weight = try sampleTensor([12, 8], seed: 99)
    let bias = try sampleTensor([12], seed: 100)
    let upstream = try sampleTensor([2, 13, 12], seed: 101)
    func bits(_ t: Tensor?) -> [UInt32] { t?.scalars.map(\.bitPattern) ?? [] }
    for (withBias, all) in [(true, true), (false, true), (true, false)] {
      var runs: [[[UInt32]]] = []
      for fused in [true, false] {
        let xl = x.requiringGrad()
        let (nw, nb) =
          all ? (normWeight.requiringGrad(), normBias.requiringGrad()) : (normWeight, normBias)
        let (wl, bl) = (weight.requiringGrad(), bias.requiringGrad())
        let b = withBias ? bl : nil
        let y =
          fused
          ? try Tensor.linear(
            normalizing: xl, normWeight: nw, normBias: nb, eps: 1e-5, weight: wl, bias: b)
          : try Tensor.linear(xl.layerNorm(weight: nw, bias: nb, eps: 1e-5), weight: wl, bias: b)
        try (y * upstream).sum().backward()
        runs.append([
          bits(y), bits(xl.grad), bits(nw.grad), bits(nb.grad), bits(wl.grad),
          withBias ? bits(bl.grad) : [],
        ])
      }
      #expect(runs[0] == runs[1], "bias \(withBias), norm parameters \(all)")
      #expect(runs[0][1].count == 208 && runs[0][4].count == 96)
      #expect(runs[0][2].count == (all ? 8 : 0))
    }
  }
}
