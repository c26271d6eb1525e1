import Foundation
import Optim
import TensorCore

/// What a protocol returns: named metrics (the main one is `accuracy`, a fraction in [0, 1],
/// or `mAP@0.5` for detection), per-epoch rows, and a small table to print.
public struct EvaluationResult: Sendable {
  public var name: String
  public var metrics: [(name: String, value: Double)]
  public var epochs: [[(name: String, value: Double)]] = []

  public init(name: String, metrics: [(name: String, value: Double)]) {
    self.name = name
    self.metrics = metrics
  }

  public subscript(metric: String) -> Double? { metrics.first { $0.name == metric }?.value }

  /// `name  metric value  metric value …` with 4 decimals.
  public var table: String {
    let width = max(metrics.map(\.name.count).max() ?? 0, 8)
    return
      ([name]
      + metrics.map {
        "  " + $0.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
          + String(format: "%.4f", $0.value)
      })
      .joined(separator: "\n")
  }

  /// Writes `result.json` and `epochs.jsonl` into `folder` (created if needed), atomically.
  public func write(to folder: String) throws {
    // The run folder is opened (checked, created, stale temporaries removed) as fit's is.
    let run = try RunFolder(folder, op: name)
    let result = "{\"protocol\": \"\(name)\", \"metrics\": \(Self.json(metrics))}\n"
    try AtomicFile.write(Data(result.utf8), to: run.resultPath, op: "evaluation")
    try writeEpochs(to: run)
  }

  /// Writes `epochs.jsonl`, one JSON object per epoch row, atomically.
  public func writeEpochs(to run: RunFolder) throws {
    let lines = epochs.map(Self.json).joined(separator: "\n") + (epochs.isEmpty ? "" : "\n")
    try AtomicFile.write(Data(lines.utf8), to: run.epochsPath, op: "evaluation")
  }

  /// A flat JSON object of numbers (non-finite ones as null), in Swift's shortest round-trip
  /// form.
  static func json(_ pairs: [(name: String, value: Double)]) -> String {
    "{"
      + pairs.map { "\"\($0.name)\": \($0.value.isFinite ? String($0.value) : "null")" }.joined(
        separator: ", ") + "}"
  }
}

/// How a protocol talks to its caller: progress lines and a stop check between batches
/// (Ctrl-C in the REPL).
public struct EvaluationContext: Sendable {
  public var progress: @Sendable (String) -> Void
  public var checkStop: @Sendable () throws -> Void
  /// Called after every training batch (a progress bar draws from it).
  public var batch: @Sendable (BatchProgress) -> Void

  public init(
    progress: @escaping @Sendable (String) -> Void = { _ in },
    checkStop: @escaping @Sendable () throws -> Void = {},
    batch: @escaping @Sendable (BatchProgress) -> Void = { _ in }
  ) {
    self.progress = progress
    self.checkStop = checkStop
    self.batch = batch
  }

  public static let silent = EvaluationContext()
}
