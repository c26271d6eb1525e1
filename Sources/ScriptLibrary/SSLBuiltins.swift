import Distributed
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
    registerPCM3(r)
    r.register(
      "rank", [],
      doc: "This process's index in an MPI job (mpirun -np N skellab run FILE): 0 ..< "
        + "world_size(); 0 in an ordinary run. Every rank runs the whole script; print and "
        + "files come from rank 0."
    ) { _, _ in .int(World.current.rank) }
    r.register(
      "world_size", [],
      doc: "The number of processes of the MPI job (1 in an ordinary run). fit shares each batch "
        + "between them and sums their gradients, so results are those of one process."
    ) { _, _ in .int(World.current.size) }
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
        BuiltinParameter("optimizer", .optional(.string), default: .nil),
        BuiltinParameter("momentum", .number, default: .float(0.9)),
        BuiltinParameter("milestones", .optional(.list), default: .nil),
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
        + "resume=true continues a stopped run exactly. optimizer \"adamw\" or \"sgd\" "
        + "(with momentum; default: the trainer's recipe, SGD for pcm3); milestones=[epochs] "
        + "multiplies lr by 0.1 at each instead of the cosine (PCM3's recipe). Returns a History."
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
      let momentum = args.number("momentum")
      guard momentum >= 0, momentum < 1 else {
        throw args.error("momentum", "must be in [0, 1), got \(Value.float(momentum).repr)")
      }
      if !args.isNil("optimizer") {
        switch args.string("optimizer") {
        case "adamw": options.optimizer = .adamw
        case "sgd": options.optimizer = .sgd(momentum: momentum)
        default:
          throw args.error(
            "optimizer", "must be \"adamw\" or \"sgd\", got \"\(args.string("optimizer"))\"")
        }
      } else if case .sgd = trainer.optimizerKind {
        options.optimizer = .sgd(momentum: momentum)
      }
      if !args.isNil("milestones") {
        let epochs = try args.list("milestones").map { value -> Double in
          switch value {
          case .int(let n) where n > 0: return Double(n)
          case .float(let x) where x.isFinite && x > 0: return x
          default:
            throw args.error("milestones", "must be a List of positive epochs, got \(value.repr)")
          }
        }
        guard epochs == epochs.sorted() else {
          throw args.error("milestones", "must be increasing, got \(epochs)")
        }
        options.milestones = epochs
      }
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
      Attribute(
        "terms",
        doc: "the terms of its last loss, by name (PCM3: ce.base, ce.mask, ce.recons, ce.mix, "
          + "kl.*, loss_sim, loss_rec, and ce.clip, kl.clip for PCM3++); nil for the others"
      ) { o in
        guard let trainer = (o as? TrainerObject)?.trainer as? PCM3Trainer,
          !trainer.lastTerms.isEmpty
        else { return .nil }
        return .record(RecordBox(trainer.lastTerms.map { ($0.0, Value.float($0.1)) }))
      })
    r.registerAttribute(
      "Trainer",
      Attribute(
        "model",
        doc: "everything the trainer's optimiser trains, with its buffers, by the reference's "
          + "names (a Model: params(t.model), sgd(t.model, ...) for a step by hand)"
      ) { o in
        guard let trainer = (o as? TrainerObject)?.trainer else { return .nil }
        return .object(ModelObject(trainer.student, title: "Model of \(trainer.name)"))
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

extension SSLBuiltins {
  /// The argument `trainer` as a PCM3 trainer, or an error naming what it is.
  static func pcm3Trainer(_ args: Arguments) throws -> PCM3Trainer {
    let object = try args.required("trainer", as: TrainerObject.self, "a Trainer")
    guard let trainer = object.trainer as? PCM3Trainer else {
      throw args.error("trainer", "must be a pcm3 trainer, got \(object.trainer.name)")
    }
    return trainer
  }

  /// `pcm3`, `pcm3_distill` and `pcm3_views` (methods.md §7).
  static func registerPCM3(_ r: Registry) {
    r.register(
      "pcm3",
      [
        BuiltinParameter("enc", .object("Model")),
        BuiltinParameter("dim", .int, default: .int(128)),
        BuiltinParameter("queue", .int, default: .int(16384)),
        BuiltinParameter("momentum", .number, default: .float(0.999)),
        BuiltinParameter("temperature", .number, default: .float(0.07)),
        BuiltinParameter("prompt", .optional(.int), default: .nil),
        BuiltinParameter("prediction", .int, default: .int(512)),
        BuiltinParameter("prompts", .bool, default: .bool(true)),
        BuiltinParameter("mixing", .bool, default: .bool(true)),
        BuiltinParameter("masked", .bool, default: .bool(true)),
        BuiltinParameter("predicted", .bool, default: .bool(true)),
        BuiltinParameter("distill", .number, default: .float(1)),
        BuiltinParameter("reconstruction", .number, default: .float(40)),
        BuiltinParameter("clip", .optional(.number), default: .nil),
        BuiltinParameter("clip_weight", .number, default: .float(1)),
        BuiltinParameter("mask_per_sample", .bool, default: .bool(false)),
        BuiltinParameter("bodies", .optional(.int), default: .nil),
      ],
      doc: "PCM3 (methods.md §7) on a GRU encoder (gru_encoder, the reference) or a transformer: "
        + "MoCo v2 (queue keys of width dim, key branch updated with momentum, InfoNCE at "
        + "temperature) with similarity distillation (weight distill), over the query view, the "
        + "body-part-masked view (masked), the view its masked motion prediction fills in "
        + "(predicted; reconstruction weighs its loss) and the mixed view (mixing), with input "
        + "and feature prompts (prompts; prompt is the feature prompt's width, default "
        + "min(256, feature/2)). clip= (a fraction of the frames) adds PCM3++'s clip contrast: "
        + "a clip of clip/2 to clip of the frames of the query view against the key of the "
        + "whole view (clip_weight). fit trains it with SGD momentum 0.9 unless told otherwise; "
        + "the batch must divide queue. The loader makes three views of every sample (§1.8). "
        + "bodies: the data's bodies per frame (a GRU encoder's own; 2 by default for a "
        + "transformer, 1 for MSR Action3D)."
    ) { args, _ in
      let encoder = try ModelBuiltins.encoder(args, "enc")
      try ModelBuiltins.positive(args, ["dim", "queue", "prediction"])
      try ModelBuiltins.fits(
        args, "queue", [args.int("dim"), args.int("queue")], "a queue of \(args.int("queue")) keys")
      try ModelBuiltins.fits(
        args, "prediction", [args.int("prediction"), max(args.int("prediction"), 150), 8],
        "a prediction head of width \(args.int("prediction"))")
      let momentum = args.number("momentum")
      guard (0..<1).contains(momentum) else {
        throw args.error("momentum", "must be in [0, 1), got \(Value.float(momentum).repr)")
      }
      guard args.number("temperature") > 0 else {
        throw args.error("temperature", "must be positive")
      }
      for name in ["distill", "reconstruction", "clip_weight"] where !(args.number(name) >= 0) {
        throw args.error(name, "must be ≥ 0, got \(Value.float(args.number(name)).repr)")
      }
      if let clip = args.optionalNumber("clip"), !(clip > 0 && clip < 1) {
        throw args.error(
          "clip", "is a fraction of the frames in (0, 1), got \(Value.float(clip).repr)")
      }
      if let prompt = args.optionalInt("prompt") {
        let half = encoder.featureDimension / 2
        guard prompt >= 2, prompt % 2 == 0, prompt / 2 < half else {
          throw args.error(
            "prompt", "must be even, at least 2, and its half below \(half), got \(prompt)")
        }
      }
      guard let layout = JointLayout.forJointCount(encoder.joints) else {
        throw args.error("enc", JointLayout.describeMessage(encoder.joints))
      }
      let bodies = (encoder as? GRUEncoder)?.bodies ?? args.optionalInt("bodies") ?? 2
      if let given = args.optionalInt("bodies"), given != bodies || given < 1 {
        throw args.error(
          "bodies", "must be positive and the GRU encoder's \(bodies), got \(given)")
      }
      do {
        let trainer = try PCM3Trainer(
          encoder: encoder, layout: layout, bodies: bodies, dimension: args.int("dim"),
          queue: args.int("queue"), momentum: momentum, temperature: args.number("temperature"),
          prompt: args.optionalInt("prompt"), prediction: args.int("prediction"),
          prompts: args.bool("prompts"), mixing: args.bool("mixing"), masked: args.bool("masked"),
          predicted: args.bool("predicted"), distill: args.number("distill"),
          reconstruction: args.number("reconstruction"), clip: args.optionalNumber("clip"),
          clipWeight: args.number("clip_weight"), maskPerSample: args.bool("mask_per_sample"))
        return .object(TrainerObject(trainer))
      } catch let error as TensorError {
        throw args.error("enc", error.message)
      }
    }
    r.register(
      "pcm3_distill",
      [BuiltinParameter("trainer", .object("Trainer"))],
      doc: "PCM3++'s post-distillation stage (methods.md §7.6): a Trainer on the same model "
        + "(every tensor shared) whose loss is the similarity-distillation terms alone, no "
        + "one-hot InfoNCE and no reconstruction. fit it after the pretraining fit (a lower lr "
        + "and a few epochs; the pcm3pp recipes show one)."
    ) { args, _ in
      let trainer = try pcm3Trainer(args)
      guard trainer.stage == "pretrain" else {
        throw args.error("trainer", "is already the distillation stage")
      }
      do {
        return .object(TrainerObject(try trainer.distillation()))
      } catch let error as TensorError {
        throw args.error("trainer", error.message)
      }
    }
    r.register(
      "pcm3_views",
      [
        BuiltinParameter("trainer", .object("Trainer")), BuiltinParameter("x", .object("Tensor")),
        BuiltinParameter("seed", .optional(.int), default: .nil),
      ],
      doc: "The three views of §1.8 that fit makes of every sample of a batch x "
        + "[N, C, T, V, M] (query and key: crop-resize of 10–100% to the encoder's frames, "
        + "joint corruption or shear; the view to mask: crop-resize, shear), stacked "
        + "view-major, [3·N, C, frames, V, M]; t(views) is one PCM3 loss on them."
    ) { args, _ in
      let trainer = try pcm3Trainer(args)
      let x = try TensorBuiltins.tensor(args["x"], args, "x")
      guard x.rank == 5, x.shape[3] == trainer.layout.count, x.shape[0] > 0 else {
        throw args.error(
          "x",
          "expects a batch [N, C, T, \(trainer.layout.count), M], got \(shapeString(x.shape))")
      }
      let views = trainer.views
      return .tensor(
        try DataBuiltins.randomly(args) { g in
          var out = [[Tensor]](repeating: [], count: views.count)
          for i in 0..<x.shape[0] {
            let sample = SkeletonSample(data: try x[.index(i)], length: x.shape[2], label: 0)
            for (v, pipeline) in views.enumerated() {
              out[v].append(try pipeline.apply(sample, layout: trainer.layout, generator: &g).data)
            }
          }
          return try Tensor.stack(out.flatMap { $0 })
        })
    }
  }
}
