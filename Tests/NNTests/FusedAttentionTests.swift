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

/// A transformer block run a sequence at a time without gradients (`Tensor.transformerBlock`)
/// against the composed forward that records them: the same bits, with and without LayerScale,
/// over sequences whose attention takes several query blocks and whose MLP takes several
/// chunks; and when it is chosen.
@Suite("Block by sequences", .timed)
struct BlockBySequencesTests {
  @Test(arguments: [(3, 300, 32, 4, false), (2, 530, 32, 2, true), (1, 7, 8, 2, true)])
  func blockBySequencesEqualsComposed(shape: (Int, Int, Int, Int, Bool)) throws {
    let (b, n, d, heads, layerScale) = shape
    let block = try Block(d, heads: heads, mlpRatio: 32, layerScale: layerScale ? 0.5 : nil)
    try randomize(block, seed: UInt64(n))
    let x = try sampleTensor([b, n, d], seed: 11, scale: 2).requiringGrad()
    let composed = try block(x)
    let proj = try block.attn.proj.scaled(block.gamma1?.value)
    let fc2 = try block.mlp.fc2.scaled(block.gamma2?.value)
    let parameters = BlockParameters(
      norm1: (block.norm1.weight.value, block.norm1.bias.value, block.norm1.eps),
      qkv: (block.attn.qkv.weight.value, block.attn.qkv.bias?.value), proj: proj,
      norm2: (block.norm2.weight.value, block.norm2.bias.value, block.norm2.eps),
      fc1: (block.mlp.fc1.weight.value, block.mlp.fc1.bias?.value), fc2: fc2, heads: heads)
    let fused = try Autograd.noGrad { try Tensor.transformerBlock(x.detached(), parameters) }
    #expect(fused.shape == [b, n, d])
    #expect(fused.scalars.map(\.bitPattern) == composed.scalars.map(\.bitPattern))
    // Through the module without gradients: whichever path it takes, the same bits.
    let inference = try Autograd.noGrad { try block(x.detached()) }
    #expect(inference.scalars.map(\.bitPattern) == composed.scalars.map(\.bitPattern))
    // A weight of the wrong shape is an error that names it.
    var wrong = parameters
    wrong.fc1 = (try sampleTensor([d * 32, d + 1], seed: 3), nil)
    let error = #expect(throws: TensorError.self) {
      try Tensor.transformerBlock(x.detached(), wrong)
    }
    #expect(error?.description.contains("fc1 weight [\(d * 32), \(d + 1)]") == true)
  }

  @Test func sequencesNeedAThreadEachAndLongRows() {
    #expect(!Tensor.blockBySequences(batch: 64, tokens: 200, width: 64, heads: 4))
    #expect(!Tensor.blockBySequences(batch: 0, tokens: 400, width: 128, heads: 4))
    #expect(!Tensor.blockBySequences(batch: 64, tokens: 400, width: 128, heads: 3))
  }
}
