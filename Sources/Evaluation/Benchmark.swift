import Foundation
import NN
import SkeletonData
import TensorCore

/// The survey's multi-task table in one call: recognition (linear probe and fine-tuning),
/// retrieval (KNN), occluded recognition (spatial and temporal), few-shot, and detection.
public enum Benchmark {
  public struct Options: Sendable {
    public var probe = Protocols.ProbeOptions()
    public var finetune = Protocols.FinetuneOptions()
    public var parts = [1, 2]
    public var ratios = [0.3, 0.5, 0.7]
    public var ways = 5
    public var shots = [1, 5]
    public var episodes = 100
    /// Untrimmed synthetic sequences for detection (train, test); 0 skips detection.
    public var detectionSequences = (train: 20, test: 10)
    public var detection = Detection.Options()
    public init() {}
  }

  /// One row of the table.
  public struct Row: Sendable {
    public let task: String
    public let metric: String
    public let value: Double
  }

  /// Runs every task on `train`/`test` (few-shot on the test set's last third of classes).
  public static func run(
    _ encoder: any SequenceEncoder, train: SkeletonDataset, test: SkeletonDataset,
    options: Options = .init(),
    context: EvaluationContext = .silent
  ) throws -> [Row] {
    var rows: [Row] = []
    func add(_ task: String, _ result: EvaluationResult, _ metrics: [String]) {
      for m in metrics {
        if let v = result[m] { rows.append(Row(task: task, metric: m, value: v)) }
      }
    }
    context.progress("benchmark: linear probe")
    add(
      "recognition (linear)",
      try Protocols.linearProbe(
        encoder, train: train, test: test, options: options.probe, context: context
      ).result, ["accuracy", "top5"])
    context.progress("benchmark: fine-tuning")
    add(
      "recognition (finetune)",
      try Protocols.finetune(
        encoder, train: train, test: test, options: options.finetune, context: context),
      ["accuracy", "top5"])
    context.progress("benchmark: retrieval")
    add(
      "retrieval (knn)",
      try Protocols.knn(encoder, train: train, test: test, ks: [1, 5], context: context),
      ["k1", "k5"])
    context.progress("benchmark: occlusion")
    let occluded = try Protocols.occluded(
      encoder, train: train, test: test, parts: options.parts, ratios: options.ratios,
      options: options.probe,
      context: context)
    let spatial = options.parts.compactMap { occluded["parts\($0)"] }
    let temporal = options.ratios.compactMap { occluded[String(format: "temporal%.1f", $0)] }
    rows.append(
      Row(
        task: "occluded (spatial)", metric: "accuracy",
        value: spatial.reduce(0, +) / Double(max(spatial.count, 1))))
    rows.append(
      Row(
        task: "occluded (temporal)", metric: "accuracy",
        value: temporal.reduce(0, +) / Double(max(temporal.count, 1))))
    let labels = Set(test.labels).sorted()
    let heldOut = Array(labels.suffix(max(options.ways, labels.count / 3)))
    context.progress("benchmark: few-shot on classes \(heldOut)")
    let fewShot = try Protocols.fewShot(
      encoder, data: test, classes: heldOut, ways: min(options.ways, heldOut.count),
      shots: options.shots,
      queries: 3, episodes: options.episodes, context: context)
    add(
      "few-shot (\(min(options.ways, heldOut.count))-way)", fewShot,
      options.shots.map { "\($0)shot" })
    if options.detectionSequences.train > 0, encoder.joints == 25 {
      context.progress("benchmark: detection on synthetic untrimmed sequences")
      let (trainSequences, testSequences) = try Detection.syntheticSplit(
        train: options.detectionSequences.train, test: options.detectionSequences.test, seed: 0)
      let detection = try Detection.run(
        encoder, train: trainSequences, test: testSequences,
        classes: SyntheticSkeletons.classes.count - SyntheticSkeletons.interactions,
        options: options.detection,
        context: context)
      add("detection (synthetic)", detection, ["mAP@0.1", "mAP@0.5"])
    }
    return rows
  }

  /// The table as Markdown.
  public static func markdown(_ rows: [Row]) -> String {
    "| task | metric | value |\n| --- | --- | --- |\n"
      + rows.map { "| \($0.task) | \($0.metric) | \(String(format: "%.4f", $0.value)) |" }.joined(
        separator: "\n") + "\n"
  }

  /// The table as CSV.
  public static func csv(_ rows: [Row]) -> String {
    "task,metric,value\n"
      + rows.map { "\"\($0.task)\",\($0.metric),\($0.value)" }.joined(separator: "\n") + "\n"
  }

  /// Writes `benchmark.md` and `benchmark.csv` into `folder`, atomically.
  public static func write(_ rows: [Row], to folder: String) throws {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try AtomicFile.write(Data(markdown(rows).utf8), to: folder + "/benchmark.md", op: "benchmark")
    try AtomicFile.write(Data(csv(rows).utf8), to: folder + "/benchmark.csv", op: "benchmark")
  }
}
