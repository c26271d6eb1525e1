import NN
import TensorCore
import TestSupport
import Testing

/// A Skeleton2vec student (encoder and decoder side by side, as in the checkpoints).
final class Student: Module {
  let encoder: Encoder
  let decoder: Decoder

  init(dimension: Int, depth: Int, decoderDepth: Int, heads: Int, frames: Int, segment: Int)
    throws
  {
    encoder = try Encoder(
      flavor: .skeleton2vec, dimension: dimension, depth: depth, heads: heads, frames: frames,
      segment: segment)
    decoder = try Decoder(
      encoderDimension: dimension, dimension: dimension, depth: decoderDepth, heads: heads,
      segments: frames / segment, joints: 25, head: .features(outputs: dimension),
      eps: Flavor.skeleton2vec.eps, layerScale: 1e-4, flavor: .skeleton2vec)
    super.init()
    child("", encoder)
    child("", decoder)
  }
}

@Suite("Decoder", .timed)
struct DecoderTests {
  @Test func skeleton2vecStudentReproducesThePyTorchPredictionLossAndGradients() throws {
    let fixture = try Fixture("s2v_step_tiny")
    let student = try Student(
      dimension: 32, depth: 2, decoderDepth: 1, heads: 4, frames: 16, segment: 4)
    var weights: [String: Tensor] = [:]
    var grads: [String: Tensor] = [:]
    for name in fixture.file.names {
      if name.hasPrefix("auto_encoder.") { weights[name] = try fixture.tensor(name) }
      if name.hasPrefix("grad.auto_encoder.") { grads[name] = try fixture.tensor(name) }
    }
    #expect(weights.count == 69)
    try student.load(Skeleton2vecNames.ourState(weights, prefix: "auto_encoder."))
    let expectedGrads = try Skeleton2vecNames.ourState(grads, prefix: "grad.auto_encoder.")
    #expect(expectedGrads.count == student.namedParameters().count)

    let keep = try fixture.tensor("ids_keep")
    let restore = try fixture.tensor("ids_restore")
    let visible = try student.encoder.forwardWithHidden(fixture.tensor("x"), keep: keep).tokens
    let prediction = try student.decoder(visible, restore: restore)
    expectClose(prediction, try fixture.tensor("pred"), rtol: 1e-5, atol: 1e-5, "pred")
    // Masked MSE over hidden tokens × channels against the teacher's targets.
    let mask = try fixture.tensor("mask").unsqueezed(axis: -1)
    let d = try prediction - fixture.tensor("target")
    let loss = try (d * d * mask).sum() * (1 / (try mask.sum().item() * 32))
    expectClose(loss, try fixture.tensor("loss"), rtol: 1e-5, atol: 1e-7, "loss")
    try loss.backward()
    for (name, parameter) in student.namedParameters() {
      let expected = try #require(expectedGrads[name], "grad of \(name)")
      let scale = maxAbsDifference(expected, Tensor.zeros(expected.shape))
      expectClose(
        try #require(parameter.grad, "grad of \(name)"), expected, rtol: 0,
        atol: 1e-5 * scale + 1e-8, "grad.\(name)")
    }
  }

  @Test func intendedRestorePutsEveryVisibleTokenBackAtItsPlace() throws {
    // Two sequences, 2 segments × 3 joints; each row keeps 1 token (methods.md §10.9).
    // rowRestore[t, j] is the rank of joint j in row t's shuffle: rank 0 is kept.
    let rowRestore = try Tensor(
      shape: [2, 2, 3], scalars: [2, 0, 1, 1, 2, 0, 0, 1, 2, 2, 1, 0])
    let intended = try Decoder.tubeRestoreIndex(
      rowRestore: rowRestore, keptPerRow: 1, mode: .intended)
    // Visible list: [row 0's kept token, row 1's kept token], then mask tokens from index 2.
    #expect(intended.scalars == [2, 0, 3, 4, 5, 1, 0, 2, 3, 4, 5, 1])
    // The reference's quirk: reshape [visible; masks] row-major to (TP, J), then permute rows.
    let reference = try Decoder.tubeRestoreIndex(
      rowRestore: rowRestore, keptPerRow: 1, mode: .referenceCompatible)
    #expect(reference.scalars == [2, 0, 1, 4, 5, 3, 0, 1, 2, 5, 4, 3])
    // Gathering [visible; masks] with the intended index: visible token (t, j) lands on
    // (t, j), every other position gets a mask token.
    let visible = try Tensor(shape: [2, 2, 1], scalars: [10, 11, 20, 21])
    let full = try Tensor.concat([visible, Tensor.full([2, 4, 1], -1)], axis: 1)
    let placed = try Tokens.select(full, intended)
    #expect(placed.scalars == [-1, 10, -1, -1, -1, 11, 20, -1, -1, -1, -1, 21])
  }

  @Test func decoderRejectsWrongShapes() throws {
    let decoder = try Decoder(
      encoderDimension: 4, dimension: 4, depth: 1, heads: 2, segments: 2, joints: 3,
      head: .motion(outputs: 12))
    #expect(decoder.namedParameters().last?.name == "decoder_pred.bias")
    let error = #expect(throws: TensorError.self) {
      try decoder(Tensor.zeros([1, 2, 4]), restore: Tensor.zeros([1, 5]))
    }
    #expect(
      error?.message
        == "expects visible tokens [B, K ≤ 6, D] and a restore index [B, 6], got [1, 2, 4] and [1, 5]"
    )
  }
}
