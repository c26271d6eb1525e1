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

  public static func run(
    _ trainer: Pretrainer, data: SkeletonDataset, options: FitOptions,
    progress: (String) -> Void = { _ in }, checkStop: () throws -> Void = {}
  ) throws -> History {
    let loader = try Loader(
      dataset: data, batchSize: options.batch, shuffle: true, seed: options.seed,
      dropLast: data.count > options.batch, augmentations: options.augmentations)
    let perEpoch = loader.batchesPerEpoch
    guard perEpoch > 0 else {
      throw TensorError("fit", "no batches: \(data.count) samples, batch \(options.batch)")
    }
    let totalSteps = perEpoch * options.epochs
    let optimizer = try AdamW(
      groups: ParameterGroup.groups(
        trainer.student, weightDecay: options.weightDecay, exclusion: trainer.decayExclusion),
      learningRate: options.learningRate, beta1: 0.9, beta2: 0.95)
    let schedule = CosineSchedule(
      base: options.learningRate, minimum: options.minimumLearningRate,
      warmupEpochs: min(options.warmupEpochs, Double(options.epochs)),
      epochs: Double(options.epochs))
    let checkpointModel = CheckpointModel(student: trainer.student, teacher: trainer.teacher)
    var history = History()
    var step = 0
    let checkpointPath = options.run.map { $0 + "/checkpoint.safetensors" }
    if let run = options.run {
      try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
      if options.resume, let path = checkpointPath, FileManager.default.fileExists(atPath: path) {
        let metadata = try TrainingCheckpoint.restore(
          path: path, model: checkpointModel, optimizer: optimizer)
        step = Int(metadata["step"] ?? "") ?? optimizer.stepCount
        progress("resumed \(trainer.name) from \(path) at step \(step)")
      }
      var config = trainer.configuration.map { "\"\($0.0)\": \"\($0.1)\"" }
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
        history.steps.append((step, epoch, value, lr))
        metrics +=
          "{\"step\": \(step), \"epoch\": \(epoch + 1), \"loss\": \(value), \"lr\": \(lr)}\n"
        total += value
        count += 1
        sequences += b.x.shape[0]
        if step % options.checkpointEvery == 0 { try save() }
      }
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
      let mean = total / Double(max(count, 1))
      history.epochs.append((epoch + 1, mean, seconds, Double(sequences) / max(seconds, 1e-9)))
      progress(
        String(
          format: "%@ epoch %d/%d  loss %.4f  lr %.2e  %.1f samples/s", trainer.name, epoch + 1,
          options.epochs, mean, schedule.learningRate(step: step, stepsPerEpoch: perEpoch),
          Double(sequences) / max(seconds, 1e-9)))
    }
    try save()
    return history
  }
}
