import Foundation
import NN
import Optim
import SSL
import SkeletonData
import TensorCore
import TestSupport
import Testing

@Suite("fit", .timed, .heavy)
struct FitTests {
  struct Stop: Error {}

  func setup(_ method: String) throws -> (Pretrainer, SkeletonDataset) {
    let data = SkeletonDataset.synthetic(
      try SyntheticSkeletons(seed: 1, subjects: 1, views: 1, repetitions: 1, frames: 12))
    let encoder = try Random.withSeed(3) {
      try Encoder(
        flavor: .skeleton2vec, dimension: 8, depth: 2, heads: 2, frames: 12, joints: 25, segment: 3)
    }
    if method.hasPrefix("pcm3") {
      let backbone: any SequenceEncoder =
        method.hasSuffix("transformer")
        ? encoder
        : try Random.withSeed(3) { try GRUEncoder(hidden: 4, layers: 1, frames: 12) }
      let trainer = try Random.withSeed(4) {
        try PCM3Trainer(
          encoder: backbone, layout: .kinectV2, dimension: 4, queue: 8, momentum: 0.9,
          prompt: 4, prediction: 4, clip: method.hasPrefix("pcm3pp") ? 0.5 : nil)
      }
      return (trainer, data)
    }
    let trainer: Pretrainer =
      method == "skeleton2vec"
      ? try Random.withSeed(4) {
        try Skeleton2vecTrainer(encoder: encoder, decoderDepth: 1, tau: 0.99)
      }
      : try Random.withSeed(4) {
        try MaskedPredictionTrainer(encoder: encoder, motion: method == "mamp")
      }
    return (trainer, data)
  }

  func options(_ run: String) -> FitOptions {
    var o = FitOptions()
    o.epochs = 2
    o.batch = 4
    o.run = run
    o.checkpointEvery = 2
    o.seed = 5
    return o
  }

