import Evaluation
import Foundation
import NN
import Optim
import SkeletonData
import TensorCore
import TestSupport
import Testing

/// The protocols on tiny data with known answers, and an end-to-end run on MSR Action3D.
@Suite("Evaluation protocols", .timed)
struct ProtocolTests {
  @Test func knnWithTheQueriesInTheGalleryIsPerfect() throws {
    let features = try sampleTensor([12, 6], seed: 1)
    let labels = (0..<12).map { $0 % 4 }
    let accuracy = try Protocols.knnAccuracy(
      gallery: features, galleryLabels: labels, queries: features, queryLabels: labels, ks: [1])
    #expect(accuracy == [1])
    // Ties go to the smallest label: k = 2 with neighbours of labels 3 and 1 votes 1.
    let gallery = try Tensor(shape: [2, 2], scalars: [1, 0.1, 1, -0.1])
    let tie = try Protocols.knnAccuracy(
      gallery: gallery, galleryLabels: [3, 1], queries: Tensor(shape: [1, 2], scalars: [1, 0]),
      queryLabels: [1], ks: [2])
    #expect(tie == [1])
  }

  @Test func probeOnLinearlySeparableFeaturesReachesFullAccuracy() throws {
    // Four classes at the corners of a square, with small noise.
    var g = RandomGenerator(seed: 2)
    func points(_ n: Int) throws -> (Tensor, [Int]) {
      let labels = (0..<n).map { $0 % 4 }
      let centres: [[Float]] = [[1, 1], [1, -1], [-1, 1], [-1, -1]]
      var values: [Float] = []
      for label in labels {
        for c in 0..<2 { values.append(centres[label][c] * 3 + Float(g.nextNormal()) * 0.2) }
      }
      return (try Tensor(shape: [n, 2], scalars: values), labels)
    }
    let train = try points(64)
    let test = try points(32)
    var options = Protocols.ProbeOptions()
    options.epochs = 20
    options.batch = 16
    let (result, _) = try Protocols.trainHead(
      classes: 4, dimension: 2, eps: 1e-5, test: test, options: options
    ) { _ in train }
    #expect(result["accuracy"] == 1)
    #expect(result["top5"] == 1)
    #expect(result.epochs.count == 20)
  }

  @Test func topKCountsTies() throws {
    let logits = try Tensor(shape: [2, 3], scalars: [0.1, 0.9, 0.5, 0.3, 0.3, 0.2])
    #expect(try topK(logits, labels: [2, 0], k: 1) == 0.5)
    #expect(try topK(logits, labels: [2, 0], k: 2) == 1)
  }

  @Test func averagePrecisionOnHandMadeDetections() throws {
    // Two ground truths; ranked detections hit, miss, hit: AP = 1·0.5 + (2/3)·0.5.
    let ap = Detection.averagePrecision(truePositives: [1, 0, 1], positives: 2)
    #expect(abs(ap - (0.5 + 2.0 / 3 * 0.5)) < 1e-12)
    #expect(Detection.averagePrecision(truePositives: [1, 1], positives: 2) == 1)
    #expect(Detection.averagePrecision(truePositives: [0, 0], positives: 1) == 0)
    // Inclusive-frame IoU: [0, 9] and [5, 14] overlap 5 of 15 frames.
    #expect(abs(Detection.intervalIoU((0, 9), (5, 14)) - 5.0 / 15) < 1e-12)
    #expect(Detection.intervalIoU((0, 4), (5, 9)) == 0)
    let truths = [(video: 0, label: 0, start: 0, end: 9), (video: 0, label: 1, start: 20, end: 29)]
    let detections = [
      (video: 0, label: 0, start: 1, end: 9, confidence: 0.9),  // IoU 0.9: hit
      (video: 0, label: 0, start: 0, end: 9, confidence: 0.8),  // the truth is claimed: miss
      (video: 0, label: 1, start: 25, end: 40, confidence: 0.7),  // IoU 5/21
    ]
    let strict = Detection.meanAveragePrecision(
      detections: detections, truths: truths, threshold: 0.5)
    #expect(abs(strict - 0.5) < 1e-12)  // class 0 AP 1, class 1 AP 0
    let loose = Detection.meanAveragePrecision(
      detections: detections, truths: truths, threshold: 0.1)
    #expect(abs(loose - 1) < 1e-12)
  }

