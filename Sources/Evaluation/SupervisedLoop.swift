import Distributed
import Foundation
import NN
import Optim
import TensorCore

/// The one supervised training loop of the probe, fine-tuning and detection: per batch it sets
/// the scheduled learning rate, stops with a clear error on a non-finite loss, steps the
/// optimiser and reports progress; between batches it honours Ctrl-C; after each epoch it
/// evaluates (top-1, top-5), keeps the last and best, and logs the epoch (about ten lines
/// for a long run).
///
/// With a run folder (`checkpoint`), the loop is resumable like `fit`: after every epoch, and when
/// anything stops it (Ctrl-C, SIGTERM, SIGHUP, an error), it writes a checkpoint of the batch
/// reached — the model, the optimiser, the epoch rows, the running loss and the random state —
/// and a later call with the same configuration continues from it, ending bit-identical to a
/// run that was never stopped.
public struct SupervisedLoop {
  public let name: String
  public let epochs: Int
  public let optimizer: Optimizer
  /// The learning rate of a global step, given the steps per epoch.
  public let schedule: (Int, Int) -> Double
  public let context: EvaluationContext
  /// Where the loop keeps its state, and what it keeps.
  public var checkpoint: Checkpoint?

  /// A loop's resumable state: `model` (whose parameters and buffers the optimiser trains) in
  /// `folder`, resumed only by a run whose `identity` (the protocol's configuration) matches.
  public struct Checkpoint {
    public let folder: RunFolder
    public let model: Module
    public let identity: [(String, String)]
    public let resume: Bool

    public init(folder: RunFolder, model: Module, identity: [(String, String)], resume: Bool) {
      (self.folder, self.model, self.identity, self.resume) = (folder, model, identity, resume)
    }
  }

  public init(
    name: String, epochs: Int, optimizer: Optimizer, context: EvaluationContext,
    schedule: @escaping (Int, Int) -> Double
  ) {
    self.name = name
    self.epochs = epochs
    self.optimizer = optimizer
    self.schedule = schedule
    self.context = context
  }

  /// Where a run stands: between batches of an epoch, with the rows of the epochs done.
  struct Position {
    var epoch = 0
    /// Batches of `epoch` done.
    var batch = 0
    var step = 0
    var total = 0.0
    var rows: [[(name: String, value: Double)]] = []
    /// The random state after the last batch (nil at an epoch's start, which reseeds).
    var random: [UInt64]?
  }

