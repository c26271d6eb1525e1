import Distributed
import Foundation
import NN
import Optim
import SkeletonData
import TensorCore

/// What a pretraining run did: per-step loss and learning rate, per-epoch summaries.
public struct History: Sendable {
  public var steps: [(step: Int, epoch: Int, loss: Double, lr: Double)] = []
  public var epochs: [(epoch: Int, loss: Double, seconds: Double, samplesPerSecond: Double)] = []

  public init() {}

  /// The steps as text (`step epoch loss lr` per line, exact), for sending between processes.
  var text: String {
    steps.map { "\($0.step) \($0.epoch) \($0.loss) \($0.lr)" }.joined(separator: "\n")
  }

  /// The steps `text` wrote (lines that do not hold four numbers are skipped).
  init(text: String) {
    for line in text.split(separator: "\n") {
      let fields = line.split(separator: " ")
      guard fields.count == 4, let step = Int(fields[0]), let epoch = Int(fields[1]),
        let loss = Double(fields[2]), let lr = Double(fields[3])
      else { continue }
      steps.append((step, epoch, loss, lr))
    }
  }

  /// A one-line sparkline of the per-step loss (at most `width` characters).
  public func sparkline(width: Int = 40) -> String {
    let losses = steps.map(\.loss)
    guard let low = losses.min(), let high = losses.max(), !losses.isEmpty else { return "" }
    let bars = Array("▁▂▃▄▅▆▇█")
    let bucket = max(1, (losses.count + width - 1) / width)
    return stride(from: 0, to: losses.count, by: bucket).map { start in
      let slice = losses[start..<min(start + bucket, losses.count)]
      let mean = slice.reduce(0, +) / Double(slice.count)
      let level = high > low ? Int((mean - low) / (high - low) * Double(bars.count - 1)) : 0
      return String(bars[level])
    }.joined()
  }

  /// The per-step loss as a braille chart for the terminal, `width` × `height` characters,
  /// with the loss range on the left axis and the step range below.
  public func chart(width: Int = 60, height: Int = 12) -> String {
    let losses = steps.map(\.loss).filter(\.isFinite)
    guard let low = losses.min(), let high = losses.max(), width > 0, height > 0 else {
      return "(no steps)"
    }
    let (dotsX, dotsY) = (width * 2, height * 4)
    var dots = [[Bool]](repeating: [Bool](repeating: false, count: dotsX), count: dotsY)
    let span = high > low ? high - low : 1
    var previous: (Int, Int)?
    for (i, loss) in losses.enumerated() {
      let x = losses.count == 1 ? 0 : i * (dotsX - 1) / (losses.count - 1)
      let y = Int(((high - loss) / span * Double(dotsY - 1)).rounded())
      // Join to the previous point so that a steep drop stays a line.
      let (x0, y0) = previous ?? (x, y)
      let n = max(abs(x - x0), abs(y - y0), 1)
      for k in 0...n {
        let (px, py) = (x0 + (x - x0) * k / n, y0 + (y - y0) * k / n)
        dots[min(max(py, 0), dotsY - 1)][min(max(px, 0), dotsX - 1)] = true
      }
      previous = (x, y)
    }
    let bits = [[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]]
    let labels = (0..<height).map { row -> String in
      row == 0 ? String(format: "%.4g", high) : row == height - 1 ? String(format: "%.4g", low) : ""
    }
    let margin = labels.map(\.count).max() ?? 0
    var lines: [String] = []
    for row in 0..<height {
      var text = String(repeating: " ", count: margin - labels[row].count) + labels[row] + " ┤"
      for column in 0..<width {
        var code = 0
        for dy in 0..<4 {
          for dx in 0..<2 where dots[row * 4 + dy][column * 2 + dx] { code |= bits[dy][dx] }
        }
        text.unicodeScalars.append(Unicode.Scalar(0x2800 + code) ?? " ")
      }
      lines.append(text)
    }
    let first = steps.first?.step ?? 0
    let last = steps.last?.step ?? 0
    let axis =
      String(repeating: " ", count: margin + 1) + "└" + String(repeating: "─", count: width)
    let left = "step \(first)"
    let right = "\(last)"
    let gap = max(1, width + 2 - left.count - right.count)
    lines.append(axis)
    lines.append(
      String(repeating: " ", count: margin + 1) + left + String(repeating: " ", count: gap) + right)
    return "loss\n" + lines.joined(separator: "\n")
  }

