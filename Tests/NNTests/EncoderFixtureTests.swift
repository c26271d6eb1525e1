import NN
import TensorCore
import TestSupport
import Testing

@Suite("Encoder fixtures", .timed)
struct EncoderFixtureTests {
  @Test func jointEmbeddingMatchesTheConv2d() throws {
    let fixture = try Fixture("joint_embed")
    let embed = JointEmbedding(dimension: 16, segment: Int(try fixture.scalar("t_patch")))
    try embed.load(["weight": fixture.tensor("weight"), "bias": fixture.tensor("bias")])
    let x = try fixture.tensor("x").requiringGrad()
    let out = try embed(x)
    expectClose(out, try fixture.tensor("out"), "joint_embed out")
    try out.backward(gradient: fixture.tensor("grad_out"))
    expectClose(try #require(x.grad), try fixture.tensor("grad.x"), "grad.x")
    expectClose(try #require(embed.weight.grad), try fixture.tensor("grad.weight"), "grad.weight")
    expectClose(try #require(embed.bias.grad), try fixture.tensor("grad.bias"), "grad.bias")
  }

  @Test func tinyMampEncoderOutputsHiddenStatesAndEveryGradient() throws {
    let fixture = try Fixture("encoder_tiny")
    let encoder = try Encoder(
      dimension: 64, depth: 2, heads: 4, segment: 4, frames: 32, joints: 25,
      eps: Float(try fixture.scalar("eps")))
    let names = encoder.namedParameters().map(\.name)
    #expect(names.count == 30)
    // PyTorch's order: a module's own parameters before its children's.
    #expect(
      names.prefix(4) == [
        "pos_embed", "temp_embed", "joints_embed.proj.weight", "joints_embed.proj.bias",
      ])
    var state: [String: Tensor] = [:]
    for name in names { state[name] = try fixture.tensor(name) }
    try encoder.load(state)
    let x = try fixture.tensor("x").requiringGrad()
    let (tokens, hidden) = try encoder.forwardWithHidden(x)
    // Tiny encoders: outputs agree to about 2e-6 absolute (fixtures README).
    expectClose(tokens, try fixture.tensor("out"), rtol: 0, atol: 1e-5, "out")
    expectClose(hidden[0], try fixture.tensor("hidden.0"), rtol: 1e-5, atol: 1e-5, "hidden.0")
    expectClose(hidden[1], try fixture.tensor("hidden.1"), rtol: 1e-5, atol: 1e-5, "hidden.1")
    try tokens.backward(gradient: fixture.tensor("grad_out"))
    expectClose(try #require(x.grad), try fixture.tensor("grad.x"), "grad.x")
    for (name, parameter) in encoder.namedParameters() {
      expectClose(try #require(parameter.grad), try fixture.tensor("grad." + name), "grad.\(name)")
    }
  }

  @Test func encoderRejectsWrongInputs() throws {
    let encoder = try Encoder(dimension: 8, depth: 1, heads: 2, segment: 4, frames: 8, joints: 5)
    let error = #expect(throws: TensorError.self) { try encoder(Tensor.zeros([1, 12, 5, 3])) }
    #expect(error?.description == "[encoder] expects [B, 8, 5, 3], got [1, 12, 5, 3]")
    #expect(throws: TensorError.self) {
      try Encoder(dimension: 8, depth: 1, heads: 2, segment: 3, frames: 8, joints: 5)
    }
  }
}

@Suite("Skeleton2vec names", .timed)
struct Skeleton2vecNamesTests {
  @Test func tinySkeleton2vecEncoderLoadsByNameAndMatches() throws {
    let fixture = try Fixture("encoder_tiny_s2v")
    var weights: [String: Tensor] = [:]
    var grads: [String: Tensor] = [:]
    for name in fixture.file.names
    where !["x", "out", "grad_out"].contains(name) && !name.hasPrefix("hidden.") {
      if name.hasPrefix("grad.") {
        if name != "grad.x" { grads[String(name.dropFirst(5))] = try fixture.tensor(name) }
      } else {
        weights[name] = try fixture.tensor(name)
      }
    }
    #expect(weights.count == 42)
    let state = try Skeleton2vecNames.ourState(weights)
    let expectedGrads = try Skeleton2vecNames.ourState(grads)
    let encoder = try Encoder(
      dimension: 64, depth: 2, heads: 4, segment: 4, frames: 32, joints: 25,
      eps: Float(try fixture.scalar("eps")), layerScale: 1e-4)
    try encoder.load(state)
    let x = try fixture.tensor("x").requiringGrad()
    let (tokens, hidden) = try encoder.forwardWithHidden(x)
    expectClose(tokens, try fixture.tensor("out"), rtol: 0, atol: 1e-5, "out")
    expectClose(hidden[1], try fixture.tensor("hidden.1"), rtol: 1e-5, atol: 1e-5, "hidden.1")
    try tokens.backward(gradient: fixture.tensor("grad_out"))
    expectClose(try #require(x.grad), try fixture.tensor("grad.x"), "grad.x")
    for (name, parameter) in encoder.namedParameters() {
      expectClose(try #require(parameter.grad), try #require(expectedGrads[name]), "grad.\(name)")
    }
  }
}
