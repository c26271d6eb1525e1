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
public final class FitState: @unchecked Sendable {
  public let optimizer: AdamW
  public internal(set) var step = 0
  public internal(set) var history = History()
  let signature: String
  let totalSteps: Int

  init(optimizer: AdamW, signature: String, totalSteps: Int) {
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
    let loader = try Loader(
      dataset: data, batchSize: options.batch, shuffle: true, seed: options.seed,
      dropLast: data.count > options.batch, augmentations: options.augmentations)
    let perEpoch = loader.batchesPerEpoch
    guard perEpoch > 0 else {
      throw TensorError("fit", "no batches: \(data.count) samples, batch \(options.batch)")
    }
    let totalSteps = perEpoch * options.epochs
    let signature =
      "\(options.epochs) \(options.batch) \(options.learningRate) \(options.minimumLearningRate) "
      + "\(options.warmupEpochs) \(options.weightDecay) \(options.seed) \(data.count) "
      + (options.run ?? "")
    let continuing: FitState? =
      if let state, state.signature == signature, !state.finished { state } else { nil }
    let current =
      try continuing
      ?? FitState(
        optimizer: AdamW(
          groups: ParameterGroup.groups(
            trainer.student, weightDecay: options.weightDecay, exclusion: trainer.decayExclusion),
          learningRate: options.learningRate, beta1: 0.9, beta2: 0.95),
        signature: signature, totalSteps: totalSteps)
    state = current
    let optimizer = current.optimizer
    let schedule = CosineSchedule(
      base: options.learningRate, minimum: options.minimumLearningRate,
      warmupEpochs: min(options.warmupEpochs, Double(options.epochs)),
      epochs: Double(options.epochs))
    let checkpointModel = CheckpointModel(student: trainer.student, teacher: trainer.teacher)
    var step = current.step
    let checkpointPath = options.run.map { $0 + "/checkpoint.safetensors" }
    if continuing != nil {
      progress("continuing \(trainer.name) at step \(step) of \(totalSteps)")
    }
    if let run = options.run {
      try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
      // What the checkpoint belongs to (the encoder and the method); the schedule follows it.
      let encoder = trainer.encoder
      let identity =
        [
          (
            "encoder",
            "\(encoder.flavor.rawValue) dim \(encoder.dimension) depth \(encoder.blocks.count) "
              + "heads \(encoder.heads) frames \(encoder.frames) joints \(encoder.joints)"
          )
        ] + trainer.configuration
      if continuing == nil, options.resume, let path = checkpointPath,
        FileManager.default.fileExists(atPath: path)
      {
        try checkSameConfiguration(run: run, identity)
        let metadata = try TrainingCheckpoint.restore(
          path: path, model: checkpointModel, optimizer: optimizer)
        step = Int(metadata["step"] ?? "") ?? optimizer.stepCount
        current.history = recordedHistory(run + "/metrics.jsonl", upTo: step)
        progress("resumed \(trainer.name) from \(path) at step \(step)")
      }
      var config = identity.map { "\"\($0.0)\": \"\($0.1)\"" }
      config += [
        "\"epochs\": \(options.epochs)", "\"batch\": \(options.batch)",
        "\"lr\": \(options.learningRate)",
        "\"min_lr\": \(options.minimumLearningRate)", "\"warmup\": \(options.warmupEpochs)",
        "\"weight_decay\": \(options.weightDecay)", "\"seed\": \(options.seed)",
        "\"samples\": \(data.count)",
      ]
      try AtomicFile.write(
        Data(("{" + config.joined(separator: ", ") + "}\n").utf8), to: run + "/config.json",
        op: "fit")
    }
    var metrics = ""
    /// The checkpoint and the metrics up to it, together: a stopped run loses at most the steps
    /// since, and resuming recomputes exactly those.
    func save() throws {
      guard let path = checkpointPath, let run = options.run else { return }
      try TrainingCheckpoint.save(
        path: path, model: checkpointModel, optimizer: optimizer,
        metadata: ["step": String(step), "method": trainer.name])
      let previous = (try? String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)) ?? ""
      try AtomicFile.write(Data((previous + metrics).utf8), to: run + "/metrics.jsonl", op: "fit")
      metrics = ""
      try AtomicFile.write(
        Data(current.history.svg(title: "\(trainer.name): \(run)").utf8), to: run + "/loss.svg",
        op: "fit")
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
        try checkStop()
        let lr = schedule.learningRate(step: step, stepsPerEpoch: perEpoch)
        optimizer.learningRate = lr
        var generator = RandomGenerator(seed: Loader.mix(options.seed, UInt64(step), 3))
        let loss = try trainer.loss(b.x, generator: &generator)
        let value = Double(try loss.item())
        guard value.isFinite else {
          throw TensorError(
            "fit",
            "the loss became \(value) at step \(step + 1) (epoch \(epoch + 1)); the last good checkpoint "
              + (checkpointPath.map { "is \($0)" } ?? "was not kept (no run folder)"))
        }
        optimizer.zeroGrad()
        try loss.backward()
        if let clip = trainer.clipNorm {
          try clipGradientNorm(trainer.student.namedParameters().map(\.parameter), maxNorm: clip)
        }
        try optimizer.step()
        step += 1
        try trainer.afterStep(step, of: totalSteps)
        current.history.steps.append((step, epoch, value, lr))
        current.step = step
        metrics +=
          "{\"step\": \(step), \"epoch\": \(epoch + 1), \"loss\": \(value), \"lr\": \(lr)}\n"
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

  /// A checkpoint resumes only the model and method that wrote it: each (key, value) of
  /// `identity` (the encoder and the trainer's configuration) must be what the run folder's
  /// config.json holds. The schedule may change (more epochs continue a run); a key the folder
  /// lacks, from an older SkelLab, is not compared. The error names the folder, the keys and the
  /// ways out.
  static func checkSameConfiguration(run: String, _ identity: [(String, String)]) throws {
    guard let saved = FileManager.default.contents(atPath: run + "/config.json") else { return }
    guard let old = try? JSONSerialization.jsonObject(with: saved) as? [String: Any] else {
      throw TensorError("fit", "\(run)/config.json is not a JSON object; resume=false starts over")
    }
    let differences = identity.compactMap { key, now -> String? in
      guard let before = old[key], "\(before)" != now else { return nil }
      return "\(key): \(before) there, \(now) here"
    }
    guard differences.isEmpty else {
      throw TensorError(
        "fit",
        "run folder \(run) holds a run of another configuration ("
          + differences.joined(separator: "; ")
          + "); resume=false starts this one over in it, or choose another run=")
    }
  }

  /// The steps of a run folder's metrics up to `step` (a resumed run's history starts with
  /// them). The lines are the ones `run` writes; numbers are read back exactly with `Double`,
  /// and lines it cannot read are left out.
  static func recordedHistory(_ path: String, upTo step: Int) -> History {
    var history = History()
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return history }
    for line in text.split(whereSeparator: \.isNewline) {
      var fields: [String: Double] = [:]
      for field in line.trimmingCharacters(in: CharacterSet(charactersIn: "{} ")).split(
        separator: ",")
      {
        let parts = field.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let value = Double(parts[1].trimmingCharacters(in: .whitespaces))
        else { continue }
        fields[parts[0].trimmingCharacters(in: CharacterSet(charactersIn: "\" "))] = value
      }
      guard let s = fields["step"].map({ Int($0) }), s <= step, let epoch = fields["epoch"],
        let loss = fields["loss"], let lr = fields["lr"]
      else { continue }
      history.steps.append((s, Int(epoch) - 1, loss, lr))
    }
    return history
  }
}
