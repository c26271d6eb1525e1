import TensorCore
import TestSupport
import Testing

@Suite("Reductions", .timed)
struct ReductionTests {
  static let axisCases: [([Int]?, Bool)] = [
    (nil, false), ([0], false), ([1], true), ([-1], false), ([0, 2], true), ([1, 2], false),
  ]

  @Test(arguments: axisCases)
  func gradients(axes: [Int]?, keepDim: Bool) throws {
    let x = try sampleTensor([3, 4, 5], seed: 10)
    let label = "axes \(String(describing: axes)) keepDim \(keepDim)"
    try checkGradients([x], "sum " + label) { t in try t[0].sum(axes: axes, keepDim: keepDim) }
    try checkGradients([x], "mean " + label) { t in try t[0].mean(axes: axes, keepDim: keepDim) }
    try checkGradients([x], "var " + label) { t in
      try t[0].variance(axes: axes, keepDim: keepDim)
    }
    try checkGradients([x], "unbiased var " + label) { t in
      try t[0].variance(axes: axes, keepDim: keepDim, unbiased: true)
    }
    try checkGradients([x], "std " + label) { t in
      try t[0].standardDeviation(axes: axes, keepDim: keepDim)
    }
    try checkGradients([x], "max " + label) { t in try t[0].max(axes: axes, keepDim: keepDim) }
    try checkGradients([x], "min " + label) { t in try t[0].min(axes: axes, keepDim: keepDim) }
    try checkGradients([x], "logsumexp " + label) { t in
      try t[0].logSumExp(axes: axes, keepDim: keepDim)
    }
  }

  /// A sum over middle axes reads the tensor in place, with the bits of the permuted copy's row
  /// sums: lanes by position, 4096-long blocks (two here, with a tail), outer axes apart.
  @Test(arguments: [
    ([4, 3, 5, 16], [0, 2]), ([2, 4100, 3, 17], [1]), ([3, 5, 7, 2, 20], [1, 3]),
    ([3, 300, 16], [1]),
  ])
  func middleAxisSumsHaveTheRowSumsBits(shape: [Int], axes: [Int]) throws {
    let x = try sampleTensor(shape, seed: 21, scale: 1000)
    let kept = shape.indices.filter { !axes.contains($0) }
    let n = axes.reduce(1) { $0 * shape[$1] }
    let rows = kept.reduce(1) { $0 * shape[$1] }
    let reference = try x.permuted(kept + axes).contiguous().reshaped([rows, n]).sum(axes: [1])
    let fast = try x.sum(axes: axes, keepDim: true)
    #expect(fast.shape == shape.indices.map { axes.contains($0) ? 1 : shape[$0] })
    #expect(fast.scalars.map(\.bitPattern) == reference.scalars.map(\.bitPattern))
    #expect(try x.sum(axes: axes).shape == kept.map { shape[$0] })
  }

  /// A sum over leading axes (a bias's gradient) adds each column's rows in double, in row
  /// order: strips of 32 columns and the rest, against that sum written out (`ThreadingTests`
  /// checks that two threads, splitting the columns, give the same bits).
  @Test(arguments: [[37, 100], [3, 5, 64], [1000, 7], [2, 0, 40]])
  func leadingAxisSumsAddRowsInDouble(shape: [Int]) throws {
    let x = try sampleTensor(shape, seed: 22, scale: 1000)
    let columns = shape.last!
    let rows = x.count / Swift.max(columns, 1)
    let values = x.scalars
    let expected = (0..<columns).map { j in
      Float((0..<rows).reduce(0.0) { $0 + Double(values[$1 * columns + j]) })
    }
    let axes = Array(0..<(shape.count - 1))
    #expect(try x.sum(axes: axes).scalars.map(\.bitPattern) == expected.map(\.bitPattern))
  }

  @Test func values() throws {
    let x = try Tensor(shape: [2, 3], scalars: [1, 5, 3, 4, 2, 6])
    #expect(try x.sum().scalars == [21])
    #expect(try x.sum(axes: [0]).scalars == [5, 7, 9])
    #expect(try x.sum(axes: [1], keepDim: true).shape == [2, 1])
    #expect(try x.mean(axes: [1]).scalars == [3, 4])
    #expect(try x.max(axes: [0]).scalars == [4, 5, 6])
    #expect(try x.min().scalars == [1])
    #expect(try x.variance(axes: [1]).scalars == [8.0 / 3.0, 8.0 / 3.0])
    #expect(try x.variance(axes: [1], unbiased: true).scalars == [4, 4])
    let (values, indices) = try x.max(axis: 1)
    #expect(values.scalars == [5, 6])
    #expect(indices.scalars == [1, 2])
    #expect(try x.min(axis: 0, keepDim: true).indices.shape == [1, 3])
    #expect(try x.argmax().scalars == [5])
    #expect(try x.argmax(axis: 0).scalars == [1, 0, 1])
    #expect(try x.argmin(axis: 1).scalars == [0, 1])
    // A sum over the leading axis of a transposed view reads the view, not the buffer.
    #expect(try x.transposed().sum(axes: [0]).scalars == [9, 12])
  }

