import Foundation
import NN
import Optim
import SSL
import ScriptCore
import SkeletonData
import TensorCore

/// A masking strategy as the language holds it.
final class MaskObject: ScriptObject {
  enum Kind {
    case tokens(MaskConfig)
    case bodyPart(ratio: Double, chunk: Int)
  }
  let kind: Kind
  init(_ kind: Kind) { self.kind = kind }
  var typeName: String { "Mask" }
  func display() -> String {
    switch kind {
    case .tokens(let config): return "Mask " + config.description
    case .bodyPart(let ratio, let chunk):
      return "Mask bodypart(ratio \(ratio), chunk \(chunk) frames)"
    }
  }
}

/// A pretraining method with its student (and teacher), as the language holds it.
final class TrainerObject: ScriptObject {
  let trainer: Pretrainer
  /// The last `fit`'s optimiser and step: a stopped fit called again continues from them.
  var fit: FitState?
  init(_ trainer: Pretrainer) { self.trainer = trainer }
  var typeName: String { "Trainer" }
  func display() -> String {
    "Trainer " + trainer.name + "\n"
      + trainer.configuration.map { "  \($0.0): \($0.1)" }.joined(separator: "\n")
  }
}

/// A pretraining run's history as the language holds it.
final class HistoryObject: ScriptObject {
  let history: History
  init(_ history: History) { self.history = history }
  var typeName: String { "History" }
  func display() -> String {
    guard let step = history.steps.last else { return "History (no steps)" }
    let text = "History \(history.steps.count) steps  loss " + history.sparkline()
    guard let last = history.epochs.last else {
      return text + String(format: "  step %d: loss %.4f", step.step, step.loss)
    }
    return text
      + String(
        format: "  last epoch %d: loss %.4f, %.1f samples/s", last.epoch, last.loss,
        last.samplesPerSecond)
  }
}

