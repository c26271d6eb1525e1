import Foundation
import NN
import TensorCore
import TestSupport
import Testing

/// Attention and transformer blocks against the PyTorch fixtures: outputs and the gradients
/// of the input and of every parameter, loaded by their state-dict names.
@Suite("Layer fixtures", .timed)
struct LayerFixtureTests {
  /// Parameter names of a fixture (role `param` in its sidecar).
  func parameterNames(_ name: String) throws -> [String] {
    let url = URL(fileURLWithPath: TestData.fixtures + "/\(name).json")
    let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
    let tensors = json?["tensors"] as? [String: [String: Any]] ?? [:]
    return tensors.filter { ($0.value["role"] as? String) == "param" }.map(\.key).sorted()
  }

  /// A fixture's parameter names, its parameters and their expected gradients, by name.
  func parameters(of fixture: Fixture) throws -> (
    names: [String], state: [String: Tensor], grads: [String: Tensor]
  ) {
    let names = try parameterNames(fixture.name)
    let state = try Dictionary(uniqueKeysWithValues: names.map { ($0, try fixture.tensor($0)) })
    let grads = try Dictionary(
      uniqueKeysWithValues: names.map { ($0, try fixture.tensor("grad." + $0)) })
    return (names, state, grads)
  }

  /// Loads `state`, runs `forward` on the fixture's `x`, back-propagates `grad_out`, and
  /// compares `out`, `grad.x` and the gradient of every module parameter.
  func check(
    _ name: String, module: Module, state: [String: Tensor], expectedGrads: [String: Tensor],
    forward: (Tensor) throws -> Tensor
  ) throws {
    let fixture = try Fixture(name)
    try module.load(state)
    let x = try fixture.tensor("x").requiringGrad()
    let out = try forward(x)
    expectClose(out, try fixture.tensor("out"), "\(name) out")
    // Without gradients (inference: the MLP a chunk of rows at a time), the same bits.
    let inference = try Autograd.noGrad { try forward(x.detached()) }
    #expect(
      inference.scalars.map(\.bitPattern) == out.scalars.map(\.bitPattern), "\(name) inference")
    try out.backward(gradient: fixture.tensor("grad_out"))
    expectClose(try #require(x.grad), try fixture.tensor("grad.x"), "\(name) grad.x")
    for (parameterName, parameter) in module.namedParameters() {
      guard let expected = expectedGrads[parameterName] else {
        fail("\(name): no expected gradient for \(parameterName)")
        continue
      }
      expectClose(try #require(parameter.grad), expected, "\(name) grad.\(parameterName)")
    }
  }

  @Test func attention() throws {
    let fixture = try Fixture("attention")
    let (_, state, grads) = try parameters(of: fixture)
    let module = try Attention(32, heads: Int(try fixture.scalar("num_heads")))
    #expect(
      module.namedParameters().map(\.name) == [
        "qkv.weight", "qkv.bias", "proj.weight", "proj.bias",
      ])
    try check("attention", module: module, state: state, expectedGrads: grads) { try module($0) }
  }

  @Test func mampBlock() throws {
    let fixture = try Fixture("block")
    let (names, state, grads) = try parameters(of: fixture)
    let block = try Block(32, heads: 4, eps: Float(try fixture.scalar("eps")))
    #expect(Set(block.namedParameters().map(\.name)) == Set(names))
    try check("block", module: block, state: state, expectedGrads: grads) { try block($0) }
  }

  @Test func skeleton2vecBlockWithSplitProjections() throws {
    // Skeleton2vec stores queries/keys/values separately; packed qkv is their concatenation
    // along the output axis, and its gradient splits the same way.
    let fixture = try Fixture("block_s2v")
    var state: [String: Tensor] = [:]
    var grads: [String: Tensor] = [:]
    for name in try parameterNames("block_s2v")
    where !name.contains("queries") && !name.contains("keys") && !name.contains("values") {
      state[name] = try fixture.tensor(name)
      grads[name] = try fixture.tensor("grad." + name)
    }
    for suffix in ["weight", "bias"] {
      let parts = ["queries", "keys", "values"]
      state["attn.qkv.\(suffix)"] = try Tensor.concat(
        parts.map { try fixture.tensor("attn.\($0).\(suffix)") }, axis: 0)
      grads["attn.qkv.\(suffix)"] = try Tensor.concat(
        parts.map { try fixture.tensor("grad.attn.\($0).\(suffix)") }, axis: 0)
    }
    let block = try Block(32, heads: 4, eps: Float(try fixture.scalar("eps")), layerScale: 1e-4)
    try check("block_s2v", module: block, state: state, expectedGrads: grads) { try block($0) }
  }

  @Test func strictLoadingListsEveryProblem() throws {
    let linear = Linear(3, 2)
    let error = #expect(throws: TensorError.self) {
      try linear.load(["weight": Tensor.zeros([2, 4]), "extra": Tensor.zeros([1])])
    }
    #expect(
      error?.message
        == "3 problem(s), nothing loaded: missing bias; unexpected extra; "
        + "shape mismatch weight: [2, 4] in the file, [2, 3] in the model")
    #expect(linear.weight.value.scalars == [0, 0, 0, 0, 0, 0])
    let skipped = try linear.load(["weight": Tensor.ones([2, 3])], strict: false)
    #expect(skipped == ["missing bias"])
    #expect(linear.weight.value.scalars == [1, 1, 1, 1, 1, 1])
    #expect(linear.weight.value.requiresGrad)
  }

  @Test func gradientsOfLayersMatchFiniteDifferences() throws {
    let block = try Block(8, heads: 2, layerScale: 0.5)
    var generator = RandomGenerator(seed: 3)
    var state: [String: Tensor] = [:]
    for (name, parameter) in block.namedParameters() {
      state[name] = try Tensor.randn(parameter.value.shape, generator: &generator) * 0.3
    }
    try block.load(state)
    let x = try sampleTensor([2, 3, 8], seed: 4)
    try checkGradients([x], "block input") { t in try block(t[0]) }
  }
}
