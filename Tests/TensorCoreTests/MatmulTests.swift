import TensorCore
import TestSupport
import Testing

@Suite("Matrix products", .timed)
struct MatmulTests {
  /// The oracle: a triple loop in double precision over broadcast batches.
  func naive(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    let (m, k) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
    let n = b.shape[b.rank - 1]
    let batchA = Array(a.shape.dropLast(2))
    let batchB = Array(b.shape.dropLast(2))
    let rank = Swift.max(batchA.count, batchB.count)
    let pad = { (s: [Int]) in [Int](repeating: 1, count: rank - s.count) + s }
    let (pa, pb) = (pad(batchA), pad(batchB))
    let batch = zip(pa, pb).map { Swift.max($0, $1) }
    let count = batch.reduce(1, *)
    var out: [Float] = []
    for item in 0..<count {
      var rest = item
      var index = [Int](repeating: 0, count: rank)
      for d in stride(from: rank - 1, through: 0, by: -1) {
        index[d] = rest % batch[d]
        rest /= batch[d]
      }
      let ia = zip(index, pa).map { $1 == 1 ? 0 : $0 }.suffix(batchA.count)
      let ib = zip(index, pb).map { $1 == 1 ? 0 : $0 }.suffix(batchB.count)
      for i in 0..<m {
        for j in 0..<n {
          var sum = 0.0
          for p in 0..<k {
            sum +=
              Double(try a.element(at: Array(ia) + [i, p]))
              * Double(try b.element(at: Array(ib) + [p, j]))
          }
          out.append(Float(sum))
        }
      }
    }
    return try Tensor(shape: batch + [m, n], scalars: out)
  }

  static let shapes: [([Int], [Int])] = [
    ([3, 4], [4, 5]), ([2, 3, 4], [4, 5]), ([2, 3, 4], [2, 4, 5]), ([2, 1, 3, 4], [3, 4, 2]),
    ([1, 4], [4, 1]), ([5, 1], [1, 3]),
  ]

  @Test(arguments: shapes)
  func matchesNaiveAndGradients(shapes: ([Int], [Int])) throws {
    let a = try sampleTensor(shapes.0, seed: 40)
    let b = try sampleTensor(shapes.1, seed: 41)
    expectClose(try a.matmul(b), try naive(a, b), "\(shapes)")
    try checkGradients([a, b], "matmul \(shapes)") { t in try t[0].matmul(t[1]) }
  }

  @Test func transposedViewsGoToBlasWithoutChangingResults() throws {
    let a = try sampleTensor([5, 3], seed: 42)
    let b = try sampleTensor([4, 3], seed: 43)
    let viaView = try a.matmul(b.transposed())
    let viaCopy = try a.matmul(b.transposed().contiguous())
    #expect(viaView.scalars == viaCopy.scalars)
    let c = try sampleTensor([3, 5], seed: 44)
    expectClose(
      try c.transposed().matmul(b.transposed()), try naive(c.transposed(), b.transposed()))
    // A batch of transposed matrices (attention's q·kᵀ).
    let q = try sampleTensor([2, 6, 3], seed: 45)
    let k = try sampleTensor([2, 6, 3], seed: 46)
    expectClose(try q.matmul(k.transposed()), try naive(q, k.transposed().contiguous()))
    try checkGradients([q, k], "q·kᵀ") { t in try t[0].matmul(t[1].transposed()) }
    // A strided slice that is neither layout is copied first.
    let strided = try sampleTensor([6, 8], seed: 47)[.range(nil, nil, 2), .range(nil, nil, 2)]
    let d = try sampleTensor([4, 5], seed: 48)
    expectClose(try strided.matmul(d), try naive(strided, d))
    try checkGradients([strided, d], "strided operand") { t in try t[0].matmul(t[1]) }
  }

  @Test func vectorsFollowNumPy() throws {
    let m = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
    let v = Tensor([1, 0, -1])
    #expect(try m.matmul(v).shape == [2])
    #expect(try m.matmul(v).scalars == [-2, -2])
    #expect(try Tensor([1, 1]).matmul(m).scalars == [5, 7, 9])
    #expect(try v.matmul(v).shape == [])
    #expect(try v.matmul(v).item() == 2)
    try checkGradients([m, v], "matrix·vector") { t in try t[0].matmul(t[1]) }
  }

  @Test func innerDimensionErrorNamesShapes() throws {
    let error = #expect(throws: TensorError.self) {
      try Tensor.zeros([32, 128]).matmul(Tensor.zeros([64, 10]))
    }
    #expect(
      error?.description == "[matmul] [32, 128] @ [64, 10]: inner dimensions 128 and 64 differ")
    #expect(throws: TensorError.self) { try Tensor(1).matmul(Tensor.zeros([1])) }
    #expect(throws: TensorError.self) {
      try Tensor.zeros([2, 3, 4]).matmul(Tensor.zeros([3, 4, 5]))
    }
  }

  @Test func emptyDimensions() throws {
    #expect(try Tensor.zeros([0, 3]).matmul(Tensor.zeros([3, 2])).shape == [0, 2])
    #expect(try Tensor.ones([2, 0]).matmul(Tensor.ones([0, 2])).scalars == [0, 0, 0, 0])
  }
}

@Suite("Fused linear", .timed)
struct LinearOpTests {
  @Test func linearEqualsMatmulPlusBiasWithGradients() throws {
    let x = try sampleTensor([2, 3, 5], seed: 1)
    let w = try sampleTensor([4, 5], seed: 2)
    let b = try sampleTensor([4], seed: 3)
    let fused = try Tensor.linear(x, weight: w, bias: b)
    let composed = try x.matmul(w.transposed()) + b
    expectClose(fused, composed, rtol: 1e-6, atol: 1e-6, "linear")
    expectClose(try Tensor.linear(x, weight: w, bias: nil), try x.matmul(w.transposed()), "no bias")
    try checkGradients([x, w, b], "linear") { t in try Tensor.linear(t[0], weight: t[1], bias: t[2])
    }
    try checkGradients([x.transposed(), w], "linear of a view") { t in
      try Tensor.linear(t[0].transposed(), weight: t[1], bias: nil)
    }
    let residual = try sampleTensor([2, 3, 4], seed: 4)
    expectClose(
      try Tensor.linear(x, weight: w, bias: b, adding: residual), try composed + residual,
      rtol: 1e-6, atol: 1e-6, "linear + residual")
    try checkGradients([x, w, b, residual], "linear + residual") { t in
      try Tensor.linear(t[0], weight: t[1], bias: t[2], adding: t[3])
    }
    try checkGradients([x, w, residual], "linear + residual, no bias") { t in
      try Tensor.linear(t[0], weight: t[1], bias: nil, adding: t[2])
    }
    #expect(throws: TensorError.self) {
      try Tensor.linear(x, weight: w, bias: b, adding: Tensor.zeros([2, 4]))
    }
    let error = #expect(throws: TensorError.self) {
      try Tensor.linear(x, weight: Tensor.zeros([4, 6]), bias: b)
    }
    #expect(
      error?.description
        == "[linear] input [2, 3, 5], weight [4, 6] and bias [4] do not fit [..., in] · [out, in]ᵀ + [out]"
    )
  }
}
