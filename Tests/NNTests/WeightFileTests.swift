import Foundation
import NN
import TensorCore
import TestSupport
import Testing

/// PyTorch checkpoints written by `Tests/Data/torch/make_torch_files.py` (README there), read
/// with no Python; and our own safetensors round trips.
@Suite("Weight files", .timed)
struct WeightFileTests {
  static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Data/torch").path
  let expected: SafeTensors.File

  init() throws { expected = try SafeTensors.read(path: Self.folder + "/expected.safetensors") }

  func tinyEncoder(_ flavor: Flavor) throws -> Encoder {
    try Encoder(flavor: flavor, dimension: 16, depth: 1, heads: 2, frames: 8, joints: 5, segment: 4)
  }

  /// A PCM3 state dict (the official MoCo's names, from the pcm3_step_tiny fixture) gives its
  /// query encoder to a GRU encoder: `encoder_q.` taken, the projector dropped, strictly.
  @Test func aPCM3StateDictGivesItsQueryEncoder() throws {
    let path = TestData.fixtures + "/pcm3_step_tiny.safetensors"
    let encoder = try GRUEncoder(hidden: 8, layers: 2, frames: 8)
    let contents = try WeightFile.read(path: path).fitted(to: encoder)
    #expect(contents.notes.contains("took names under 'encoder_q.'"))
    #expect(contents.notes.contains { $0.hasPrefix("dropped the projector fc.*") })
    try encoder.loadWeights(path: path)
    let fixture = try SafeTensors.read(path: path)
    #expect(
      try encoder.stateDict().first { $0.name == "encoder.gru.weight_hh_l1_reverse" }?.tensor
        .scalars == fixture.tensor("encoder_q.encoder.gru.weight_hh_l1_reverse").scalars)
    // A transformer has no such names: strict loading lists them.
    #expect(throws: TensorError.self) { try tinyEncoder(.mamp).loadWeights(path: path) }
  }

  @Test func officialMampLinearProbeCheckpointLoadsAndPredictsAsPyTorch() throws {
    let path = Self.folder + "/mamp_linear_tiny.pth"
    let contents = try WeightFile.read(path: path)
    #expect(contents.notes == ["took 'model'", "stripped module."])
    #expect(contents.names.first == "temp_embed")
    let classifier = try Classifier(encoder: tinyEncoder(.mamp), classes: 3, head: .linear)
    try classifier.loadWeights(path: path)
    // The non-contiguous qkv weight was rebuilt from its strides, the float64 bias converted,
    // and BatchNorm's int64 counter read.
    let qkv = try #require(contents.state["blocks.0.attn.qkv.weight"])
    #expect(qkv.shape == [48, 16])
    #expect(try #require(contents.state["head.0.num_batches_tracked"]).scalars == [12])
    classifier.setTraining(false)
    let logits = try Autograd.noGrad { try classifier(expected.tensor("x5")) }
    expectClose(logits, try expected.tensor("logits"), rtol: 1e-5, atol: 1e-5, "logits")
  }

  @Test func skeleton2vecCheckpointMapsNamesAndChoosesTeacherOrStudent() throws {
    let path = Self.folder + "/s2v_tiny.pt"
    let teacher = try tinyEncoder(.skeleton2vec)
    // Strict loading of the whole (encoder + decoder) model into an encoder lists the decoder.
    let error = #expect(throws: TensorError.self) { try teacher.loadWeights(path: path) }
    #expect(error?.message.contains("unexpected decoder_blocks.0.attn.qkv.weight") == true)
    let skipped = try teacher.loadWeights(path: path, strict: false)
    #expect(
      skipped.allSatisfy { $0.hasPrefix("unexpected decoder") || $0 == "unexpected mask_token" })
    let x = try expected.tensor("x4")
    expectClose(
      try Autograd.noGrad { try teacher(x) }, try expected.tensor("teacher_tokens"), rtol: 1e-5,
      atol: 1e-5, "teacher (ema.model., the default)")
    let student = try tinyEncoder(.skeleton2vec)
    try student.loadWeights(path: path, strict: false, prefix: "auto_encoder.")
    expectClose(
      try Autograd.noGrad { try student(x) }, try expected.tensor("student_tokens"), rtol: 1e-5,
      atol: 1e-5, "student (auto_encoder.)")
    let notes = try WeightFile.read(path: path).notes
    #expect(notes == ["took 'model'", "took 'sd'", "mapped Skeleton2vec names under 'ema.model.'"])
  }

  @Test func aMaliciousPickleIsRefusedWithoutRunningAnything() throws {
    let marker = "/tmp/skellab-pwned"
    try? FileManager.default.removeItem(atPath: marker)
    let error = #expect(throws: TensorError.self) {
      try WeightFile.read(path: Self.folder + "/malicious.pth")
    }
    #expect(
      error?.description
        == "[pth] \(Self.folder)/malicious.pth: refuses to load 'posix.system': a checkpoint may "
        + "hold only tensors, dicts, lists, tuples, strings and numbers (the file may be unsafe; "
        + "nothing was run)")
    #expect(!FileManager.default.fileExists(atPath: marker))
  }

  @Test func brokenAndForeignFilesGiveClearErrors() throws {
    let folder = FileManager.default.temporaryDirectory.path
    let junk = folder + "/skellab-junk-\(getpid()).pth"
    try Data("not a zip".utf8).write(to: URL(fileURLWithPath: junk))
    defer { try? FileManager.default.removeItem(atPath: junk) }
    let error = #expect(throws: TensorError.self) { try WeightFile.read(path: junk) }
    #expect(error?.description == "[pth] \(junk): not a zip archive (no end-of-directory record)")
    // A truncated checkpoint (its zip cut short) is rejected, not read as garbage.
    let whole = try Data(contentsOf: URL(fileURLWithPath: Self.folder + "/mamp_linear_tiny.pth"))
    try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: junk))
    #expect(throws: TensorError.self) { try WeightFile.read(path: junk) }
    let unknown = #expect(throws: TensorError.self) { try WeightFile.read(path: folder + "/w.bin") }
    #expect(unknown?.message.contains("unknown weight format") == true)
  }

  @Test func safetensorsRoundTripGivesIdenticalOutputs() throws {
    Random.seed(4)
    let encoder = try tinyEncoder(.mamp)
    let path =
      FileManager.default.temporaryDirectory.path + "/skellab-encoder-\(getpid()).safetensors"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try encoder.save(path: path)
    Random.seed(5)
    let copy = try tinyEncoder(.mamp)
    let x = try sampleTensor([2, 8, 5, 3], seed: 6)
    #expect(try copy(x).scalars != encoder(x).scalars)
    try copy.loadWeights(path: path)
    #expect(try copy(x).scalars == encoder(x).scalars)
    // No temporary file is left beside the target.
    let leftovers = try FileManager.default.contentsOfDirectory(
      atPath: FileManager.default.temporaryDirectory.path
    ).filter { $0.contains("skellab-encoder-\(getpid()).safetensors.tmp") }
    #expect(leftovers.isEmpty)
  }

  @Test func initialisationFollowsTheFlavours() throws {
    Random.seed(1)
    // Parameter counts of the paper-scale encoders (methods.md §2.3).
    let mamp = try Encoder(flavor: .mamp, dimension: 256, depth: 8, heads: 8, frames: 120)
    #expect(mamp.parameterCount == 6_336_000)
    let s2v = try Encoder(flavor: .skeleton2vec, dimension: 256, depth: 8, heads: 8, frames: 90)
    #expect(s2v.parameterCount == 6_339_328)
    // MAMP: Xavier-uniform Linears (bound √(6/(fan_in + fan_out))), zero biases.
    let fc1 = mamp.blocks[0].mlp.fc1.weight.value
    let bound = Float((6.0 / (256.0 + 1024.0)).squareRoot())
    #expect(try fc1.abs().max().item() <= bound)
    #expect(try fc1.abs().max().item() > 0.95 * bound)
    #expect(try mamp.blocks[0].mlp.fc1.bias?.value.abs().max().item() == 0)
    let embedBound = 1 / Float(12).squareRoot()
    #expect(try mamp.embedding.weight.value.abs().max().item() <= embedBound)
    // Skeleton2vec: truncated normal 0.02; the temporal embedding starts at zero; LayerScale 1e-4.
    let std = try s2v.blocks[0].attn.qkv.weight.value.standardDeviation().item()
    #expect(abs(std - 0.02) < 0.001)
    #expect(try s2v.tempEmbed.value.abs().max().item() == 0)
    #expect(try s2v.posEmbed.value.standardDeviation().item() > 0.015)
    #expect(s2v.blocks[0].gamma1?.value.scalars.allSatisfy { $0 == 1e-4 } == true)
    #expect(s2v.blocks[0].norm1.eps == 1e-6 && mamp.blocks[0].norm1.eps == 1e-5)
  }

  @Test func pooledFeatureAveragesTokensAndBodies() throws {
    Random.seed(2)
    let encoder = try tinyEncoder(.mamp)
    let x = try sampleTensor([3, 3, 8, 5, 2], seed: 3)
    let feature = try encoder.features(x)
    #expect(feature.shape == [3, 16])
    // By hand: body m of sample n is the sequence x[n, :, :, :, m] as [T, J, C].
    var manual: [Tensor] = []
    for n in 0..<3 {
      var bodies: [Tensor] = []
      for m in 0..<2 {
        let sequence = try x[.index(n), .all, .all, .all, .index(m)].permuted([1, 2, 0])
        bodies.append(try encoder(sequence.unsqueezed(axis: 0)).mean(axes: [0, 1]))
      }
      manual.append(try ((bodies[0] + bodies[1]) * 0.5))
    }
    expectClose(feature, try Tensor.stack(manual), rtol: 1e-5, atol: 1e-6, "features")
  }
}
