import NN
import TensorCore
import TestSupport
import Testing

/// The fused, blocked attention kernel against the composed ops it replaces, for shapes within
/// one query block and across two (`Tensor.attentionBlockRows` is 512: the backward's first
/// block writes k's and v's gradients, the second adds to them), with the logits' products
/// through transposed keys (small blocks), through BLAS as they are (large), and one of each
/// in one head (530 tokens of width 4), and against finite differences.
@Suite("Fused attention", .timed)
struct FusedAttentionTests {
  @Test(arguments: [
    (1, 1, 4, 1), (2, 5, 8, 2), (3, 130, 16, 4), (1, 64, 12, 3), (2, 530, 8, 2),
    (1, 600, 2, 2),
  ])
  func fusedEqualsComposed(shape: (Int, Int, Int, Int)) throws {
    let (b, n, d, heads) = shape
    let attention = try Attention(d, heads: heads)
    try randomize(attention, seed: UInt64(n))
    let x = try sampleTensor([b, n, d], seed: 7).requiringGrad()
    let y = x.detached().requiringGrad()
    let weights = try sampleTensor([b, n, d], seed: 9)
    let fused = try attention(x)
    let composedParameters = attention.namedParameters().map { ($0.name, $0.parameter.value) }
    try (fused * weights).sum().backward()
    let fusedGrads = attention.namedParameters().map { $0.parameter.grad }
    for (_, parameter) in attention.namedParameters() { parameter.grad = nil }
    let composed = try attention.composedAttention(y)
    try (composed * weights).sum().backward()
    expectClose(fused, composed, rtol: 1e-5, atol: 1e-6, "out \(shape)")
    expectClose(try #require(x.grad), try #require(y.grad), rtol: 1e-4, atol: 1e-6, "grad.x")
    for ((name, _), (fusedGrad, (_, parameter))) in zip(
      composedParameters, zip(fusedGrads, attention.namedParameters()))
    {
      expectClose(
        try #require(fusedGrad), try #require(parameter.grad), rtol: 1e-4, atol: 1e-6, name)
    }
  }

  /// Every plan of blocks and products, whatever this machine's OpenBLAS takes: whole
  /// sequences packed, 7-row blocks packed, 7-row blocks through transposed k and v (many
  /// blocks, k and v transposed once per head) and whole sequences transposed, against the
  /// composed ops, output and gradient.
  @Test(arguments: [(2, 530, 8, 2), (3, 45, 12, 3)])
  func everyPlanEqualsComposed(shape: (Int, Int, Int, Int)) throws {
    let (b, n, d, heads) = shape
    let qkv = try sampleTensor([b, n, 3 * d], seed: 5)
    let weights = try sampleTensor([b, n, d], seed: 6)
    let x = qkv.detached().requiringGrad()
    let composed = try Attention.composed(x, heads: heads)
    try (composed * weights).sum().backward()
    let plans: [(rows: Int, transposed: Bool)] = [(512, false), (7, false), (7, true), (n, true)]
    for plan in plans {
      let y = qkv.detached().requiringGrad()
      let fused = try Tensor.packedAttention(y, heads: heads, scale: nil, plan: plan)
      try (fused * weights).sum().backward()
      expectClose(fused, composed, rtol: 1e-5, atol: 1e-6, "out \(shape) \(plan)")
      expectClose(
        try #require(y.grad), try #require(x.grad), rtol: 1e-4, atol: 1e-6,
        "grad \(shape) \(plan)")
    }
  }

  @Test func fusedAttentionGradientsMatchFiniteDifferences() throws {
    try checkGradients([sampleTensor([2, 3, 12], seed: 3)], "packed attention") { t in
      try Tensor.packedAttention(t[0], heads: 2)
    }
  }

  @Test func extremeLogitsStayFinite() throws {
    // Rows with an offset of +80 overflow exp without the max subtraction.
    let qkv = try sampleTensor([1, 3, 6], seed: 1) * 40
    let out = try Tensor.packedAttention(qkv, heads: 1)
    #expect(out.scalars.allSatisfy { $0.isFinite })
    #expect(throws: TensorError.self) {
      try Tensor.packedAttention(Tensor.zeros([2, 3, 8]), heads: 3)
    }
  }
}