  @Test func segmentsFromProbabilities() throws {
    // 60 frames: background, then class 2 for frames 20..<40, then background.
    var values: [Float] = []
    for t in 0..<60 {
      let action = (20..<40).contains(t)
      values += action ? [0.05, 0.05, 0.9] : [0.9, 0.05, 0.05]
    }
    let found = Detection.segments(probabilities: try Tensor(shape: [60, 3], scalars: values))
    #expect(found.count == 1)
    #expect(found.first?.label == 1)
    let (start, end) = (found.first?.start ?? 0, found.first?.end ?? 0)
    #expect(abs(start - 20) <= 3 && abs(end - 39) <= 3)
  }

  @Test func syntheticUntrimmedSequencesLabelEveryFrame() throws {
    let generator = try SyntheticSkeletons(
      seed: 3, subjects: 2, views: 1, repetitions: 1, frames: 32)
    let sequences = try Detection.syntheticSequences(generator, count: 2, actions: 3, seed: 1)
    for s in sequences {
      #expect(s.data.shape[1] == s.frameLabels.count)
      #expect(s.segments.count == 3 || s.segments.count == 2)  // equal neighbours merge
      #expect(s.frameLabels.first == 0 && s.frameLabels.last == 0)
    }
  }

  @Test func occlusionIsTheSameForEveryModelGivenASeed() throws {
    let ds = SkeletonDataset.synthetic(
      try SyntheticSkeletons(seed: 4, subjects: 1, views: 1, repetitions: 1, frames: 16))
    let view: [Augmentation] = [.centreCrop(window: 16, ratio: 1), .occludeParts(count: 2)]
    let a = try Loader(dataset: ds, batchSize: 4, shuffle: false, seed: 9, augmentations: view)
    let b = try Loader(dataset: ds, batchSize: 4, shuffle: false, seed: 9, augmentations: view)
    #expect(
      try a.batch(epoch: 0, index: 1, order: Array(0..<ds.count)).x.scalars
        == b.batch(epoch: 0, index: 1, order: Array(0..<ds.count)).x.scalars)
  }

  @Test(.heavy) func everyProtocolRunsOnMSRAction3DWithARandomEncoder() throws {
    let folder = TestData.msr
    let msr = try DatasetReaders.msr(folder: folder)
    let (train, test) = try msr.standardSplit("xsub")
    let encoder = try Random.withSeed(5) {
      try Encoder(dimension: 16, depth: 1, heads: 2, segment: 4, frames: 16, joints: 20)
    }
    var probe = Protocols.ProbeOptions()
    probe.epochs = 8
    probe.batch = 64
    probe.augment = false
    let (linear, _) = try Protocols.linearProbe(encoder, train: train, test: test, options: probe)
    let chance = 1.0 / 20
    #expect((linear["accuracy"] ?? 0) > 2 * chance, "linear probe \(linear.table)")
    let knn = try Protocols.knn(encoder, train: train, test: test, ks: [1, 5])
    #expect((knn["accuracy"] ?? 0) > 2 * chance, "knn \(knn.table)")
    var tune = Protocols.FinetuneOptions()
    tune.epochs = 1
    tune.batch = 32
    tune.hidden = 32
    let finetune = try Protocols.finetune(encoder, train: train, test: test, options: tune)
    #expect(finetune["accuracy"] != nil)
    let fewShot = try Protocols.fewShot(
      encoder, data: test, classes: Array(10..<20), ways: 5, shots: [1, 5], queries: 3, episodes: 20
    )
    #expect((fewShot["accuracy"] ?? 0) > 1.0 / 5, "few-shot \(fewShot.table)")
    let occluded = try Protocols.occluded(
      encoder, train: train, test: test, parts: [1], ratios: [0.5], options: probe)
    #expect(occluded["parts1"] != nil && occluded["temporal0.5"] != nil)
    // The caller's encoder is unchanged by fine-tuning (it works on a copy).
    let before = encoder.stateDict().map(\.tensor.scalars)
    _ = try Protocols.finetune(
      encoder, train: try train.fraction(0.2, seed: 1), test: test, options: tune)
    #expect(encoder.stateDict().map(\.tensor.scalars) == before)
  }
}

