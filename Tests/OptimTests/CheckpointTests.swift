import Foundation
import NN
import Optim
import TensorCore
import TestSupport
import Testing

@Suite("Training checkpoints", .timed)
struct CheckpointTests {
  /// Two AdamW steps on a tiny encoder with a fixed batch.
  func train(_ encoder: Encoder, _ optimizer: Optimizer, steps: Int) throws {
    let x = try sampleTensor([2, 4, 3, 3], seed: 8)
    for _ in 0..<steps {
      optimizer.zeroGrad()
      let loss = try encoder(x).pow(2).mean()
      try loss.backward()
      try optimizer.step()
    }
  }

  func make(seed: UInt64) throws -> (Encoder, AdamW) {
    Random.seed(seed)
    let encoder = try Encoder(dimension: 8, depth: 1, heads: 2, segment: 2, frames: 4, joints: 3)
    let optimizer = try AdamW(
      groups: ParameterGroup.groups(encoder, weightDecay: 0.05), learningRate: 1e-2, beta2: 0.95)
    return (encoder, optimizer)
  }

  @Test func resumingContinuesExactlyAsAnUninterruptedRun() throws {
    // A stream of this test's own: suites run in parallel.
    try Random.withSeed(0) { try resuming() }
  }

  func resuming() throws {
    let path = FileManager.default.temporaryDirectory.path + "/skellab-ckpt-\(getpid()).safetensors"
    defer { try? FileManager.default.removeItem(atPath: path) }
    let (encoder, optimizer) = try make(seed: 1)
    try train(encoder, optimizer, steps: 2)
    Random.seed(42)
    try TrainingCheckpoint.save(path: path, model: encoder, optimizer: optimizer)
    let drawAfterSave = Random.withGenerator { $0.next() }
    try train(encoder, optimizer, steps: 1)

    let (resumed, resumedOptimizer) = try make(seed: 9)
    let metadata = try TrainingCheckpoint.restore(
      path: path, model: resumed, optimizer: resumedOptimizer)
    #expect(metadata["optimizer_step"] == "2")
    #expect(resumedOptimizer.stepCount == 2)
    #expect(Random.withGenerator { $0.next() } == drawAfterSave)  // the random stream resumes too
    try train(resumed, resumedOptimizer, steps: 1)
    for (a, b) in zip(encoder.namedParameters(), resumed.namedParameters()) {
      #expect(a.parameter.value.scalars == b.parameter.value.scalars, "\(a.name)")
    }
    // The file is also a plain state dict for other tools: optimiser state sits apart.
    let weights = try WeightFile.read(path: path)
    #expect(Set(weights.state.keys) == Set(encoder.namedParameters().map(\.name)))
  }

  @Test func restoringIntoTheWrongModelOrOptimiserFailsClearly() throws {
    let path =
      FileManager.default.temporaryDirectory.path + "/skellab-ckpt2-\(getpid()).safetensors"
    defer { try? FileManager.default.removeItem(atPath: path) }
    let (encoder, _) = try make(seed: 1)
    try TrainingCheckpoint.save(path: path, model: encoder)
    let (_, optimizer) = try make(seed: 2)
    let error = #expect(throws: TensorError.self) {
      try TrainingCheckpoint.restore(path: path, model: encoder, optimizer: optimizer)
    }
    #expect(error?.message.hasSuffix("holds no AdamW state (found none)") == true)
    let wider = try Encoder(dimension: 16, depth: 1, heads: 2, segment: 2, frames: 4, joints: 3)
    let mismatch = #expect(throws: TensorError.self) {
      try TrainingCheckpoint.restore(path: path, model: wider)
    }
    #expect(
      mismatch?.message.contains(
        "shape mismatch pos_embed: [1, 1, 3, 8] in the file, [1, 1, 3, 16] in the model") == true)
  }
}
