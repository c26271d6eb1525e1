import Distributed
import Evaluation
import Foundation
import NN
import Optim
import ScriptCore
import SkeletonData
import TensorCore

/// A call context captured by the protocols' `@Sendable` callbacks. Sendable by use: the
/// protocols call them on the thread that called the protocol, the interpreter's.
final class ContextBox: @unchecked Sendable {
  let context: CallContext
  init(_ context: CallContext) { self.context = context }
}

/// Progress on standard error: on a terminal a bar with epoch, step, loss, lr, steps/s and ETA
/// redrawn in place after every batch; otherwise (a log file) the same as a plain line every
/// `interval` seconds. Epoch summaries come as lines either way. Sendable by use, as
/// `ContextBox`: only callbacks running on the interpreter's thread change it.
final class ProgressBar: @unchecked Sendable {
  let terminal = isatty(2) != 0
  let interval: Double
  var start = DispatchTime.now().uptimeNanoseconds
  var lastLine = DispatchTime.now().uptimeNanoseconds
  var steps = 0
  var phase = ""

  init(interval: Double = 10) { self.interval = interval }

  /// Only rank 0 of an MPI job shows progress (the ranks run in step).
  func write(_ text: String) {
    guard World.current.rank == 0 else { return }
    FileHandle.standardError.write(Data(text.utf8))
  }

  func batch(_ p: BatchProgress) {
    let now = DispatchTime.now().uptimeNanoseconds
    if p.phase != phase {
      phase = p.phase
      start = now
      lastLine = now
      steps = 0
    }
    steps += 1
    guard terminal || Double(now - lastLine) / 1e9 >= interval else { return }
    lastLine = now
    let rate = Double(steps) / max(Double(now - start) / 1e9, 1e-9)
    let remaining = Int(Double(p.epochs * p.batches - p.step) / max(rate, 1e-9))
    let eta =
      remaining >= 3600
      ? String(format: "%d:%02d:%02d", remaining / 3600, remaining / 60 % 60, remaining % 60)
      : String(format: "%d:%02d", remaining / 60, remaining % 60)
    var text = String(
      format: "%@ epoch %d/%d  step %d/%d  loss %.4f", p.phase, p.epoch + 1, p.epochs, p.step,
      p.epochs * p.batches, p.loss)
    if let lr = p.lr { text += String(format: "  lr %.2e", lr) }
    text += String(format: "  %.1f steps/s  ETA %@", rate, eta)
    guard terminal else { return write(text + "\n") }
    let width = 20
    let filled = min(Int(p.done * Double(width)), width)
    let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
    write("\r\u{1B}[K" + bar + " " + text)
  }

  func line(_ text: String) { write((terminal ? "\r\u{1B}[K" : "") + text + "\n") }
}