  @Test(arguments: ["skeleton2vec", "mamp", "mae", "pcm3", "pcm3pp", "pcm3-transformer"])
  func aStoppedRunResumesBitIdentically(method: String) throws {
    let root = FileManager.default.temporaryDirectory.path + "/skellab-fit-\(getpid())-\(method)"
    defer { try? FileManager.default.removeItem(atPath: root) }
    let (whole, data) = try setup(method)
    var wholeState: FitState?
    let history = try Fit.run(
      whole, data: data, options: options(root + "/whole"), state: &wholeState)
    #expect(history.steps.count == 8)  // 17 samples, batch 4 (last dropped), 2 epochs
    #expect(history.steps.allSatisfy { $0.loss.isFinite })
    // Stopped at the 4th batch (after a checkpoint at step 2), then resumed: the same weights.
    let (stopped, _) = try setup(method)
    var seen = 0
    #expect(throws: Stop.self) {
      var state: FitState?
      _ = try Fit.run(stopped, data: data, options: options(root + "/stopped"), state: &state) {
        _ in
      } checkStop: {
        seen += 1
        if seen == 4 { throw Stop() }
      }
    }
    let (resumed, _) = try setup(method)
    var resumedState: FitState?
    let rest = try Fit.run(
      resumed, data: data, options: options(root + "/stopped"), state: &resumedState)
    // The history holds the two checkpointed steps read back from metrics.jsonl, then the rest.
    #expect(rest.steps.map(\.step) == Array(1...8))
    #expect(zip(rest.steps, history.steps).allSatisfy { $0.loss == $1.loss })
    for (a, b) in zip(whole.student.stateDict(), resumed.student.stateDict()) {
      #expect(a.tensor.scalars == b.tensor.scalars, "\(method) \(a.name)")
    }
    if let t1 = whole.teacher, let t2 = resumed.teacher {
      for (a, b) in zip(t1.stateDict(), t2.stateDict()) {
        #expect(a.tensor.scalars == b.tensor.scalars)
      }
    }
    let metrics = try String(contentsOfFile: root + "/stopped/metrics.jsonl", encoding: .utf8)
    #expect(metrics.split(separator: "\n").count == 8)
    #expect(FileManager.default.fileExists(atPath: root + "/whole/config.json"))
    let svg = try String(contentsOfFile: root + "/whole/loss.svg", encoding: .utf8)
    #expect(svg.hasPrefix("<svg") && svg.contains("<polyline") && svg.hasSuffix("</svg>\n"))
  }

  /// A run folder resumes only the configuration that wrote it: another one is an error naming
  /// the folder and the differing keys, before any weight is touched; resume=false starts over.
  @Test func aRunFolderOfAnotherConfigurationIsNotResumed() throws {
    let root = FileManager.default.temporaryDirectory.path + "/skellab-fit-config-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: root) }
    let (mamp, data) = try setup("mamp")
    var state: FitState?
    var o = options(root)
    o.epochs = 1
    _ = try Fit.run(mamp, data: data, options: o, state: &state)
    let (mae, _) = try setup("mae")
    let before = mae.student.stateDict().map(\.tensor.scalars)
    var other: FitState?
    let error = #expect(throws: TensorError.self) {
      _ = try Fit.run(mae, data: data, options: o, state: &other)
    }
    let message = error.map { "\($0)" } ?? ""
    #expect(
      message.contains(root) && message.contains("method: mamp there, mae here"), "\(message)")
    #expect(message.contains("resume=false"))
    #expect(mae.student.stateDict().map(\.tensor.scalars) == before)
    o.resume = false
    let history = try Fit.run(mae, data: data, options: o, state: &other)
    #expect(history.steps.count == 4)
    let config = try #require(try RunFolder(root, op: "test").readConfig())
    #expect(config.identity["method"] == "mae")
    #expect(config.identity["encoder"]?.hasPrefix("skeleton2vec dim 8") == true)
    #expect(config.schedule["epochs"] == 1)
    // A finished run on other data is not taken as this data's run.
    let smaller = try data.subset(Array(0..<13))
    let another = #expect(throws: TensorError.self) {
      _ = try Fit.run(mae, data: smaller, options: options(root), state: &other)
    }
    #expect("\(another.map { "\($0)" } ?? "")".contains("samples: 17 there, 13 here"))
  }

  /// A kill can land between the metrics append and the checkpoint (the log then runs past the
  /// checkpoint), in the middle of a line, or while a temporary is being written. Resuming
  /// gives every step exactly once, the same weights as an uninterrupted run, and no
  /// temporary left behind; `state.step` is the checkpoint's step from the start.
  @Test func aKilledRunResumesWithEveryStepOnce() throws {
    let root = FileManager.default.temporaryDirectory.path + "/skellab-fit-kill-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: root) }
    let (whole, data) = try setup("mamp")
    var wholeState: FitState?
    let history = try Fit.run(
      whole, data: data, options: options(root + "/whole"), state: &wholeState)
    // A run stopped after the checkpoint of step 4...
    let (stopped, _) = try setup("mamp")
    var seen = 0
    #expect(throws: Stop.self) {
      var state: FitState?
      _ = try Fit.run(stopped, data: data, options: options(root + "/killed"), state: &state) {
        _ in
      } checkStop: {
        seen += 1
        if seen == 5 { throw Stop() }
      }
    }
    let folder = try RunFolder(root + "/killed", op: "test")
    #expect(try folder.readMetrics(upTo: 100).map(\.step) == [1, 2, 3, 4])
    // ...then killed after appending steps 5 and 6 and half of 7, before their checkpoint,
    // with the temporaries of an unfinished checkpoint and metrics rewrite.
    try folder.append([
      RunFolder.Metric(step: 5, epoch: 2, loss: 9, lr: 0.1),
      RunFolder.Metric(step: 6, epoch: 2, loss: 9, lr: 0.1),
    ])
    let handle = try #require(FileHandle(forWritingAtPath: folder.metricsPath))
    try handle.seekToEnd()
    try handle.write(contentsOf: Data("{\"step\": 7, \"epo".utf8))
    try handle.close()
    for name in [".checkpoint.safetensors.tmp-123", ".metrics.jsonl.tmp-456"] {
      #expect(FileManager.default.createFile(atPath: folder.path + "/" + name, contents: Data([1])))
    }
    let (resumed, _) = try setup("mamp")
    var state: FitState?
    var messages: [String] = []
    let rest = try Fit.run(
      resumed, data: data, options: options(root + "/killed"), state: &state,
      progress: { messages.append($0) })
    #expect(messages.first?.hasSuffix("at step 4") == true, "\(messages)")
    #expect(rest.steps.map(\.step) == Array(1...8))
    #expect(rest.steps.map(\.loss) == history.steps.map(\.loss))
    let lines = try String(contentsOfFile: folder.metricsPath, encoding: .utf8)
      .split(separator: "\n")
    #expect(lines.compactMap { RunFolder.Metric(parsing: $0)?.step } == Array(1...8))
    #expect(lines.count == 8)
    let left = try FileManager.default.contentsOfDirectory(atPath: folder.path)
    #expect(!left.contains { $0.contains(".tmp-") }, "\(left)")
    for (a, b) in zip(whole.student.stateDict(), resumed.student.stateDict()) {
      #expect(a.tensor.scalars == b.tensor.scalars, "\(a.name)")
    }
    // A finished run resumed again does no step, and its state says where it is.
    let (again, _) = try setup("mamp")
    var finished: FitState?
    _ = try Fit.run(again, data: data, options: options(root + "/killed"), state: &finished)
    #expect(finished?.step == 8)
  }

  /// A broken run folder is an error that names the file and the way out, not a crash.
  @Test func aMalformedRunFolderIsAClearError() throws {
    let root = FileManager.default.temporaryDirectory.path + "/skellab-fit-broken-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: root) }
    let (trainer, data) = try setup("mae")
    var state: FitState?
    var o = options(root)
    o.epochs = 1
    _ = try Fit.run(trainer, data: data, options: o, state: &state)
    // A malformed line inside the log.
    let folder = try RunFolder(root, op: "test")
    var text = try String(contentsOfFile: folder.metricsPath, encoding: .utf8)
    text = text.replacingOccurrences(of: "{\"step\": 2,", with: "{\"step\": 1e400,")
    try text.write(toFile: folder.metricsPath, atomically: true, encoding: .utf8)
    var other: FitState?
    let (fresh, _) = try setup("mae")
    let error = #expect(throws: TensorError.self) {
      _ = try Fit.run(fresh, data: data, options: o, state: &other)
    }
    #expect(error?.message.contains("metrics.jsonl:2") == true, "\(String(describing: error))")
    // config.json that is not JSON.
    try "not json".write(toFile: folder.configPath, atomically: true, encoding: .utf8)
    let config = #expect(throws: TensorError.self) {
      _ = try Fit.run(fresh, data: data, options: o, state: &other)
    }
    #expect(config?.message.contains("config.json") == true)
    // A file where the folder should be.
    o.run = "/etc/passwd"
    let file = #expect(throws: TensorError.self) {
      _ = try Fit.run(fresh, data: data, options: o, state: &other)
    }
    #expect(
      file?.message == "run folder '/etc/passwd' is a file, not a folder; choose another run=")
    // Sizes that would overflow the step count.
    o.run = nil
    o.epochs = 1 << 62
    #expect(throws: TensorError.self) {
      _ = try Fit.run(fresh, data: data, options: o, state: &other)
    }
  }

  /// Ctrl-C in the REPL: the stopped fit keeps its optimiser and step in the trainer's state,
  /// and the same call continues in memory, ending bit-identical to an uninterrupted run.
  @Test(arguments: ["skeleton2vec", "mamp", "pcm3"])
  func aStoppedFitContinuesInMemory(method: String) throws {
    var plain = FitOptions()
    plain.epochs = 2
    plain.batch = 4
    plain.seed = 5
    let (whole, data) = try setup(method)
    var wholeState: FitState?
    let history = try Fit.run(whole, data: data, options: plain, state: &wholeState)
    #expect(wholeState?.finished == true)
    let (stopped, _) = try setup(method)
    var state: FitState?
    var seen = 0
    var steps: [Int] = []
    #expect(throws: Stop.self) {
      _ = try Fit.run(stopped, data: data, options: plain, state: &state) { _ in
      } onStep: {
        steps.append($0.step)
      } checkStop: {
        seen += 1
        if seen == 6 { throw Stop() }
      }
    }
    #expect(steps == [1, 2, 3, 4, 5])
    #expect(state?.step == 5 && state?.finished == false)
    var messages: [String] = []
    let rest = try Fit.run(stopped, data: data, options: plain, state: &state) {
      messages.append($0)
    }
    #expect(messages.first == "continuing \(stopped.name) at step 5 of 8")
    #expect(rest.steps.map(\.loss) == history.steps.map(\.loss))
    for (a, b) in zip(whole.student.stateDict(), stopped.student.stateDict()) {
      #expect(a.tensor.scalars == b.tensor.scalars, "\(method) \(a.name)")
    }
    // Other options start a new run (a new optimiser and schedule) on the trained weights.
    var longer = plain
    longer.epochs = 1
    let again = try Fit.run(stopped, data: data, options: longer, state: &state)
    #expect(again.steps.first?.step == 1 && state?.step == 4)
  }

  @Test func skeleton2vecChecksItsTubesAndSeesItsTeacherMove() throws {
    let encoder = try Encoder(
      flavor: .skeleton2vec, dimension: 8, depth: 1, heads: 2, frames: 12, joints: 25, segment: 3)
    #expect(throws: TensorError.self) {
      try Skeleton2vecTrainer(encoder: encoder, mask: .tube(ratio: 0.9, length: 3, motion: 0))
    }
    let trainer = try Skeleton2vecTrainer(encoder: encoder)
    // The teacher starts as an exact copy (§10.8).
    let teacher = try #require(trainer.teacher)
    for (a, b) in zip(trainer.student.stateDict(), teacher.stateDict()) {
      #expect(a.tensor.scalars == b.tensor.scalars)
    }
  }
}