  /// Loss (left axis, blue) and learning rate (right axis, orange) against steps as an SVG
  /// document with labelled ticks on both axes.
  public func svg(title: String = "") -> String {
    let (width, height) = (720.0, 360.0)
    let (left, right, top, bottom) = (70.0, 70.0, 40.0, 45.0)
    let losses = steps.map(\.loss)
    let rates = steps.map(\.lr)
    let first = Double(steps.first?.step ?? 0)
    let last = Double(steps.last?.step ?? 1)
    func x(_ step: Double) -> Double {
      left + (step - first) / max(last - first, 1) * (width - left - right)
    }
    func range(_ values: [Double]) -> (Double, Double) {
      let low = values.min() ?? 0
      let high = values.max() ?? 1
      return high > low ? (low, high) : (low - 0.5, high + 0.5)
    }
    func y(_ v: Double, _ r: (Double, Double)) -> Double {
      height - bottom - (v - r.0) / (r.1 - r.0) * (height - top - bottom)
    }
    func polyline(_ values: [Double], _ colour: String) -> String {
      let r = range(values)
      let points = zip(steps, values).map { s, v in
        String(format: "%.1f,%.1f", x(Double(s.step)), y(v, r))
      }
      return "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.5\" points=\""
        + points.joined(separator: " ") + "\"/>\n"
    }
    func ticks(_ values: [Double], at position: Double, anchor: String, _ colour: String) -> String
    {
      let r = range(values)
      return (0...4).map { i in
        let v = r.0 + (r.1 - r.0) * Double(i) / 4
        return String(
          format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%@\" fill=\"%@\">%.3g</text>\n",
          position, y(v, r) + 4, anchor, colour, v)
      }.joined()
    }
    let stepTicks = (0...4).map { i in
      let step = first + (last - first) * Double(i) / 4
      return String(
        format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", x(step),
        height - bottom + 16, Int(step.rounded()))
    }.joined()
    let frame = String(
      format:
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#999\"/>\n",
      left, top, width - left - right, height - top - bottom)
    var svg = String(
      format:
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n",
      Int(width), Int(height))
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n" + frame
    svg +=
      "<text x=\"\(left)\" y=\"20\" font-size=\"13\">\(title.isEmpty ? "pretraining" : title)</text>\n"
    svg += "<text x=\"\(left)\" y=\"34\" fill=\"#1f77b4\">loss</text>\n"
    svg += "<text x=\"\(width - right)\" y=\"34\" text-anchor=\"end\" fill=\"#ff7f0e\">lr</text>\n"
    svg += String(
      format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n", width / 2,
      height - 8)
    guard !steps.isEmpty else { return svg + "</svg>\n" }
    svg += stepTicks + ticks(losses, at: left - 6, anchor: "end", "#1f77b4")
    svg += ticks(rates, at: width - right + 6, anchor: "start", "#ff7f0e")
    return svg + polyline(losses, "#1f77b4") + polyline(rates, "#ff7f0e") + "</svg>\n"
  }
}

/// What a `fit` leaves behind so that calling it again with the same options continues where it
/// stopped (Ctrl-C in the REPL): the optimiser, the step and the history so far.
///
/// Sendable by use: `Fit.run` changes it on the thread that calls it, and a script's trainer
/// (which holds it) lives on the interpreter's thread.
public final class FitState: @unchecked Sendable {
  public let optimizer: Optimizer
  public internal(set) var step = 0
  public internal(set) var history = History()
  let signature: String
  let totalSteps: Int

  init(optimizer: Optimizer, signature: String, totalSteps: Int) {
    self.optimizer = optimizer
    self.signature = signature
    self.totalSteps = totalSteps
  }

  /// True when the run it belongs to has done all its steps.
  public var finished: Bool { step >= totalSteps }
}

/// The options of `fit` (methods.md §9: AdamW β (0.9, 0.95), warm-up + cosine per iteration).
public struct FitOptions: Sendable {
  public var epochs = 10
  public var batch = 16
  public var learningRate = 1e-3
  public var minimumLearningRate = 1e-5
  public var warmupEpochs = 1.0
  /// Step decay ×0.1 at these epochs instead of the cosine (PCM3's recipe); nil: cosine.
  public var milestones: [Double]?
  /// The optimiser; nil: the trainer's recipe (`Pretrainer.optimizerKind`).
  public var optimizer: OptimizerKind?
  public var weightDecay: Float = 0.05
  public var seed: UInt64 = 0
  /// A folder for config.json, metrics.jsonl and checkpoint.safetensors; nil keeps nothing.
  public var run: String?
  /// Continue from the run folder's checkpoint when there is one.
  public var resume = true
  /// Write the checkpoint every this many steps (and at the end).
  public var checkpointEvery = 100
  /// Augmentations of the training batches.
  public var augmentations: [Augmentation] = []
  public init() {}
}