/// The mask and trainer builtins of language.md §6 (methods.md §4–6, §9).
enum SSLBuiltins {
  static func register(in r: Registry) {
    r.registerType(
      "Mask", doc: "A masking strategy: mask(kind, ...); apply(mask, sample) shows what it hides.")
    r.registerType(
      "Trainer", doc: "A self-supervised method with its student encoder: fit(trainer, data, ...).")
    r.registerType(
      "History",
      doc: "What fit did: per-step loss and lr, per-epoch summaries; plot(history, path).")
    r.register(
      "mask",
      [
        BuiltinParameter("kind", .string, default: .string("tube")),
        BuiltinParameter("ratio", .optional(.number), default: .nil),
        BuiltinParameter("temperature", .number, default: .float(0.8)),
        BuiltinParameter("length", .int, default: .int(5)),
        BuiltinParameter("motion", .number, default: .float(0.1)),
        BuiltinParameter("chunk", .int, default: .int(8)),
      ],
      doc:
        "A masking strategy (methods.md §4): \"random\" (MAE), \"motion\" (MAMP, temperature τ), "
        + "\"tube\" (Skeleton2vec: tube length α in segments, motion weight β; 0 for plain tubes) "
        + "or \"bodypart\" (PCM3: 3 of 5 parts per chunk of frames). ratio defaults to 0.9 (0.6 "
        + "for bodypart)."
    ) { args, _ in
      let kind = args.string("kind")
      let ratio = args.optionalNumber("ratio") ?? (kind == "bodypart" ? 0.6 : 0.9)
      guard ratio > 0, ratio < 1 else { throw args.error("ratio", "must be in (0, 1)") }
      switch kind {
      case "random": return .object(MaskObject(.tokens(.random(ratio: ratio))))
      case "motion":
        return .object(
          MaskObject(.tokens(.motion(ratio: ratio, temperature: args.number("temperature")))))
      case "tube":
        guard args.int("length") > 0 else { throw args.error("length", "must be positive") }
        return .object(
          MaskObject(
            .tokens(.tube(ratio: ratio, length: args.int("length"), motion: args.number("motion"))))
        )
      case "bodypart":
        guard args.int("chunk") > 0 else { throw args.error("chunk", "must be positive") }
        return .object(MaskObject(.bodyPart(ratio: ratio, chunk: args.int("chunk"))))
      default: throw args.error("kind", "must be \"random\", \"motion\", \"tube\" or \"bodypart\"")
      }
    }
    r.register(
      "apply",
      [
        BuiltinParameter("mask", .object("Mask")), BuiltinParameter("sample"),
        BuiltinParameter("patch", .int, default: .int(4)),
        BuiltinParameter("seed", .optional(.int), default: .nil),
      ],
      doc: "What a mask hides in a sample (a Record from ds[i] or a [C, T, V, M] tensor), as a "
        + "[T, V] tensor over frames (1 = hidden; token masks cover patch frames per segment), "
        + "body 1 only — to inspect or to draw with show(sample, mask=...)."
    ) { args, _ in
      let object = try args.required("mask", as: MaskObject.self, "a Mask")
      var x: Tensor
      switch args["sample"] {
      case .record(let box):
        guard case .object(let o as TensorObject)? = box["x"] else {
          throw args.error("sample", "a sample Record has x")
        }
        x = o.tensor
      default: x = try TensorBuiltins.tensor(args["sample"], args, "sample")
      }
      guard x.rank == 4 else {
        throw args.error("sample", "expects [C, T, V, M], got \(shapeString(x.shape))")
      }
      let layout = JointLayout.forData(x.shape[2])
      let (t, v) = (x.shape[1], x.shape[2])
      return .tensor(
        try DataBuiltins.randomly(args) { g -> Tensor in
          switch object.kind {
          case .bodyPart(let ratio, let chunk):
            return try Transforms.bodyPartMask(
              frames: t, layout: layout, chunk: chunk, ratio: ratio, generator: &g)
          case .tokens(let config):
            let patch = args.int("patch")
            guard patch > 0, t % patch == 0 else {
              throw args.error(
                "patch", "\(t) frames are not divisible by the segment length \(patch)")
            }
            let body = try x[.all, .all, .all, .index(0)].permuted([1, 2, 0]).contiguous()
              .unsqueezed(axis: 0)
            let tokens = try config.make(body, segment: patch, placement: .intended, generator: &g)
            let perSegment = try tokens.mask.reshaped([t / patch, v])
            return try perSegment.indexSelect(axis: 0, indices: (0..<t).map { $0 / patch })
          }
        })
    }
    func trainer(
      _ name: String, _ extra: [BuiltinParameter], _ doc: String,
      _ make: @escaping (Encoder, Arguments, MaskConfig?) throws -> Pretrainer
    ) {
      r.register(
        name,
        [
          BuiltinParameter("enc", .object("Model")),
          BuiltinParameter("decoder_depth", .int, default: .int(1)),
          BuiltinParameter("mask", .optional(.object("Mask")), default: .nil),
        ] + extra, doc: doc
      ) { args, _ in
        let encoder = try ModelBuiltins.transformer(args, "enc", for: name)
        guard args.int("decoder_depth") >= 0 else {
          throw args.error("decoder_depth", "must be ≥ 0")
        }
        var config: MaskConfig?
        if let m = args.object("mask", as: MaskObject.self) {
          guard case .tokens(let c) = m.kind else {
            throw args.error(
              "mask", "a transformer trainer needs a token mask (random, motion or tube)")
          }
          config = c
        }
        return .object(TrainerObject(try make(encoder, args, config)))
      }
    }
    trainer(
      "skeleton2vec",
      [
        BuiltinParameter("top_k", .optional(.int), default: .nil),
        BuiltinParameter("per_layer", .string, default: .string("instance")),
        BuiltinParameter("tau", .number, default: .float(0.9999)),
        BuiltinParameter("clip", .optional(.number), default: .float(4)),
        BuiltinParameter("restore", .string, default: .string("intended")),
      ],
      "Skeleton2vec (methods.md §6): an EMA teacher of the whole student (τ annealed to 1 over "
        + "the run) gives top_k instance-normalised (per_layer \"instance\" or \"layer\") targets "
        + "for the decoder on the tokens hidden by a motion-aware tube mask; gradients clipped at "
        + "clip. restore \"intended\" or \"referenceCompatible\" (§3)."
    ) { encoder, args, mask in
      guard let perLayer = ContextualTarget.LayerNormalization(rawValue: args.string("per_layer"))
      else {
        throw args.error("per_layer", "must be \"instance\" or \"layer\"")
      }
      guard let restore = Decoder.Restore(rawValue: args.string("restore")) else {
        throw args.error("restore", "must be \"intended\" or \"referenceCompatible\"")
      }
      return try Skeleton2vecTrainer(
        encoder: encoder, decoderDepth: args.int("decoder_depth"), mask: mask,
        topK: args.optionalInt("top_k"),
        perLayer: perLayer, tau: args.number("tau"),
        clipNorm: args.optionalNumber("clip").map { Float($0) },
        placement: restore)
    }
    trainer(
      "mamp", [],
      "MAMP (methods.md §5): motion-aware masking (ratio 0.9, τ 0.8) and a decoder regressing "
        + "each hidden token's normalised motion."
    ) { encoder, args, mask in
      try MaskedPredictionTrainer(
        encoder: encoder, motion: true, decoderDepth: args.int("decoder_depth"), mask: mask)
    }
    trainer(
      "mae", [],
      "The MAE baseline: random masking (ratio 0.9) and a decoder regressing each hidden token's "
        + "normalised positions."
    ) { encoder, args, mask in
      try MaskedPredictionTrainer(
        encoder: encoder, motion: false, decoderDepth: args.int("decoder_depth"), mask: mask)
    }
    r.register(
      "fit",
      [
        BuiltinParameter("trainer", .object("Trainer")),
        BuiltinParameter("data", .object("Dataset")),
        BuiltinParameter("epochs", .int, default: .int(10)),
        BuiltinParameter("batch", .int, default: .int(16)),
        BuiltinParameter("lr", .number, default: .float(1e-3)),
        BuiltinParameter("warmup", .number, default: .float(1)),
        BuiltinParameter("min_lr", .number, default: .float(1e-5)),
        BuiltinParameter("weight_decay", .number, default: .float(0.05)),
        BuiltinParameter("seed", .int, default: .int(0)),
        .path("run", optional: true),
        BuiltinParameter("resume", .bool, default: .bool(true)),
        BuiltinParameter("checkpoint_every", .int, default: .int(100)),
      ],
      doc:
        "Pretrains: AdamW (0.9, 0.95) with warm-up + cosine per iteration (methods.md §9; epochs, "
        + "warmup in epochs, may be fractional; lr per step; batch in sequences) on the "
        + "dataset's training half when split, with its augmentations (a random crop to the "
        + "encoder's frames is added when there is no temporal one). run= keeps config.json, "
        + "metrics.jsonl and checkpoint.safetensors (every checkpoint_every steps and at the end); "
        + "resume=true continues a stopped run exactly. Returns a History."
    ) { args, context in
      let trainerObject = try args.required("trainer", as: TrainerObject.self, "a Trainer")
      let trainer = trainerObject.trainer
      let object = try DataBuiltins.dataset(args, "data")
      let source = object.train ?? object
      var options = FitOptions()
      options.epochs = args.int("epochs")
      options.batch = args.int("batch")
      options.learningRate = args.number("lr")
      options.warmupEpochs = args.number("warmup")
      options.minimumLearningRate = args.number("min_lr")
      options.weightDecay = Float(args.number("weight_decay"))
      options.seed = UInt64(max(args.int("seed"), 0))
      options.run = args.isNil("run") ? nil : args.string("run")
      options.resume = args.bool("resume")
      options.checkpointEvery = max(args.int("checkpoint_every"), 1)
      guard options.epochs > 0, options.batch > 1 else {
        throw args.error("epochs", "epochs must be positive and batch above 1")
      }
      var steps = source.augmentations
      let temporal = steps.contains { step in
        switch step {
        case .randomCrop, .centreCrop, .uniformSample: return true
        default: return false
        }
      }
      let frames = trainer.backbone.frames
      if !temporal && trainer.views.isEmpty && source.dataset.sampleShape[1] != frames {
        steps.insert(
          .randomCrop(window: frames, low: 0.5, high: 1, minimum: min(64, frames)), at: 0)
      }
      options.augmentations = steps
      let bar = ProgressBar()
      let box = ContextBox(context)
      let history = try Fit.run(
        trainer, data: source.dataset, options: options, state: &trainerObject.fit,
        progress: { bar.line($0) }, onStep: { bar.batch($0) },
        checkStop: { try box.context.checkInterrupt() })
      return .object(HistoryObject(history))
    }
    r.register(
      "plot",
      [
        BuiltinParameter("history", .object("History")),
        .path("path", optional: true),
      ],
      doc: "Draws a History's loss and learning rate against steps as an SVG file at path (and "
        + "prints where), or with no path its loss as a chart in the terminal."
    ) { args, context in
      let history = try args.required("history", as: HistoryObject.self, "a History").history
      guard case .string(let path) = args["path"] else {
        context.write(history.chart() + "\n")
        return .nil
      }
      try AtomicFile.write(Data(history.svg().utf8), to: path, op: "plot")
      context.write("wrote \(path)\n")
      return .nil
    }
    r.registerAttribute(
      "History",
      Attribute("loss", doc: "the per-step losses, a List of Float") { o in
        .list((o as? HistoryObject)?.history.steps.map { .float($0.loss) } ?? [])
      })
    r.registerAttribute(
      "History",
      Attribute("lr", doc: "the per-step learning rates") { o in
        .list((o as? HistoryObject)?.history.steps.map { .float($0.lr) } ?? [])
      })
    r.registerCall(
      "Trainer",
      Builtin(
        "Trainer",
        [
          BuiltinParameter("trainer", .object("Trainer")), BuiltinParameter("x", .object("Tensor")),
          BuiltinParameter("seed", .optional(.int), default: .nil),
        ],
        doc: "The loss of one batch x [N, C, T, V, M] (masks drawn from seed, else from the "
          + "global random stream); backward and step then train the student, as fit does."
      ) { args, _ in
        let trainer = try args.required("trainer", as: TrainerObject.self, "a Trainer").trainer
        let x = try TensorBuiltins.tensor(args["x"], args, "x")
        guard x.rank == 5 else {
          throw args.error("x", "expects a batch [N, C, T, V, M], got \(shapeString(x.shape))")
        }
        return .tensor(
          try DataBuiltins.randomly(args) { g in try trainer.loss(x, generator: &g) })
      })
    r.registerAttribute(
      "Trainer",
      Attribute("step", doc: "the steps its last fit has done (kept when the fit was stopped)") {
        o in .int((o as? TrainerObject)?.fit?.step ?? 0)
      })
    r.registerAttribute(
      "Trainer",
      Attribute("history", doc: "its last fit's History so far (also after a stop)") { o in
        guard let state = (o as? TrainerObject)?.fit else { return .nil }
        return .object(HistoryObject(state.history))
      })
    r.registerAttribute(
      "Trainer",
      Attribute("encoder", doc: "the student encoder (a Model)") { o in
        guard let trainer = (o as? TrainerObject)?.trainer else { return .nil }
        return .object(
          ModelObject(trainer.backbone, title: "\(trainer.backbone.title) of \(trainer.name)"))
      })
  }
}