@Suite("Evaluation loop and tables", .timed)
struct LoopTests {
  @Test func fewShotWithIdenticalSupportAndQueryIsPerfect() throws {
    let support = try Loss.normalized(sampleTensor([10, 8], seed: 3))
    let labels = (0..<10).map { $0 % 5 }
    let accuracy = try Protocols.episodeAccuracy(
      support: support, supportLabels: labels, query: support, queryLabels: labels, ways: 5)
    #expect(accuracy == 1)
  }

  @Test func aNonFiniteLossStopsWithAClearError() throws {
    let w = Parameter(Tensor([1]))
    let optimizer = try SGD(
      groups: [ParameterGroup(names: ["w"], parameters: [w], weightDecay: 0)], learningRate: 0.1)
    let loop = SupervisedLoop(name: "probe", epochs: 2, optimizer: optimizer, context: .silent) {
      _, _ in 0.1
    }
    let error = #expect(throws: TensorError.self) {
      _ = try loop.run(batchesPerEpoch: 1) { epoch, _, step in
        try step(nil) {
          epoch == 0 ? try (w.value * w.value).sum() : try (w.value * Float.nan).sum()
        }
      } evaluate: { _ in
        nil
      }
    }
    #expect(error?.message.hasPrefix("the loss became nan at epoch 2, batch 1") == true)
  }

  /// Every task through the one feature interface, for a transformer and for the PCM3 GRU.
  @Test(.heavy, arguments: ["transformer", "gru"])
  func benchmarkRunsEveryTaskAndWritesItsTables(backbone: String) throws {
    let ds = SkeletonDataset.synthetic(
      try SyntheticSkeletons(seed: 6, subjects: 4, views: 2, repetitions: 1, frames: 32))
    let (train, test) = try ds.standardSplit("xsub")
    let encoder: any SequenceEncoder = try Random.withSeed(7) {
      if backbone == "gru" { return try GRUEncoder(hidden: 8, layers: 2, frames: 16) }
      return try Encoder(dimension: 16, depth: 1, heads: 2, segment: 4, frames: 16, joints: 25)
    }
    let before = encoder.fingerprint()
    var options = Benchmark.Options()
    options.probe.epochs = 2
    options.probe.batch = 32
    options.probe.augment = false
    options.finetune.epochs = 1
    options.finetune.batch = 16
    options.finetune.hidden = 16
    options.parts = [1]
    options.ratios = [0.5]
    options.shots = [1]
    options.episodes = 5
    options.detectionSequences = (2, 1)
    options.detection.epochs = 2
    let rows = try Benchmark.run(encoder, train: train, test: test, options: options)
    let tasks = Set(rows.map(\.task))
    #expect(tasks.count == 7, "\(tasks)")
    #expect(rows.allSatisfy { $0.value >= 0 && $0.value <= 1 })
    // Probes freeze the encoder and fine-tuning works on a copy.
    #expect(encoder.fingerprint() == before)
    let folder =
      FileManager.default.temporaryDirectory.path + "/skellab-bench-\(getpid())-\(backbone)"
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try Benchmark.write(rows, to: folder)
    let markdown = try String(contentsOfFile: folder + "/benchmark.md", encoding: .utf8)
    #expect(markdown.hasPrefix("| task | metric | value |"))
    let csv = try String(contentsOfFile: folder + "/benchmark.csv", encoding: .utf8)
    #expect(csv.split(separator: "\n").count == rows.count + 1)
  }

  @Test(.heavy) func semiSupervisedAndTransferRun() throws {
    let msr = try DatasetReaders.msr(
      folder: TestData.msr)
    let (train, test) = try msr.standardSplit("xsub")
    // A 25-joint encoder evaluated on MSR's 20 joints: the layout is converted.
    let encoder = try Random.withSeed(8) {
      try Encoder(dimension: 16, depth: 1, heads: 2, segment: 4, frames: 16, joints: 25)
    }
    var probe = Protocols.ProbeOptions()
    probe.epochs = 6
    probe.batch = 64
    probe.augment = false
    let transfer = try Protocols.transfer(
      encoder, train: train, test: test, finetuning: false, probe: probe)
    #expect((transfer["accuracy"] ?? 0) > 0.1, "\(transfer.table)")
    var tune = Protocols.FinetuneOptions()
    tune.epochs = 1
    tune.batch = 16
    tune.hidden = 16
    let small = try Encoder(dimension: 16, depth: 1, heads: 2, segment: 4, frames: 16, joints: 20)
    let semi = try Protocols.semiSupervised(
      small, train: train, test: test, fraction: 0.1, repeats: 2, options: tune)
    #expect(semi["repeats"] == 2 && semi["std"] != nil)
    // The PCM3 GRU through the same interface: transfer from 25 joints, semi-supervised.
    let gru = try Random.withSeed(9) { try GRUEncoder(hidden: 8, layers: 1, frames: 16) }
    let gruTransfer = try Protocols.transfer(
      gru, train: train, test: test, finetuning: true, finetune: tune)
    #expect((gruTransfer["accuracy"] ?? -1) >= 0, "\(gruTransfer.table)")
    let gruSemi = try Protocols.semiSupervised(
      try GRUEncoder(hidden: 8, layers: 1, joints: 20, bodies: 1, frames: 16), train: train,
      test: test,
      fraction: 0.1, options: tune)
    #expect(gruSemi["repeats"] == 1)
  }
}