/// The evaluation builtins of language.md §6 "evaluation" (methods.md §8).
enum EvaluationBuiltins {
  static func register(in r: Registry) {
    let common = [
      BuiltinParameter("enc", .object("Model")), BuiltinParameter("data", .object("Dataset")),
    ]
    let run = BuiltinParameter.path("run", optional: true)
    let resume = BuiltinParameter("resume", .bool, default: .bool(true))
    let seed = BuiltinParameter("seed", .int, default: .int(0))
    let probeParameters = [
      BuiltinParameter("epochs", .int, default: .int(100)),
      BuiltinParameter("batch", .int, default: .int(256)),
      BuiltinParameter("lr", .number, default: .float(0.1)),
      BuiltinParameter("augment", .bool, default: .bool(true)),
    ]
    let finetuneParameters = [
      BuiltinParameter("epochs", .int, default: .int(100)),
      BuiltinParameter("batch", .int, default: .int(48)),
      BuiltinParameter("lr", .number, default: .float(3e-4)),
      BuiltinParameter("warmup", .number, default: .float(5)),
      BuiltinParameter("layer_decay", .number, default: .float(0.8)),
      BuiltinParameter("drop_path", .number, default: .float(0.3)),
      BuiltinParameter("smoothing", .number, default: .float(0.1)),
      BuiltinParameter("hidden", .int, default: .int(2048)),
    ]

    r.register(
      "linear_probe", common + probeParameters + [seed, run, resume],
      doc: "Linear evaluation (methods.md §8.1): the encoder frozen in inference mode, pooled "
        + "features (recomputed on MAMP's augmented view every epoch when augment, else computed "
        + "once), BatchNorm without affine + Linear trained by SGD (momentum 0.9, cosine lr). data "
        + "must be split (.train/.test). Returns {accuracy, top5, best_accuracy, best_top5, "
        + "best_epoch, chance, epochs}. run= keeps the run resumable there (checkpoint.safetensors "
        + "after every epoch and when stopped, config.json, epochs.jsonl, result.json); "
        + "resume=true continues a stopped run exactly, as fit does."
    ) { args, context in
      let (encoder, train, test) = try inputs(args)
      let result = try Protocols.linearProbe(
        encoder, train: train, test: test, options: probeOptions(args),
        context: evaluationContext(context)
      ).result
      return try finish(result, args, context)
    }
    r.register(
      "finetune", common + finetuneParameters + [seed, run, resume],
      doc: "Fine-tuning (methods.md §8.2, §9.1) of a copy of the encoder (yours is unchanged) with "
        + "the fc1 → BatchNorm → ReLU → fc2 head: AdamW, layer-wise lr decay, drop path, label "
        + "smoothing, warm-up (warmup, in epochs) + cosine. Returns {accuracy, top5, best_accuracy, …}."
    ) { args, context in
      let (encoder, train, test) = try inputs(args)
      let result = try Protocols.finetune(
        encoder, train: train, test: test, options: finetuneOptions(args),
        context: evaluationContext(context))
      return try finish(result, args, context)
    }
    r.register(
      "semi_supervised",
      common + [
        BuiltinParameter("fraction", .number, default: .float(0.01)),
        BuiltinParameter("repeats", .int, default: .int(1)),
      ] + finetuneParameters + [seed, run, resume],
      doc: "Fine-tuning on a seeded class-balanced fraction of the training split (1% or 10%), "
        + "one subset per repeat; accuracy is the mean, std over repeats."
    ) { args, context in
      let (encoder, train, test) = try inputs(args)
      let result = try Protocols.semiSupervised(
        encoder, train: train, test: test, fraction: args.number("fraction"),
        repeats: args.int("repeats"),
        options: finetuneOptions(args), context: evaluationContext(context))
      return try finish(result, args, context)
    }
    r.register(
      "knn", common + [BuiltinParameter("k", .oneOf([.int, .list]), default: .int(1)), run],
      doc: "KNN retrieval (methods.md §8.3): L2-normalised centre-view features, cosine "
        + "similarity, majority vote with ties to the smallest label; k an Int or a List (accuracy "
        + "is for the first)."
    ) { args, context in
      let (encoder, train, test) = try inputs(args)
      let ks: [Int]
      if case .list(let box) = args["k"] {
        ks = try box.items.map { value in
          guard case .int(let k) = value else { throw args.error("k", "must be Ints") }
          return k
        }
      } else {
        ks = [args.int("k")]
      }
      let result = try Protocols.knn(
        encoder, train: train, test: test, ks: ks, context: evaluationContext(context))
      return try finish(result, args, context)
    }
    r.register(
      "few_shot",
      common + [
        BuiltinParameter("ways", .int, default: .int(5)),
        BuiltinParameter("shots", .oneOf([.int, .list]), default: .list([.int(1), .int(5)])),
        BuiltinParameter("episodes", .int, default: .int(100)),
        BuiltinParameter("queries", .int, default: .int(5)),
        BuiltinParameter("classes", .optional(.list), default: .nil), seed, run,
      ],
      doc: "N-way K-shot episodes on held-out classes (default: the last third of the test "
        + "split's classes): logistic regression on the support features, mean accuracy over "
        + "episodes with a 95% interval per shots value."
    ) { args, context in
      let (encoder, _, test) = try inputs(args, split: false)
      var classes = Set(test.labels).sorted()
      if !args.isNil("classes") {
        classes = try args.list("classes").map { value in
          guard case .int(let c) = value else { throw args.error("classes", "must be Ints") }
          return c
        }
      } else {
        classes = Array(classes.suffix(max(args.int("ways"), classes.count / 3)))
      }
      let shots: [Int]
      if case .int(let k) = args["shots"] {
        shots = [k]
      } else {
        shots = try args.list("shots").map { value in
          guard case .int(let k) = value, k > 0 else {
            throw args.error("shots", "must be positive Ints")
          }
          return k
        }
      }
      let result = try Protocols.fewShot(
        encoder, data: test, classes: classes, ways: args.int("ways"), shots: shots,
        queries: args.int("queries"), episodes: args.int("episodes"),
        seed: UInt64(max(args.int("seed"), 0)),
        context: evaluationContext(context))
      return try finish(result, args, context)
    }
    r.register(
      "occluded",
      common + [
        BuiltinParameter("spatial", .list, default: .list([.int(1), .int(2)])),
        BuiltinParameter(
          "temporal", .list, default: .list([.float(0.3), .float(0.5), .float(0.7)])),
      ] + probeParameters + [seed, run, resume],
      doc: "Occluded recognition: a linear probe trained on clean data, tested with `spatial` "
        + "random body parts hidden and with a hidden temporal block of each `temporal` ratio "
        + "(the same masks for every model given a seed); accuracy is the mean over conditions."
    ) { args, context in
      let (encoder, train, test) = try inputs(args)
      let parts = try args.list("spatial").map { value -> Int in
        guard case .int(let k) = value else { throw args.error("spatial", "must be Ints") }
        return k
      }
      let ratios = try args.list("temporal").map { value -> Double in
        switch value {
        case .int(let i): return Double(i)
        case .float(let d): return d
        default: throw args.error("temporal", "must be numbers")
        }
      }
      let result = try Protocols.occluded(
        encoder, train: train, test: test, parts: parts, ratios: ratios,
        options: probeOptions(args),
        context: evaluationContext(context))
      return try finish(result, args, context)
    }
    r.register(
      "transfer",
      [
        BuiltinParameter("enc", .object("Model")),
        BuiltinParameter("source", .optional(.object("Dataset")), default: .nil),
        BuiltinParameter("target", .object("Dataset")),
        BuiltinParameter("mode", .string, default: .string("linear")),
      ] + probeParameters + [seed, run, resume],
      doc: "Transfer: features learned on `source` (the encoder's pretraining data; recorded) "
        + "evaluated on the split `target` by a linear probe or fine-tuning (mode); the target's "
        + "joints are mapped to the encoder's layout when they differ (MSR 20 → Kinect v2 25)."
    ) { args, context in
      let encoder = try ModelBuiltins.encoder(args, "enc")
      let target = try DataBuiltins.dataset(args, "target")
      guard let train = target.train?.dataset, let test = target.test?.dataset else {
        throw args.error("target", "must be split (.train and .test)")
      }
      guard ["linear", "finetune"].contains(args.string("mode")) else {
        throw args.error("mode", "must be \"linear\" or \"finetune\"")
      }
      var tune = Protocols.FinetuneOptions()
      tune.epochs = args.int("epochs")
      tune.seed = UInt64(max(args.int("seed"), 0))
      (tune.run, tune.resume) = (args.isNil("run") ? nil : args.string("run"), args.bool("resume"))
      var result = try Protocols.transfer(
        encoder, train: train, test: test, finetuning: args.string("mode") == "finetune",
        probe: probeOptions(args), finetune: tune, context: evaluationContext(context))
      if let source = args.object("source", as: DatasetObject.self) {
        result.name += " from \(source.dataset.kind) to \(train.kind)"
      }
      return try finish(result, args, context)
    }
    r.register(
      "detection",
      [
        BuiltinParameter("enc", .object("Model")),
        .path("train_path", optional: true),
        .path("train_labels", optional: true),
        .path("test_path", optional: true),
        .path("test_labels", optional: true),
        BuiltinParameter("train_sequences", .int, default: .int(20)),
        BuiltinParameter("test_sequences", .int, default: .int(10)),
        BuiltinParameter("epochs", .int, default: .int(60)), seed, run, resume,
      ],
      doc: "Action detection (methods.md §8.4): a frozen encoder, a linear classifier of each "
        + "frame's 16-step window, mean-filtered probabilities, segments, and VOC mAP at tIoU "
        + "0.1, 0.3 and 0.5 (accuracy = mAP@0.5). On PKU-MMD Part I with train_path/train_labels "
        + "and test_path/test_labels (skeleton and label folders); without them on untrimmed "
        + "sequences of synthetic actions with standing still in between."
    ) { args, context in
      let encoder = try ModelBuiltins.encoder(args, "enc")
      guard encoder.joints == 25 else {
        throw args.error("enc", "detection needs a 25-joint encoder, got \(encoder.joints)")
      }
      let seed = UInt64(max(args.int("seed"), 0))
      let train: [UntrimmedSequence]
      let test: [UntrimmedSequence]
      let folders = ["train_path", "train_labels", "test_path", "test_labels"].map {
        args.isNil($0) ? nil : args.string($0)
      }
      if let trainPath = folders[0], let trainLabels = folders[1], let testPath = folders[2],
        let testLabels = folders[3]
      {
        train = try Detection.pkummdSequences(skeletonFolder: trainPath, labelFolder: trainLabels)
        test = try Detection.pkummdSequences(skeletonFolder: testPath, labelFolder: testLabels)
      } else if folders.allSatisfy({ $0 == nil }) {
        (train, test) = try Detection.syntheticSplit(
          train: args.int("train_sequences"), test: args.int("test_sequences"), seed: seed)
      } else {
        throw args.error(
          "train_path", "give all of train_path, train_labels, test_path and test_labels, or none")
      }
      let classes = (train + test).flatMap(\.frameLabels).max() ?? 1
      var options = Detection.Options()
      options.epochs = args.int("epochs")
      options.seed = seed
      (options.run, options.resume) = (
        args.isNil("run") ? nil : args.string("run"), args.bool("resume")
      )
      let result = try Detection.run(
        encoder, train: train, test: test, classes: classes, options: options,
        context: evaluationContext(context))
      return try finish(result, args, context)
    }
    r.register(
      "benchmark",
      common + [
        BuiltinParameter("probe_epochs", .int, default: .int(100)),
        BuiltinParameter("finetune_epochs", .int, default: .int(100)),
        BuiltinParameter("episodes", .int, default: .int(100)),
        BuiltinParameter("detection_epochs", .int, default: .int(60)),
        .path("run", default: "runs/benchmark"),
      ],
      doc: "The survey's multi-task table in one call — recognition (linear, fine-tune), "
        + "retrieval (KNN k = 1, 5), occluded (spatial, temporal), few-shot (5-way 1- and 5-shot) "
        + "and detection (synthetic untrimmed) — printed, and written to run= as benchmark.md "
        + "and benchmark.csv. Returns a Record of task → {metric: value}."
    ) { args, context in
      let (encoder, train, test) = try inputs(args)
      var options = Benchmark.Options()
      options.probe.epochs = args.int("probe_epochs")
      options.finetune.epochs = args.int("finetune_epochs")
      options.episodes = args.int("episodes")
      options.detection.epochs = args.int("detection_epochs")
      let rows = try Benchmark.run(
        encoder, train: train, test: test, options: options, context: evaluationContext(context))
      try Benchmark.write(rows, to: args.string("run"))
      context.write(Benchmark.markdown(rows))
      let record = RecordBox()
      for row in rows {
        if case .record(let inner)? = record[row.task] {
          inner[row.metric] = .float(row.value)
        } else {
          record[row.task] = .record(RecordBox([(row.metric, .float(row.value))]))
        }
      }
      context.shown(.record(record))  // the Markdown table above is its display
      return .record(record)
    }
  }

