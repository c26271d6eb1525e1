import Distributed
import Foundation
import TensorCore

/// A training run's folder and every file in it: `config.json` (what the run is),
/// `metrics.jsonl` (one line per step, append-only), `checkpoint.safetensors` (the state at a
/// step) and `loss.svg`. Whole files are written through a temporary and a rename; the metrics
/// log only grows, and a resume cuts it back to the checkpoint's step, so the log and the
/// checkpoint always form one consistent unit: no step is missing or written twice.
public struct RunFolder: Sendable {
  /// What the run is: `identity` (the encoder and the method's configuration) must match to
  /// resume; `schedule` (epochs, learning rates, ...) may change between calls.
  public struct Config: Codable, Sendable, Equatable {
    public var identity: [String: String]
    public var schedule: [String: Double]

    public init(identity: [String: String], schedule: [String: Double]) {
      self.identity = identity
      self.schedule = schedule
    }

    /// Any key of a flat JSON object.
    struct Key: CodingKey {
      var stringValue: String
      var intValue: Int? { nil }
      init(stringValue: String) { self.stringValue = stringValue }
      init?(intValue: Int) { nil }
    }

    /// One flat JSON object, as the files of earlier versions: strings are the identity,
    /// numbers the schedule.
    public init(from decoder: Decoder) throws {
      let container = try decoder.container(keyedBy: Key.self)
      identity = [:]
      schedule = [:]
      for key in container.allKeys {
        if let text = try? container.decode(String.self, forKey: key) {
          identity[key.stringValue] = text
        } else {
          schedule[key.stringValue] = try container.decode(Double.self, forKey: key)
        }
      }
    }

    public func encode(to encoder: Encoder) throws {
      var container = encoder.container(keyedBy: Key.self)
      for (key, value) in identity { try container.encode(value, forKey: Key(stringValue: key)) }
      for (key, value) in schedule { try container.encode(value, forKey: Key(stringValue: key)) }
    }
  }

  /// One step of the metrics log.
  public struct Metric: Sendable, Equatable {
    public var step: Int
    /// 1-based, as printed.
    public var epoch: Int
    public var loss: Double
    public var lr: Double

    public init(step: Int, epoch: Int, loss: Double, lr: Double) {
      (self.step, self.epoch, self.loss, self.lr) = (step, epoch, loss, lr)
    }

    /// The line as written: numbers in Swift's shortest round-trip form, read back exactly.
    var line: String {
      "{\"step\": \(step), \"epoch\": \(epoch), \"loss\": \(loss), \"lr\": \(lr)}\n"
    }

    /// Parses one line written by `line`; nil when it is not one.
    public init?(parsing text: Substring) {
      let body = text.trimmingCharacters(in: .whitespaces)
      guard body.hasPrefix("{"), body.hasSuffix("}") else { return nil }
      var fields: [String: Substring] = [:]
      for field in body.dropFirst().dropLast().split(separator: ",") {
        let parts = field.split(separator: ":", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let key = parts[0].trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
        fields[key] = Substring(parts[1].trimmingCharacters(in: .whitespaces))
      }
      guard let step = fields["step"].flatMap({ Int($0) }), step >= 1,
        let epoch = fields["epoch"].flatMap({ Int($0) }), epoch >= 1,
        let loss = fields["loss"].flatMap({ Double($0) }), loss.isFinite,
        let lr = fields["lr"].flatMap({ Double($0) }), lr.isFinite
      else { return nil }
      self.init(step: step, epoch: epoch, loss: loss, lr: lr)
    }
  }

  public let path: String
  /// The operation named in errors (`fit`, `linear_probe`, ...).
  public let op: String

  public var configPath: String { path + "/config.json" }
  public var metricsPath: String { path + "/metrics.jsonl" }
  public var checkpointPath: String { path + "/checkpoint.safetensors" }
  public var plotPath: String { path + "/loss.svg" }
  /// An evaluation's result and its per-epoch rows.
  public var resultPath: String { path + "/result.json" }
  public var epochsPath: String { path + "/epochs.jsonl" }

  /// Opens the folder, creating it when missing, and removes the temporaries a killed run left
  /// (`.NAME.tmp-PID`). Throws naming the path when it is a file or cannot be created.
  ///
  /// In an MPI job only rank 0 creates, cleans and writes the folder; on the other ranks the
  /// writes return at once (their values are rank 0's).
  public init(_ path: String, op: String) throws {
    self.path = path
    self.op = op
    guard World.current.rank == 0 else { return }
    let files = FileManager.default
    var isDirectory: ObjCBool = false
    if files.fileExists(atPath: path, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else {
        throw TensorError(op, "run folder '\(path)' is a file, not a folder; choose another run=")
      }
    } else {
      do {
        try files.createDirectory(atPath: path, withIntermediateDirectories: true)
      } catch {
        throw TensorError(
          op,
          "cannot create the run folder '\(path)' (\(RunFolder.reason(error))); choose another run="
        )
      }
    }
    guard files.isWritableFile(atPath: path) else {
      throw TensorError(op, "run folder '\(path)' is not writable; choose another run=")
    }
    for name in (try? files.contentsOfDirectory(atPath: path)) ?? []
    where AtomicFile.isTemporary(name) {
      try? files.removeItem(atPath: path + "/" + name)
    }
  }