@Suite("Detection data", .timed)
struct DetectionDataTests {
  @Test func pkummdSequencesLabelTheirInstanceFrames() throws {
    let data = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .deletingLastPathComponent()
      .appendingPathComponent("Data/skeleton").path
    let root = FileManager.default.temporaryDirectory.path + "/skellab-pku-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: root) }
    try FileManager.default.createDirectory(
      atPath: root + "/skeleton", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(
      atPath: root + "/label", withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      atPath: data + "/pkummd_0002-L.txt", toPath: root + "/skeleton/0002-L.txt")
    try FileManager.default.copyItem(
      atPath: data + "/pkummd_0002-L_label.txt", toPath: root + "/label/0002-L.txt")
    let sequences = try Detection.pkummdSequences(
      skeletonFolder: root + "/skeleton", labelFolder: root + "/label")
    #expect(sequences.count == 1)
    let s = try #require(sequences.first)
    #expect(s.data.shape == [3, 80, 25, 2])
    // Rows "3,10,40" and "12,45,80": labels 3 on [10, 40), 12 on [45, 80), 0 elsewhere.
    #expect(s.frameLabels[9] == 0 && s.frameLabels[10] == 3 && s.frameLabels[39] == 3)
    #expect(s.frameLabels[40] == 0 && s.frameLabels[45] == 12 && s.frameLabels[79] == 12)
    #expect(s.segments.map(\.label) == [2, 11])
  }
}

/// A stop that fires at the `after`-th check (Ctrl-C, SIGTERM or SIGHUP as a protocol sees it).
final class StopAfter: @unchecked Sendable {
  // Sendable by use: the protocols call checkStop on the thread that runs them.
  var remaining: Int
  init(_ after: Int) { remaining = after }
  var context: EvaluationContext {
    EvaluationContext(checkStop: { [self] in
      remaining -= 1
      if remaining == 0 { throw TensorError("test", "stopped") }
    })
  }
}

@Suite("Resumable evaluation", .timed, .heavy)
struct ResumableEvaluationTests {
  let train: SkeletonDataset
  let test: SkeletonDataset
  let encoder: Encoder

  init() throws {
    let ds = SkeletonDataset.synthetic(
      try SyntheticSkeletons(seed: 8, subjects: 4, views: 2, repetitions: 1, frames: 16))
    (train, test) = try ds.standardSplit("xsub")
    encoder = try Random.withSeed(3) {
      try Encoder(dimension: 16, depth: 1, heads: 2, segment: 4, frames: 16, joints: 25)
    }
  }

  func rows(_ result: EvaluationResult) -> [[String]] {
    result.epochs.map { $0.map { "\($0.name)=\($0.value)" } }
  }