  /// Runs the epochs. `train(epoch, first, step)` calls `step(samples) { loss }` once per batch
  /// of that epoch (`batchesPerEpoch` of them), skipping its `first` batches (done before a
  /// resume) by their order alone; `step` checks for a stop before it computes the loss. With
  /// `samples` (the batch's) in an MPI job, the ranks share the batch out: `loss` computes this
  /// rank's share (`DataParallel.current`) and the gradients are summed over ranks; with nil,
  /// every rank computes the whole batch.
  /// `evaluate(epoch)` gives (top-1, top-5), or nil to skip.
  public func run(
    batchesPerEpoch: Int,
    train: (Int, Int, (Int?, () throws -> Tensor) throws -> Void) throws -> Void,
    evaluate: (Int) throws -> (top1: Double, top5: Double)?
  ) throws -> EvaluationResult {
    var at = try start()
    guard at.batch <= batchesPerEpoch else {
      throw TensorError(
        name,
        "\(checkpoint?.folder.checkpointPath ?? "the checkpoint") stopped at batch \(at.batch) of "
          + "an epoch of \(batchesPerEpoch); resume=false starts over")
    }
    var resumedRandom = at.random
    do {
      while at.epoch < epochs {
        let epoch = at.epoch
        try train(epoch, at.batch) { samples, loss in
          try context.checkStop()
          if let random = resumedRandom {  // the first batch after a resume mid-epoch
            Random.state = random
            resumedRandom = nil
          }
          optimizer.learningRate = schedule(at.step, max(batchesPerEpoch, 1))
          let value = try GradientExchange.step(
            parameters: optimizer.groups.flatMap(\.parameters), samples: samples,
            group: World.current, op: name, loss: loss)
          guard value.isFinite else {
            throw TensorError(
              name,
              "the loss became \(value) at epoch \(epoch + 1), batch \(at.batch + 1): lower the "
                + "learning rate or check the data for NaN/inf")
          }
          try optimizer.step()
          at.step += 1
          at.total += value
          at.batch += 1
          at.random = checkpoint == nil ? nil : Random.state
          context.batch(
            BatchProgress(
              phase: name, epoch: epoch, epochs: epochs, batch: at.batch - 1,
              batches: batchesPerEpoch, loss: value))
        }
        let meanLoss = at.total / Double(max(at.batch, 1))
        var row: [(name: String, value: Double)] = [
          ("epoch", Double(epoch + 1)), ("loss", meanLoss),
        ]
        var line = String(format: "%@ epoch %d/%d  loss %.4f", name, epoch + 1, epochs, meanLoss)
        if let scores = try evaluate(epoch) {
          row += [("top1", scores.top1), ("top5", scores.top5)]
          line += String(format: "  top1 %.4f  top5 %.4f", scores.top1, scores.top5)
        }
        at.rows.append(row)
        at = Position(epoch: epoch + 1, step: at.step, rows: at.rows)
        try save(at)
        // Every epoch's line up to 20 epochs; beyond, about ten of them and the last (a
        // 200-epoch probe would otherwise print 200 lines). Every epoch is in `epochs`.
        let every = epochs <= 20 ? 1 : epochs / 10
        if (epoch + 1) % every == 0 || epoch == 0 || epoch == epochs - 1 { context.progress(line) }
      }
    } catch {
      // Ctrl-C, SIGTERM, SIGHUP or an error: keep the batches done so far, then stop.
      if let checkpoint {
        do {
          try save(at)
          context.progress(
            "\(name) stopped at epoch \(at.epoch + 1), batch \(at.batch); saved "
              + checkpoint.folder.checkpointPath)
        } catch let saving {
          context.progress("\(name) could not save its checkpoint: \(saving)")
        }
      }
      throw error
    }
    return result(at.rows)
  }

  /// The result of the epoch rows: the last epoch's top-1/top-5 and the best ones.
  func result(_ rows: [[(name: String, value: Double)]]) -> EvaluationResult {
    var result = EvaluationResult(name: name, metrics: [])
    result.epochs = rows
    var best = (top1: 0.0, top5: 0.0, epoch: 0)
    var last: (top1: Double, top5: Double)?
    for row in rows {
      let value = { (key: String) in row.first { $0.name == key }?.value }
      guard let top1 = value("top1"), let top5 = value("top5") else { continue }
      last = (top1, top5)
      if top1 > best.top1 { best = (top1, top5, Int(value("epoch") ?? 0)) }
    }
    if let last {
      result.metrics = [
        ("accuracy", last.top1), ("top5", last.top5), ("best_accuracy", best.top1),
        ("best_top5", best.top5), ("best_epoch", Double(best.epoch)),
      ]
    }
    return result
  }

  // MARK: The checkpoint

  /// The position to start from: the folder's checkpoint when there is one to resume (its
  /// model and optimiser restored), else the beginning (the folder's old files removed).
  ///
  /// In an MPI job rank 0 alone reads the folder and sends the other ranks the checkpoint it
  /// resumed from (they need no shared file system).
  func start() throws -> Position {
    guard let checkpoint else { return Position() }
    let group = World.current
    guard group.size > 1 else { return try startHere(checkpoint).position }
    var position = Position()
    let resumed = try DataParallel.fromRoot(group, op: name) {
      let (at, bytes) = try startHere(checkpoint)
      position = at
      guard let bytes, at.step > 0 || at.epoch > 0 else { return [] }
      return Array(bytes)
    }
    guard group.rank != 0, !resumed.isEmpty else { return position }
    let metadata = try Random.withSeed(0) {
      try TrainingCheckpoint.restore(
        data: Data(resumed), model: checkpoint.model, optimizer: optimizer)
    }
    return try Self.position(metadata, path: "rank 0's checkpoint")
  }