  static func inputs(_ args: Arguments, split: Bool = true) throws -> (
    any SequenceEncoder, SkeletonDataset, SkeletonDataset
  ) {
    let encoder = try ModelBuiltins.encoder(args, "enc")
    let data = try DataBuiltins.dataset(args, "data")
    guard let train = data.train?.dataset, let test = data.test?.dataset else {
      if !split { return (encoder, data.dataset, data.dataset) }
      throw args.error(
        "data", "must be split into .train and .test (split(ds, \"xsub\") or dataset(..., split=))")
    }
    return (encoder, train, test)
  }

  static func probeOptions(_ args: Arguments) throws -> Protocols.ProbeOptions {
    var o = Protocols.ProbeOptions()
    o.epochs = args.int("epochs")
    o.batch = args.int("batch")
    o.learningRate = args.number("lr")
    o.augment = args.bool("augment")
    o.seed = UInt64(max(args.int("seed"), 0))
    (o.run, o.resume) = (args.isNil("run") ? nil : args.string("run"), args.bool("resume"))
    guard o.epochs > 0, o.batch > 1 else {
      throw args.error("epochs", "epochs must be positive and batch above 1")
    }
    return o
  }

  static func finetuneOptions(_ args: Arguments) throws -> Protocols.FinetuneOptions {
    var o = Protocols.FinetuneOptions()
    o.epochs = args.int("epochs")
    o.batch = args.int("batch")
    o.learningRate = args.number("lr")
    o.warmupEpochs = args.number("warmup")
    o.layerDecay = Float(args.number("layer_decay"))
    o.dropPath = Float(args.number("drop_path"))
    o.smoothing = Float(args.number("smoothing"))
    o.hidden = args.int("hidden")
    o.seed = UInt64(max(args.int("seed"), 0))
    (o.run, o.resume) = (args.isNil("run") ? nil : args.string("run"), args.bool("resume"))
    guard o.epochs > 0, o.batch > 1, o.hidden > 0 else {
      throw args.error("epochs", "epochs and hidden must be positive and batch above 1")
    }
    return o
  }

  static func evaluationContext(_ context: CallContext) -> EvaluationContext {
    let box = ContextBox(context)
    let bar = ProgressBar()
    return EvaluationContext(
      progress: { bar.line($0) }, checkStop: { try box.context.checkInterrupt() },
      batch: { bar.batch($0) })
  }

  /// Prints the result's table, writes the run folder, and returns the Result Record.
  static func finish(_ result: EvaluationResult, _ args: Arguments, _ context: CallContext) throws
    -> Value
  {
    BufferCache.empty()  // a protocol's buffers are not the next statement's
    context.write(result.table + "\n")
    if case .string(let folder) = args["run"] { try result.write(to: folder) }
    var entries: [(String, Value)] = result.metrics.map { ($0.name, .float($0.value)) }
    if !result.epochs.isEmpty {
      entries.append(
        (
          "epochs",
          .list(
            result.epochs.map { row in .record(RecordBox(row.map { ($0.name, .float($0.value)) })) }
          )
        ))
    }
    let value = Value.record(RecordBox(entries))
    context.shown(value)  // the table above is its display
    return value
  }
}