  /// A probe stopped mid-epoch (and one stopped in the features of a later epoch) resumes from
  /// its folder and ends bit-identical to one that never stopped; the folder holds no
  /// temporaries and its epochs.jsonl has every epoch once.
  @Test(arguments: [7, 17])
  func aStoppedProbeResumesExactly(stopAt: Int) throws {
    var options = Protocols.ProbeOptions()
    options.epochs = 4
    options.batch = 16
    let reference = try Protocols.linearProbe(encoder, train: train, test: test, options: options)
    let folder = try temporaryFolder("probe-resume-\(stopAt)")
    options.run = folder
    #expect(throws: TensorError.self) {
      _ = try Protocols.linearProbe(
        encoder, train: train, test: test, options: options, context: StopAfter(stopAt).context)
    }
    // Where it stopped: mid-epoch after two batches, or in a later epoch's features.
    let saved = try SafeTensors.read(path: folder + "/checkpoint.safetensors").metadata
    #expect([saved["epoch"], saved["batch"]] == (stopAt == 7 ? ["0", "2"] : ["2", "0"]))
    let resumed = try Protocols.linearProbe(encoder, train: train, test: test, options: options)
    #expect(rows(resumed.result) == rows(reference.result))
    #expect(resumed.result.metrics.map(\.value) == reference.result.metrics.map(\.value))
    #expect(
      resumed.head.stateDict().map(\.tensor.scalars)
        == reference.head.stateDict().map(\.tensor.scalars))
    let lines = try String(contentsOfFile: folder + "/epochs.jsonl", encoding: .utf8)
      .split(separator: "\n")
    #expect(lines.count == options.epochs)
    let left = try FileManager.default.contentsOfDirectory(atPath: folder)
    #expect(!left.contains { AtomicFile.isTemporary($0) }, "\(left)")
  }

  /// Fine-tuning with drop path (the random stream matters) stopped mid-epoch resumes exactly.
  @Test func aStoppedFinetuneResumesExactly() throws {
    var options = Protocols.FinetuneOptions()
    options.epochs = 2
    options.batch = 8
    options.hidden = 16
    options.dropPath = 0.2
    let reference = try Protocols.finetune(encoder, train: train, test: test, options: options)
    let folder = try temporaryFolder("finetune-resume")
    options.run = folder
    #expect(throws: TensorError.self) {
      _ = try Protocols.finetune(
        encoder, train: train, test: test, options: options, context: StopAfter(4).context)
    }
    let resumed = try Protocols.finetune(encoder, train: train, test: test, options: options)
    #expect(rows(resumed) == rows(reference))
    // A finished run called again returns its result without training.
    let again = try Protocols.finetune(
      encoder, train: train, test: test, options: options, context: StopAfter(1).context)
    #expect(rows(again) == rows(reference))
  }

  /// Another encoder (same shapes, other weights) does not resume the folder's run.
  @Test func anotherEncoderDoesNotResume() throws {
    var options = Protocols.ProbeOptions()
    options.epochs = 2
    options.batch = 16
    options.run = try temporaryFolder("probe-other")
    _ = try Protocols.linearProbe(encoder, train: train, test: test, options: options)
    let other = try Random.withSeed(4) {
      try Encoder(dimension: 16, depth: 1, heads: 2, segment: 4, frames: 16, joints: 25)
    }
    let error = #expect(throws: TensorError.self) {
      _ = try Protocols.linearProbe(other, train: train, test: test, options: options)
    }
    #expect(error?.message.contains("encoder_weights") == true)
    options.resume = false
    _ = try Protocols.linearProbe(other, train: train, test: test, options: options)
  }

  /// A checkpoint whose fields are not an evaluation's is refused, naming the file and field.
  @Test func aMalformedCheckpointIsAClearError() throws {
    var options = Protocols.ProbeOptions()
    options.epochs = 2
    options.batch = 16
    let folder = try temporaryFolder("probe-malformed")
    options.run = folder
    _ = try Protocols.linearProbe(encoder, train: train, test: test, options: options)
    let path = folder + "/checkpoint.safetensors"
    let file = try SafeTensors.read(path: path)
    var values: [String: SafeTensors.Value] = [:]
    for name in file.names { values[name] = .float32(try file.tensor(name)) }
    var metadata = file.metadata
    metadata["rows"] = "epoch=1,loss=x"
    try SafeTensors.write(values, to: path, metadata: metadata)
    let error = #expect(throws: TensorError.self) {
      _ = try Protocols.linearProbe(encoder, train: train, test: test, options: options)
    }
    #expect(error?.message.contains("'rows'") == true)
    #expect(error?.message.contains(path) == true)
  }
}