  /// Resumes from the folder's checkpoint, or starts the folder afresh; returns the position
  /// and the checkpoint's bytes when it resumed (read once: an MPI job sends them on).
  func startHere(_ checkpoint: Checkpoint) throws -> (position: Position, resumed: Data?) {
    let folder = checkpoint.folder
    if checkpoint.resume, folder.hasCheckpoint {
      try folder.checkIdentity(checkpoint.identity)
      let bytes = try SafeTensors.bytes(path: folder.checkpointPath)
      // The checkpoint's random state is the loop's, not the caller's: restore it into a
      // scope of its own.
      let metadata = try Random.withSeed(0) {
        try TrainingCheckpoint.restore(
          data: bytes, name: folder.checkpointPath, model: checkpoint.model,
          optimizer: optimizer)
      }
      let at = try Self.position(metadata, path: folder.checkpointPath)
      context.progress(
        "resumed \(name) from \(folder.checkpointPath) at epoch \(min(at.epoch + 1, epochs)), "
          + "batch \(at.batch)")
      try writeConfig(folder)
      return (at, bytes)
    }
    try folder.clear()
    try writeConfig(folder)
    return (Position(), nil)
  }

  func writeConfig(_ folder: RunFolder) throws {
    guard let checkpoint else { return }
    try folder.write(
      RunFolder.Config(
        identity: Dictionary(checkpoint.identity, uniquingKeysWith: { a, _ in a }),
        schedule: ["epochs": Double(epochs)]))
  }

  /// Writes the checkpoint of `at`, then the epoch rows (a view of what the checkpoint holds).
  func save(_ at: Position) throws {
    guard let checkpoint else { return }
    var metadata = [
      "method": name, "epoch": String(at.epoch), "batch": String(at.batch),
      "step": String(at.step), "total": String(at.total),
      "rows": at.rows.map { row in row.map { "\($0.name)=\($0.value)" }.joined(separator: ",") }
        .joined(separator: ";"),
    ]
    if let random = at.random {
      metadata["loop_random"] = TrainingCheckpoint.randomText(random)
    }
    try TrainingCheckpoint.save(
      path: checkpoint.folder.checkpointPath, model: checkpoint.model, optimizer: optimizer,
      metadata: metadata)
    var view = EvaluationResult(name: name, metrics: [])
    view.epochs = at.rows
    try view.writeEpochs(to: checkpoint.folder)
  }

  /// Reads a position back from a checkpoint's metadata; throws naming the file and the field.
  static func position(_ metadata: [String: String], path: String) throws -> Position {
    func field<T>(_ key: String, _ parse: (String) -> T?) throws -> T {
      guard let text = metadata[key], let value = parse(text) else {
        throw TensorError(
          "checkpoint",
          "\(path): '\(key)' is '\(metadata[key] ?? "missing")', not what an evaluation "
            + "checkpoint holds; resume=false starts over")
      }
      return value
    }
    var at = Position()
    at.epoch = try field("epoch") { Int($0).flatMap { $0 >= 0 ? $0 : nil } }
    at.batch = try field("batch") { Int($0).flatMap { $0 >= 0 ? $0 : nil } }
    at.step = try field("step") { Int($0).flatMap { $0 >= 0 ? $0 : nil } }
    at.total = try field("total") { Double($0).flatMap { $0.isFinite ? $0 : nil } }
    at.rows = try field("rows") { text -> [[(name: String, value: Double)]]? in
      var rows: [[(name: String, value: Double)]] = []
      for row in text.split(separator: ";") {
        var pairs: [(name: String, value: Double)] = []
        for pair in row.split(separator: ",") {
          let parts = pair.split(separator: "=")
          guard parts.count == 2, let value = Double(parts[1]) else { return nil }
          pairs.append((String(parts[0]), value))
        }
        rows.append(pairs)
      }
      return rows.count == at.epoch ? rows : nil
    }
    if metadata["loop_random"] != nil {
      at.random = try field("loop_random", TrainingCheckpoint.randomState)
    }
    return at
  }
}
