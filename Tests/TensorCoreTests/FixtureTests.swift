import TensorCore
import TestSupport
import Testing

/// The op-level PyTorch fixtures of shared/fixtures whose ops live in TensorCore. Tolerance
/// from the fixtures README: `abs(a - e) <= 1e-5 · max|e| + 1e-6`.
@Suite("PyTorch fixtures", .timed)
struct FixtureTests {
  /// Runs `forward` on the fixture's inputs (as leaves), back-propagates `grad_out`, and
  /// compares `out` and every `grad.<name>`.
  func check(_ name: String, inputs: [String], forward: ([Tensor]) throws -> Tensor) throws {
    let fixture = try Fixture(name)
    let leaves = try inputs.map { try fixture.tensor($0).requiringGrad() }
    let out = try forward(leaves)
    expectClose(out, try fixture.tensor("out"), name + " out")
    try out.backward(gradient: fixture.tensor("grad_out"))
    for (input, leaf) in zip(inputs, leaves) {
      let grad = try #require(leaf.grad)
      expectClose(grad, try fixture.tensor("grad." + input), "\(name) grad.\(input)")
    }
  }

  @Test func linear() throws {
    try check("linear", inputs: ["x", "weight", "bias"]) { t in
      try t[0].matmul(t[1].transposed()) + t[2]
    }
  }

  @Test func layerNorm() throws {
    let eps = Float(try Fixture("layer_norm").scalar("eps"))
    try check("layer_norm", inputs: ["x", "weight", "bias"]) { t in
      try t[0].layerNorm(weight: t[1], bias: t[2], eps: eps)
    }
  }

  @Test func gelu() throws {
    try check("gelu", inputs: ["x"]) { t in t[0].gelu() }
  }

  @Test func softmax() throws {
    try check("softmax", inputs: ["x"]) { t in try t[0].softmax(axis: -1) }
  }

  /// A loss case: scalar `loss` and `grad.pred`.
  func checkLoss(_ name: String, loss: (Tensor, Tensor) throws -> Tensor) throws {
    let fixture = try Fixture(name)
    let pred = try fixture.tensor("pred").requiringGrad()
    let value = try loss(pred, fixture.tensor("target"))
    expectClose(value, try fixture.tensor("loss"), name + " loss")
    try value.backward()
    expectClose(try #require(pred.grad), try fixture.tensor("grad.pred"), name + " grad.pred")
  }

  @Test func mse() throws {
    try checkLoss("mse") { pred, target in try (pred - target).pow(2).mean() }
  }

  @Test(arguments: ["smooth_l1", "smooth_l1_beta0.5"])
  func smoothL1(case name: String) throws {
    let beta = Float(try Fixture(name).scalar("beta"))
    try checkLoss(name) { pred, target in
      let d = try pred - target
      let small = d.pow(2) * (0.5 / beta)
      let large = d.abs() - 0.5 * beta
      return try Tensor.where(Tensor.less(d.abs(), Tensor(beta)), small, large).mean()
    }
  }
}