/// The pretraining loop: AdamW with the §9.1 weight-decay groups, the warm-up + cosine schedule
/// per iteration, optional clipping, the trainer's after-step hook (EMA), a NaN/inf stop that
/// names the step, Ctrl-C between batches, and exact resume: masks and augmentations are keyed
/// by (seed, step) and (seed, epoch, sample), and the checkpoint holds the student, the teacher,
/// the optimiser, the step and the loader position, so a resumed run ends bit-identical.
public enum Fit {
  /// The checkpoint's model: the student's names, the teacher's under `teacher.`.
  final class CheckpointModel: Module {
    init(student: Module, teacher: Module?) {
      super.init()
      child("", student)
      if let teacher { child("teacher", teacher) }
    }
  }

  /// Trains `trainer` on `data`. `state` carries an unfinished run between calls: when it
  /// belongs to the same trainer options and data and has steps left, the run continues from
  /// it (in memory, ahead of any checkpoint); otherwise a new one starts and `state` is
  /// replaced. `progress` gets messages (resume, epoch summaries), `onStep` every step.
  public static func run(
    _ trainer: Pretrainer, data: SkeletonDataset, options: FitOptions,
    state: inout FitState?,
    progress: (String) -> Void = { _ in }, onStep: (BatchProgress) -> Void = { _ in },
    checkStop: () throws -> Void = {}
  ) throws -> History {
    defer { BufferCache.empty() }  // the run's buffers are not the next statement's
    let loader = try Loader(
      dataset: data, batchSize: options.batch, shuffle: true, seed: options.seed,
      dropLast: data.count > options.batch, augmentations: options.augmentations,
      views: trainer.views)
    try trainer.validate(data, batch: options.batch)
    let group = World.current
    let perEpoch = loader.batchesPerEpoch
    guard perEpoch > 0 else {
      throw TensorError("fit", "no batches: \(data.count) samples, batch \(options.batch)")
    }
    guard options.epochs >= 1, options.checkpointEvery >= 1 else {
      throw TensorError(
        "fit",
        "epochs (\(options.epochs)) and checkpoint_every (\(options.checkpointEvery)) must be "
          + "at least 1")
    }
    let (totalSteps, overflow) = perEpoch.multipliedReportingOverflow(by: options.epochs)
    guard !overflow, totalSteps <= maximumSteps else {
      throw TensorError(
        "fit",
        "\(options.epochs) epochs of \(perEpoch) steps is more than \(maximumSteps) steps")
    }
    let kind = options.optimizer ?? trainer.optimizerKind
    let milestones = options.milestones.map { "\($0)" } ?? "cosine"
    let signature =
      "\(options.epochs) \(options.batch) \(options.learningRate) \(options.minimumLearningRate) "
      + "\(options.warmupEpochs) \(options.weightDecay) \(options.seed) \(data.count) "
      + "\(kind.description) \(milestones) " + (options.run ?? "")
    let continuing: FitState? =
      if let state, state.signature == signature, !state.finished { state } else { nil }
    if group.size > 1 {
      // Every batch is shared by the ranks; a batch smaller than the job cannot be.
      let samples = min(options.batch, data.count)
      try DataParallel.checkShareable(batch: samples, by: group, op: "fit")
      let counts = group.shares(of: samples).map(\.count)
      if Set(counts).count > 1 {
        progress(
          "batch \(options.batch) does not divide by \(group.size) processes: they take "
            + counts.map(String.init).joined(separator: ", ")
            + " samples of each batch (the step is still the whole batch's)")
      }
    }
    func makeOptimizer() throws -> Optimizer {
      let groups = ParameterGroup.groups(
        trainer.student, weightDecay: options.weightDecay, exclusion: trainer.decayExclusion)
      switch kind {
      case .adamw:
        return try AdamW(
          groups: groups, learningRate: options.learningRate, beta1: 0.9, beta2: 0.95)
      case .sgd(let momentum):
        return try SGD(groups: groups, learningRate: options.learningRate, momentum: momentum)
      }
    }
    let current =
      try continuing
      ?? FitState(optimizer: makeOptimizer(), signature: signature, totalSteps: totalSteps)
    let optimizer = current.optimizer
    let schedule = FitSchedule(options: options)
    let checkpointModel = CheckpointModel(student: trainer.student, teacher: trainer.teacher)
    var step = current.step
    if continuing != nil {
      progress("continuing \(trainer.name) at step \(step) of \(totalSteps)")
    }
    var folder: RunFolder?
    func prepareFolder() throws {
      guard let folder else { return }
      // What the checkpoint belongs to (the encoder and the method); the schedule follows it.
      var identity = [("encoder", trainer.backbone.runIdentity)] + trainer.configuration
      // Recorded when they differ from the defaults (older run folders stay resumable).
      if kind != .adamw { identity.append(("optimizer", kind.description)) }
      if let m = options.milestones { identity.append(("milestones", "\(m)")) }
      if continuing == nil {
        if options.resume, folder.hasCheckpoint {
          try folder.checkIdentity(identity)
          try folder.checkSchedule([
            ("samples", Double(data.count)), ("batch", Double(options.batch)),
            ("seed", Double(options.seed)),
          ])
          let metadata = try TrainingCheckpoint.restore(
            path: folder.checkpointPath, model: checkpointModel, optimizer: optimizer)
          // A checkpoint past a shorter schedule counts as finished.
          guard let saved = Int(metadata["step"] ?? ""), saved >= 0, saved <= maximumSteps else {
            throw TensorError(
              "fit",
              "\(folder.checkpointPath) holds step '\(metadata["step"] ?? "none")', not a step "
                + "count; resume=false starts over")
          }
          step = saved
          current.history = History()
          for m in try folder.readMetrics(upTo: step) {
            current.history.steps.append((m.step, m.epoch - 1, m.loss, m.lr))
          }
          current.step = step
          progress("resumed \(trainer.name) from \(folder.checkpointPath) at step \(step)")
        } else {
          try folder.clear()  // a new run in this folder starts a new log
        }
      }
      try folder.write(
        RunFolder.Config(
          identity: Dictionary(identity, uniquingKeysWith: { a, _ in a }),
          schedule: [
            "epochs": Double(options.epochs), "batch": Double(options.batch),
            "lr": options.learningRate, "min_lr": options.minimumLearningRate,
            "warmup": options.warmupEpochs, "weight_decay": Double(options.weightDecay),
            "seed": Double(options.seed), "samples": Double(data.count),
          ]))
    }
    // The folder is opened (and checked) before any state changes; in an MPI job rank 0 alone
    // opens it and resumes, then sends every rank its state (also the start of a new run: the
    // ranks begin from rank 0's weights whatever their own start-up drew).
    func prepare() throws {
      folder = try options.run.map { try RunFolder($0, op: "fit") }
      try prepareFolder()
    }
    if group.size == 1 {
      try prepare()
    } else {
      let state = try DataParallel.fromRoot(group, op: "fit") {
        try prepare()
        return Array(
          try TrainingCheckpoint.encode(
            model: checkpointModel, optimizer: optimizer,
            metadata: ["step": String(step), "history": current.history.text]))
      }
      if group.rank != 0 {
        let metadata = try TrainingCheckpoint.restore(
          data: Data(state), model: checkpointModel, optimizer: optimizer)
        step = Int(metadata["step"] ?? "") ?? 0
        current.history = History(text: metadata["history"] ?? "")
        current.step = step
      }
    }
    state = current
    var pending: [RunFolder.Metric] = []
    /// The metrics up to the step, then the checkpoint of the step: a kill between the two
    /// leaves log lines past the checkpoint, which a resume cuts and recomputes.
    func save() throws {
      guard let folder else { return }
      try folder.append(pending)
      pending = []
      try TrainingCheckpoint.save(
        path: folder.checkpointPath, model: checkpointModel, optimizer: optimizer,
        metadata: ["step": String(step), "method": trainer.name])
      try AtomicFile.write(
        Data(current.history.svg(title: "\(trainer.name): \(folder.path)").utf8),
        to: folder.plotPath, op: "fit")
    }
    trainer.student.setTraining(true)
    try loader.resume(epoch: step / perEpoch, position: step % perEpoch)
    while step < totalSteps {
      let epoch = step / perEpoch
      let started = DispatchTime.now().uptimeNanoseconds
      var total = 0.0
      var count = 0
      var sequences = 0
      let batches = try loader.makeIterator()
      while let b = try batches.next() {
        var stop: Error?
        do {
          try checkStop()
        } catch {
          stop = error
        }
        if group.size > 1 {
          // The ranks stop together, at the same step (one of them may have seen the signal).
          var flag = [stop == nil ? 0.0 : 1]
          try group.allReduceMax(&flag)
          if flag[0] > 0, stop == nil {
            // mpirun signals every rank: this rank's signal may still be on its way (then it
            // stops as interrupted, like the others).
            let deadline = DispatchTime.now().uptimeNanoseconds + 2_000_000_000
            while stop == nil, DispatchTime.now().uptimeNanoseconds < deadline {
              do { try checkStop() } catch { stop = error }
              if stop == nil { usleep(10_000) }
            }
            if stop == nil { stop = TensorError("fit", "another process of the job was stopped") }
          }
        }
        if let stop {
          // Ctrl-C, SIGTERM or SIGHUP: keep the steps done so far, then stop.
          if folder != nil {
            try save()
            progress("stopped at step \(step) of \(totalSteps); saved \(folder!.checkpointPath)")
          }
          throw stop
        }
        let lr = schedule.learningRate(step: step, stepsPerEpoch: perEpoch)
        optimizer.learningRate = lr
        var generator = RandomGenerator(seed: Loader.mix(options.seed, UInt64(step), 3))
        // In an MPI job: this rank's samples of the whole batch's draws, the gradients summed
        // over ranks.
        let value = try GradientExchange.step(
          parameters: optimizer.groups.flatMap(\.parameters),
          samples: b.x.shape[0] / max(trainer.views.count, 1), group: group, op: "fit"
        ) { try trainer.loss(b.x, generator: &generator) }
        guard value.isFinite else {
          throw TensorError(
            "fit",
            "the loss became \(value) at step \(step + 1) (epoch \(epoch + 1)); the last good checkpoint "
              + (folder.map { "is \($0.checkpointPath)" } ?? "was not kept (no run folder)"))
        }
        if let clip = trainer.clipNorm {
          try clipGradientNorm(trainer.student.namedParameters().map(\.parameter), maxNorm: clip)
        }
        try optimizer.step()
        step += 1
        try trainer.afterStep(step, of: totalSteps)
        current.history.steps.append((step, epoch, value, lr))
        current.step = step
        pending.append(RunFolder.Metric(step: step, epoch: epoch + 1, loss: value, lr: lr))
        total += value
        count += 1
        sequences += b.x.shape[0]
        if step % options.checkpointEvery == 0 { try save() }
        onStep(
          BatchProgress(
            phase: trainer.name, epoch: epoch, epochs: options.epochs,
            batch: (step - 1) % perEpoch, batches: perEpoch, loss: value, lr: lr))
      }
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
      let mean = total / Double(max(count, 1))
      current.history.epochs.append(
        (epoch + 1, mean, seconds, Double(sequences) / max(seconds, 1e-9)))
      progress(
        String(
          format: "%@ epoch %d/%d  loss %.4f  lr %.2e  %.1f samples/s", trainer.name, epoch + 1,
          options.epochs, mean, schedule.learningRate(step: step, stepsPerEpoch: perEpoch),
          Double(sequences) / max(seconds, 1e-9)))
    }
    try save()
    return current.history
  }

  /// The most steps one `fit` may run (about 10^9: months of steps on any machine).
  public static let maximumSteps = 1 << 30
}

/// The learning rate of `fit`: linear warm-up over `warmup` epochs, then the cosine to
/// `min_lr` (methods.md §9.1) or, with milestones, ×0.1 at each (PCM3's recipe).
struct FitSchedule {
  let cosine: CosineSchedule
  let step: MultiStepSchedule?
  let warmup: Double

  init(options: FitOptions) {
    warmup = min(options.warmupEpochs, Double(options.epochs))
    cosine = CosineSchedule(
      base: options.learningRate, minimum: options.minimumLearningRate, warmupEpochs: warmup,
      epochs: Double(options.epochs))
    step = options.milestones.map { MultiStepSchedule(base: options.learningRate, milestones: $0) }
  }

  func learningRate(step s: Int, stepsPerEpoch: Int) -> Double {
    guard let step else { return cosine.learningRate(step: s, stepsPerEpoch: stepsPerEpoch) }
    let e = Double(s) / Double(max(stepsPerEpoch, 1))
    let rate = step.learningRate(epoch: e)
    return e < warmup ? rate * e / warmup : rate
  }
}