  @Test(arguments: [0, 1, -1])
  func maxMinAlongAxisGradients(axis: Int) throws {
    // Spread out so that no two candidates lie within the finite-difference step of each other.
    let x = try sampleTensor([3, 4, 5], seed: 11, scale: 4)
    try checkGradients([x], "max axis \(axis)") { t in try t[0].max(axis: axis).values }
    try checkGradients([x], "min axis \(axis) keepDim") { t in
      try t[0].min(axis: axis, keepDim: true).values
    }
  }

  @Test func maxWithIndexGradientGoesToFirstMaximum() throws {
    let x = try Tensor(shape: [2, 3], scalars: [1, 7, 7, 0, -1, 2]).requiringGrad()
    try x.max(axis: 1).values.sum().backward()
    #expect(x.grad?.scalars == [0, 1, 0, 0, 0, 1])
  }

  @Test func logSumExpIsStable() throws {
    let x = try Tensor(shape: [2, 2], scalars: [1000, 1000, -.infinity, -.infinity])
    let out = try x.logSumExp(axes: [1])
    expectClose(try out[.index(0)], Tensor(1000 + Float(0.693_147_2)), "large")
    #expect(try out.element(at: [1]) == -.infinity)
  }

  @Test func largeSumIsAccurate() throws {
    // 1e6 copies of 0.1: naive float accumulation drifts by ~1e-3 relative.
    let x = Tensor.full([1_000_000], 0.1)
    #expect(Swift.abs(try x.sum().item() - 100_000) < 0.5)
    #expect(Swift.abs(try x.reshaped([1000, 1000]).sum(axes: [0]).element(at: [7]) - 100) < 1e-3)
  }

  @Test func meanOfStandardizedMatchesTheComposedOps() throws {
    // Odd sizes, several sequences (split across threads) and an offset view among the inputs.
    let layers = [
      try sampleTensor([5, 37, 20], seed: 30, scale: 3, shift: 1),
      try sampleTensor([5, 37, 20], seed: 31, scale: 0.5),
      try sampleTensor([5, 38, 20], seed: 32, scale: 2, shift: -4)[.all, .range(1, nil, 1)],
    ]
    for (axis, reduced) in [(Tensor.StandardizeAxis.tokens, 1), (.channels, 2)] {
      var total = Tensor.zeros([5, 37, 20])
      for h in layers {
        let mean = try h.mean(axes: [reduced], keepDim: true)
        let variance = try h.variance(axes: [reduced], keepDim: true)
        total = try total + (h - mean) / (variance + 1e-5).sqrt()
      }
      expectClose(
        try Tensor.meanOfStandardized(layers, over: axis, eps: 1e-5), total * (1 / 3),
        rtol: 1e-5, atol: 1e-5, "\(axis)")
    }
    let constant = try Tensor.meanOfStandardized(
      [Tensor.full([1, 4, 3], 2).requiringGrad()], over: .tokens, eps: 1e-5)
    #expect(constant.scalars == [Float](repeating: 0, count: 12))
    #expect(!constant.requiresGrad)
    let error = #expect(throws: TensorError.self) {
      try Tensor.meanOfStandardized(
        [Tensor.zeros([2, 3, 4]), Tensor.zeros([2, 3])], over: .tokens, eps: 1e-5)
    }
    #expect(
      error?.description
        == "[standardize] expects non-empty [B, L, D] tensors of one shape, got [2, 3, 4], [2, 3]")
    #expect(throws: TensorError.self) {
      try Tensor.meanOfStandardized([], over: .tokens, eps: 1e-5)
    }
  }

  @Test func errors() throws {
    let x = Tensor.zeros([2, 3])
    let error = #expect(throws: TensorError.self) { try x.sum(axes: [2]) }
    #expect(error?.description == "[sum] axis 2 is out of range for a tensor of rank 2")
    #expect(throws: TensorError.self) { try x.mean(axes: [0, -2]) }
    #expect(throws: TensorError.self) { try Tensor.zeros([0, 3]).max(axes: [0]) }
    #expect(throws: TensorError.self) { try Tensor.zeros([1]).variance(unbiased: true) }
  }
}