  static func reason(_ error: Error) -> String {
    if let error = error as? CocoaError, let underlying = error.underlying as? POSIXError {
      return String(cString: strerror(underlying.code.rawValue))
    }
    return (error as NSError).localizedFailureReason ?? error.localizedDescription
  }

  /// Whether a checkpoint is there to resume from.
  public var hasCheckpoint: Bool { FileManager.default.fileExists(atPath: checkpointPath) }

  /// The saved config, or nil when the folder has none; throws when it is not one.
  public func readConfig() throws -> Config? {
    guard let data = FileManager.default.contents(atPath: configPath) else { return nil }
    do {
      return try JSONDecoder().decode(Config.self, from: data)
    } catch {
      throw TensorError(
        op,
        "\(configPath) is not a flat JSON object of strings and numbers; resume=false starts "
          + "over in the folder, or choose another run=")
    }
  }

  /// A checkpoint resumes only the model and method that wrote it: each (key, value) of
  /// `identity` (the model and the method's configuration) must be what the folder's
  /// config.json holds. The schedule may change (more epochs continue a run); a key the folder
  /// lacks, from an older SkelLab, is not compared. The error names the folder, the keys and the
  /// ways out.
  public func checkIdentity(_ identity: [(String, String)]) throws {
    guard let old = try readConfig() else { return }
    try refuse(
      identity.map { key, now in (key, old.identity[key], now) }, "of another configuration")
  }

  /// The schedule values that decide which samples a step sees (the data's size, the batch,
  /// the seed) must be the folder's too: a checkpoint of another dataset is not continued.
  /// Keys the folder lacks are not compared.
  public func checkSchedule(_ values: [(String, Double)]) throws {
    guard let old = try readConfig() else { return }
    try refuse(
      values.map { key, now in (key, old.schedule[key].map(Self.number), Self.number(now)) },
      "on other data")
  }

  /// Throws naming the folder and every key whose saved value differs from this run's.
  private func refuse(_ pairs: [(key: String, there: String?, here: String)], _ what: String)
    throws
  {
    let differences = pairs.compactMap { key, there, here -> String? in
      guard let there, there != here else { return nil }
      return "\(key): \(there) there, \(here) here"
    }
    guard differences.isEmpty else {
      throw TensorError(
        op,
        "run folder \(path) holds a run \(what) (" + differences.joined(separator: "; ")
          + "); resume=false starts this one over in it, or choose another run=")
    }
  }

  static func number(_ x: Double) -> String {
    x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x)
  }

  public func write(_ config: Config) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let data: Data
    do {
      data = try encoder.encode(config)
    } catch {
      throw TensorError(op, "cannot encode the run's config: \(error)")
    }
    try AtomicFile.write(data + Data("\n".utf8), to: configPath, op: op)
  }

  /// The metrics log's steps up to `step`, in order. Lines after `step` (written before a kill
  /// that came ahead of their checkpoint) are cut from the file, so the run can write them
  /// again. A torn last line (a kill mid-write) is dropped; any other malformed line, a
  /// repeated or out-of-order step is an error naming the line.
  public func readMetrics(upTo step: Int) throws -> [Metric] {
    guard let data = FileManager.default.contents(atPath: metricsPath) else { return [] }
    let text = String(decoding: data, as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    var kept: [Metric] = []
    var cut = false
    for (number, line) in lines.enumerated() {
      if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
      guard let metric = Metric(parsing: line) else {
        if number == lines.count - 1 {  // no newline after it: a torn write
          cut = true
          break
        }
        throw TensorError(
          op,
          "\(metricsPath):\(number + 1): not a metrics line ('\(line.prefix(60))'); "
            + "resume=false starts the run over")
      }
      if let last = kept.last, metric.step <= last.step {
        throw TensorError(
          op,
          "\(metricsPath):\(number + 1): step \(metric.step) after step \(last.step); "
            + "resume=false starts the run over")
      }
      if metric.step > step {
        cut = true
        break
      }
      kept.append(metric)
    }
    if cut {
      try AtomicFile.write(
        Data(kept.map(\.line).joined().utf8), to: metricsPath, op: op)
    }
    return kept
  }

  /// Appends lines to the metrics log (flushed to disk before it returns).
  public func append(_ metrics: [Metric]) throws {
    guard !metrics.isEmpty, World.current.rank == 0 else { return }
    let files = FileManager.default
    if !files.fileExists(atPath: metricsPath) {
      guard files.createFile(atPath: metricsPath, contents: nil) else {
        throw TensorError(op, "cannot create \(metricsPath)")
      }
    }
    do {
      let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: metricsPath))
      defer { try? handle.close() }
      try handle.seekToEnd()
      try handle.write(contentsOf: Data(metrics.map(\.line).joined().utf8))
      try handle.synchronize()
    } catch {
      throw TensorError(op, "cannot append to \(metricsPath): \(RunFolder.reason(error))")
    }
  }

  /// Removes the run's files (resume=false over an old run).
  public func clear() throws {
    guard World.current.rank == 0 else { return }
    for file in [metricsPath, checkpointPath, plotPath, resultPath, epochsPath]
    where FileManager.default.fileExists(atPath: file) {
      do {
        try FileManager.default.removeItem(atPath: file)
      } catch {
        throw TensorError(op, "cannot remove \(file): \(RunFolder.reason(error))")
      }
    }
  }
}
