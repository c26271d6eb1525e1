import Foundation
import NN
import Optim
import ScriptCore
import TensorCore

/// A model as the language holds it: an encoder, a decoder or a classifier.
final class ModelObject: ScriptObject {
  let module: Module
  /// What the model is, for display (`Encoder(mamp, dim 256, …)`).
  let title: String

  init(_ module: Module, title: String) {
    self.module = module
    self.title = title
  }

  var typeName: String { "Model" }

  func display() -> String { ModelSummary.table(module, title: title) }
}

/// An optimiser with its model, as the language holds it.
final class OptimizerObject: ScriptObject {
  let optimizer: Optimizer
  let module: Module

  init(_ optimizer: Optimizer, module: Module) {
    self.optimizer = optimizer
    self.module = module
  }

  var typeName: String { "Optimizer" }

  func display() -> String {
    let kind = String(describing: type(of: optimizer))
    let count = optimizer.groups.reduce(0) { $0 + $1.parameters.count }
    return "\(kind)(lr \(Value.float(optimizer.learningRate).repr), \(optimizer.groups.count) "
      + "group(s), \(count) tensors, step \(optimizer.stepCount))"
  }
}

/// The table a Model prints: its modules with their output shapes and parameter counts.
enum ModelSummary {
  static func grouped(_ n: Int) -> String {
    let digits = Array(String(n))
    var out = ""
    for (i, d) in digits.enumerated() {
      if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
      out.append(d)
    }
    return out
  }

  /// The output shape of a known layer, symbolic in the batch axes.
  static func output(_ module: Module) -> String {
    switch module {
    case let m as Encoder: return "[B, \(m.tokenCount), \(m.dimension)]"
    case let m as Decoder: return "[B, \(m.tokenCount), \(m.head.weight.value.shape[0])]"
    case let m as JointEmbedding: return "[B, TP, J, \(m.weight.value.shape[0])]"
    case let m as Block: return "[B, N, \(m.norm1.weight.value.count)]"
    case let m as Linear: return "[…, \(m.weight.value.shape[0])]"
    case let m as LayerNorm: return "[…, \(m.weight.value.count)]"
    case let m as BatchNorm1d: return "[N, \(m.runningMean.value.count)]"
    case let m as GRU: return "[B, T, \(m.mode == .unidirectional ? m.hidden : 2 * m.hidden)]"
    case let m as GRUEncoder: return "[N, T, \(m.featureDimension)]"
    case let m as Classifier: return "[N, \(m.classes)]"
    default: return ""
    }
  }

  /// Rows for the top-level layers (containers such as `blocks` are opened one level).
  static func table(_ module: Module, title: String) -> String {
    var rows: [(String, String, String, Int)] = []
    // Layers at the top, and the children of plain containers (`blocks`, `head`).
    let modules = module.namedModules()
    let containers = Set(modules.filter { type(of: $0.module) == Module.self }.map(\.name))
    let top = modules.filter { entry in
      guard !entry.name.isEmpty, type(of: entry.module) != Module.self else { return false }
      let path = entry.name.split(separator: ".")
      return path.count == 1 || containers.contains(path.dropLast().joined(separator: "."))
    }
    var seen = Set<ObjectIdentifier>()
    var names = Set<String>()
    // A child merged into its parent's names (PCM3's encoder_q) shows as its parent's row.
    for (name, m) in top
    where seen.insert(ObjectIdentifier(m)).inserted && names.insert(name).inserted {
      rows.append((name, String(describing: type(of: m)), output(m), m.parameterCount))
    }
    let direct = module.namedParameters().filter { entry in
      !top.contains { entry.name.hasPrefix($0.name + ".") }
    }
    rows.insert(
      contentsOf: direct.map { name, parameter in
        let shape = "[" + parameter.value.shape.map(String.init).joined(separator: ", ") + "]"
        return (name, "Parameter", shape, parameter.value.count)
      }, at: 0)
    let header = ("module", "type", "output", "params")
    let widths = [
      max(header.0.count, rows.map(\.0.count).max() ?? 0),
      max(header.1.count, rows.map(\.1.count).max() ?? 0),
      max(header.2.count, rows.map(\.2.count).max() ?? 0),
    ]
    func pad(_ s: String, _ w: Int) -> String {
      s + String(repeating: " ", count: max(0, w - s.count))
    }
    let total = grouped(module.parameterCount)
    let numberWidth = max(total.count, rows.map { grouped($0.3).count }.max() ?? 0, 6)
    func line(_ a: String, _ b: String, _ c: String, _ d: String) -> String {
      pad(a, widths[0]) + "  " + pad(b, widths[1]) + "  " + pad(c, widths[2]) + "  "
        + String(repeating: " ", count: max(0, numberWidth - d.count)) + d
    }
    var lines = [title, line(header.0, header.1, header.2, header.3)]
    for row in rows { lines.append(line(row.0, row.1, row.2, grouped(row.3))) }
    lines.append(line("total", "", "", total))
    let frozen = module.namedParameters().filter(\.parameter.isFrozen).reduce(0) {
      $0 + $1.parameter.value.count
    }
    if frozen > 0 { lines.append("(\(grouped(frozen)) frozen)") }
    return lines.joined(separator: "\n")
  }
}

/// The model builtins of language.md §6 "model": building encoders, decoders and classifiers,
/// calling them, their parameters, weights files, and optimisers and losses for hand-written
/// training loops.
enum ModelBuiltins {
  static func register(in r: Registry) {
    r.registerType(
      "Model",
      doc: "A network (encoder, decoder or classifier). Call it on a tensor; params(m) gives "
        + "its tensors by their PyTorch names; it prints a table of its layers.")
    r.registerType(
      "Optimizer", doc: "AdamW or SGD over a model's parameters: step(opt), zero_grad(opt).")
    registerBuilders(r)
    registerCalls(r)
    registerInspection(r)
    registerOptimisers(r)
    registerLosses(r)
  }

  static func model(_ args: Arguments, _ name: String) throws -> ModelObject {
    try args.required(name, as: ModelObject.self, "a Model")
  }

  /// Any encoder (transformer or GRU), or a classifier's.
  static func encoder(_ args: Arguments, _ name: String) throws -> any SequenceEncoder {
    let object = try model(args, name)
    if let encoder = object.module as? any SequenceEncoder { return encoder }
    if let classifier = object.module as? Classifier { return classifier.encoder }
    throw args.error(name, "expected an encoder, got \(object.title)")
  }

  /// The transformer encoder of methods.md §2 (what `what` needs), or a clear error.
  static func transformer(_ args: Arguments, _ name: String, for what: String) throws -> Encoder {
    let any = try encoder(args, name)
    guard let encoder = any as? Encoder else {
      throw args.error(
        name, "\(what) needs a transformer encoder (encoder(...)), got \(any.title)")
    }
    return encoder
  }

  static func positive(_ args: Arguments, _ names: [String]) throws {
    for name in names where args.int(name) <= 0 {
      throw args.error(name, "must be positive, got \(args.int(name))")
    }
  }

  /// Throws, naming `argument`, when memory of `shape` (what the builtin will allocate from
  /// user-given sizes, as one block) would not pass the memory check every tensor passes.
  static func fits(_ args: Arguments, _ argument: String, _ shape: [Int], _ what: String) throws {
    do {
      _ = try Shape.elementCount(shape, op: "memory")
    } catch {
      throw args.error(
        argument,
        "\(what) would need more memory than SkelLab may take "
          + "(\(Shape.maximumBytes >> 20) MiB); choose smaller sizes")
    }
  }

  // MARK: Building

  static func registerBuilders(_ r: Registry) {
    r.register(
      "encoder",
      [
        BuiltinParameter("dim", .int, default: .int(256)),
        BuiltinParameter("depth", .int, default: .int(8)),
        BuiltinParameter("heads", .int, default: .int(8)),
        BuiltinParameter("patch", .optional(.int), default: .nil),
        BuiltinParameter("frames", .int, default: .int(120)),
        BuiltinParameter("joints", .int, default: .int(25)),
        BuiltinParameter("flavor", .string, default: .string("mamp")),
        BuiltinParameter("mlp_ratio", .int, default: .int(4)),
        BuiltinParameter("drop_path", .number, default: .float(0)),
      ],
      doc: "The skeleton transformer encoder (methods.md §2). flavor \"mamp\" (LayerNorm eps "
        + "1e-5, no LayerScale, segment 4) or \"skeleton2vec\" (eps 1e-6, LayerScale 1e-4, "
        + "segment 3); patch overrides the segment length. enc(x) maps [B, T, J, 3] to the "
        + "final-norm tokens [B, T/patch·J, dim]."
    ) { args, _ in
      try positive(args, ["dim", "depth", "heads", "frames", "joints", "mlp_ratio"])
      // Every block holds (4 + 2·mlp_ratio)·dim² weights; the positions frames·joints·dim.
      let (dim, depth) = (args.int("dim"), args.int("depth"))
      try fits(
        args, depth > dim ? "depth" : "dim",
        [depth, 4 + 2 * min(args.int("mlp_ratio"), 1 << 20), dim, dim],
        "an encoder of dim \(dim) and depth \(depth)")
      try fits(
        args, "frames", [args.int("frames"), args.int("joints"), dim],
        "positions for \(args.int("frames")) frames of \(args.int("joints")) joints")
      guard let flavor = Flavor(rawValue: args.string("flavor")) else {
        throw args.error(
          "flavor", "must be \"mamp\" or \"skeleton2vec\", got \"\(args.string("flavor"))\"")
      }
      let dropPath = args.number("drop_path")
      guard (0..<1).contains(dropPath) else {
        throw args.error("drop_path", "must be in [0, 1), got \(Value.float(dropPath).repr)")
      }
      let encoder = try Encoder(
        flavor: flavor, dimension: args.int("dim"), depth: args.int("depth"),
        heads: args.int("heads"), frames: args.int("frames"), joints: args.int("joints"),
        segment: args.optionalInt("patch"), mlpRatio: args.int("mlp_ratio"),
        dropPath: Float(dropPath))
      let title =
        "Encoder(\(flavor.rawValue), dim \(encoder.dimension), depth \(encoder.blocks.count), "
        + "heads \(encoder.heads), patch \(encoder.embedding.segment), frames \(encoder.frames), "
        + "joints \(encoder.joints))"
      return .object(ModelObject(encoder, title: title))
    }
    r.register(
      "gru_encoder",
      [
        BuiltinParameter("hidden", .int, default: .int(1024)),
        BuiltinParameter("layers", .int, default: .int(3)),
        BuiltinParameter("joints", .int, default: .int(25)),
        BuiltinParameter("bodies", .int, default: .int(2)),
        BuiltinParameter("frames", .int, default: .int(64)),
        BuiltinParameter("bidirectional", .string, default: .string("stepwise")),
      ],
      doc: "The PCM3 reference encoder (methods.md §7.1): input BatchNorm over each frame's "
        + "joints·3·bodies values, then a two-direction GRU of the given layers, hidden wide per "
        + "direction. bidirectional \"stepwise\" is the reference (both directions run forward "
        + "in time, as the official code drives it one frame at a time); \"true\" runs the "
        + "second direction backward. Its sequence feature is the last frame's output "
        + "[N, 2·hidden]; frames is the length evaluation views are cropped to (the GRU takes "
        + "any). Names as the official checkpoints (input_norm.*, encoder.gru.*): "
        + "load_weights reads encoder_q.* of a PCM3 .pth.tar. enc(x) maps [N, 3, T, J, M] to "
        + "every frame's output [N, T, 2·hidden]."
    ) { args, _ in
      try positive(args, ["hidden", "layers", "joints", "bodies", "frames"])
      let (hidden, layers) = (args.int("hidden"), args.int("layers"))
      let inputs = min(args.int("joints"), 1 << 20) * min(args.int("bodies"), 1 << 20) * 3
      try fits(
        args, "hidden",
        [
          2 * min(layers, 1 << 20), 3 * min(hidden, 1 << 30), max(inputs, 2 * min(hidden, 1 << 30)),
        ],
        "a GRU of \(layers) layers of hidden \(hidden)")
      let mode: GRU.Mode
      switch args.string("bidirectional") {
      case "stepwise": mode = .stepwise
      case "true": mode = .bidirectional
      default:
        throw args.error(
          "bidirectional",
          "must be \"stepwise\" or \"true\", got \"\(args.string("bidirectional"))\"")
      }
      let encoder = try GRUEncoder(
        hidden: hidden, layers: layers, joints: args.int("joints"), bodies: args.int("bodies"),
        frames: args.int("frames"), mode: mode)
      return .object(ModelObject(encoder, title: encoder.title))
    }
    r.register(
      "decoder",
      [
        BuiltinParameter("enc", .object("Model")),
        BuiltinParameter("depth", .int, default: .int(1)),
        BuiltinParameter("dim", .optional(.int), default: .nil),
        BuiltinParameter("heads", .optional(.int), default: .nil),
        BuiltinParameter("head", .string, default: .string("motion")),
      ],
      doc: "The MAE-style decoder of methods.md §3 for an encoder: head \"motion\" "
        + "(decoder_pred, patch·3 values per token, MAMP) or \"features\" (decoder_feat_head, "
        + "the encoder width, Skeleton2vec). dec(visible, restore) maps visible tokens [B, K, D] "
        + "and a restore index [B, L] to predictions [B, L, outputs]."
    ) { args, _ in
      let encoder = try transformer(args, "enc", for: "decoder")
      let dimension = args.optionalInt("dim") ?? encoder.dimension
      let heads = args.optionalInt("heads") ?? encoder.heads
      guard dimension > 0, heads > 0, dimension % heads == 0 else {
        throw args.error("dim", "\(dimension) must be positive and divisible by \(heads) heads")
      }
      try positive(args, ["depth"])
      try fits(
        args, "dim", [args.int("depth"), 12, dimension, dimension],
        "a decoder of dim \(dimension) and depth \(args.int("depth"))")
      let head: Decoder.Head
      switch args.string("head") {
      case "motion": head = .motion(outputs: encoder.embedding.segment * encoder.embedding.channels)
      case "features": head = .features(outputs: encoder.dimension)
      default:
        throw args.error(
          "head", "must be \"motion\" or \"features\", got \"\(args.string("head"))\"")
      }
      let flavor = encoder.flavor
      let decoder = try Decoder(
        encoderDimension: encoder.dimension, dimension: dimension, depth: args.int("depth"),
        heads: heads, segments: encoder.segments, joints: encoder.joints, head: head,
        eps: flavor.eps, layerScale: flavor.layerScale, flavor: flavor)
      return .object(
        ModelObject(
          decoder,
          title: "Decoder(\(args.string("head")), dim \(dimension), depth \(decoder.blocks.count))")
      )
    }
    r.register(
      "classifier",
      [
        BuiltinParameter("enc", .object("Model")),
        BuiltinParameter("classes", .int),
        BuiltinParameter("head", .string, default: .string("linear")),
        BuiltinParameter("hidden", .int, default: .int(2048)),
        BuiltinParameter("dropout", .number, default: .float(0.3)),
      ],
      doc: "An encoder with an evaluation head (methods.md §8): \"linear\" (BatchNorm without "
        + "affine, then Linear, on the pooled feature) or \"finetune\" (token dropout, pooling "
        + "over segments and bodies, fc1 → BatchNorm → ReLU → fc2). The encoder is shared, not "
        + "copied. clf(x) maps [N, 3, T, J, M] to logits [N, classes]."
    ) { args, _ in
      let encoder = try encoder(args, "enc")
      guard let kind = Classifier.HeadKind(rawValue: args.string("head")) else {
        throw args.error(
          "head", "must be \"linear\" or \"finetune\", got \"\(args.string("head"))\"")
      }
      guard args.int("classes") > 1 else {
        throw args.error("classes", "needs at least 2 classes, got \(args.int("classes"))")
      }
      try positive(args, ["hidden"])
      try fits(
        args, "classes",
        [args.int("classes") + args.int("hidden"), max(encoder.tuningDimension, 1) + 1],
        "a head of \(args.int("classes")) classes")
      let classifier = try Classifier(
        encoder: encoder, classes: args.int("classes"), head: kind, hidden: args.int("hidden"),
        dropout: Float(args.number("dropout")))
      return .object(
        ModelObject(
          classifier, title: "Classifier(\(kind.rawValue), \(args.int("classes")) classes)"))
    }
  }

  // MARK: Calling

  static func registerCalls(_ r: Registry) {
    r.registerCall(
      "Model",
      Builtin(
        "Model",
        [BuiltinParameter("model", .object("Model")), BuiltinParameter("inputs", variadic: true)],
        doc: "Runs the model: an encoder on [B, T, J, 3] (tokens), a classifier on "
          + "[N, 3, T, J, M] (logits), a decoder on (visible tokens, restore index)."
      ) { args, _ in
        let object = try model(args, "model")
        let inputs = try args.list("inputs").enumerated().map { i, value in
          try TensorBuiltins.tensor(value, args, "inputs")
        }
        switch object.module {
        case let encoder as Encoder:
          guard inputs.count == 1 else { throw args.error("inputs", "an encoder takes one tensor") }
          return .tensor(try encoder(inputs[0]))
        case let encoder as GRUEncoder:
          guard inputs.count == 1 else { throw args.error("inputs", "an encoder takes one tensor") }
          return .tensor(try encoder(encoder.flattened(inputs[0])))
        case let classifier as Classifier:
          guard inputs.count == 1 else {
            throw args.error("inputs", "a classifier takes one tensor")
          }
          return .tensor(try classifier(inputs[0]))
        case let decoder as Decoder:
          guard inputs.count == 2 else {
            throw args.error("inputs", "a decoder takes visible tokens and a restore index")
          }
          return .tensor(try decoder(inputs[0], restore: inputs[1]))
        default:
          throw args.error("model", "\(object.title) cannot be called")
        }
      })
    r.register(
      "hidden",
      [BuiltinParameter("enc", .object("Model")), BuiltinParameter("x")],
      doc: "The raw output of every encoder block (before the final norm) for x [B, T, J, 3], "
        + "a List of [B, L, D] tensors: the Skeleton2vec teacher's targets are built from them."
    ) { args, _ in
      let encoder = try transformer(args, "enc", for: "hidden")
      let x = try TensorBuiltins.tensor(args["x"], args, "x")
      return .list(try encoder.forwardWithHidden(x).hidden.map(Value.tensor))
    }
    r.register(
      "features",
      [BuiltinParameter("enc", .object("Model")), BuiltinParameter("x")],
      doc: "The sequence feature of methods.md §2.7 and §8 for a batch [N, 3, T, J, M]: for a "
        + "transformer the final-norm tokens averaged over all tokens and over the bodies, "
        + "[N, D]; for a GRU encoder the last frame's output, [N, 2·hidden]."
    ) { args, _ in
      let encoder = try encoder(args, "enc")
      return .tensor(try encoder.features(TensorBuiltins.tensor(args["x"], args, "x")))
    }
  }

  // MARK: Parameters and files

  static func registerInspection(_ r: Registry) {
    r.register(
      "params", [BuiltinParameter("m", .object("Model"))],
      doc: "A Record from parameter name (PyTorch's state-dict name) to tensor, in declaration "
        + "order; after backward each tensor's .grad holds its gradient."
    ) { args, _ in
      let object = try model(args, "m")
      return .record(
        RecordBox(object.module.namedParameters().map { ($0.name, .tensor($0.parameter.value)) }))
    }
    r.register(
      "summary", [BuiltinParameter("m", .object("Model"))],
      doc: "Prints the model's table: layers, output shapes, parameter counts and the total."
    ) { args, context in
      let object = try model(args, "m")
      context.write(ModelSummary.table(object.module, title: object.title) + "\n")
      return .nil
    }
    r.register(
      "load_weights",
      [
        BuiltinParameter("m", .object("Model")), .path("path"),
        BuiltinParameter("strict", .bool, default: .bool(true)),
        BuiltinParameter("prefix", .optional(.string), default: .nil),
      ],
      doc: "Loads weights by name from .safetensors, .pth or .pt (official MAMP and "
        + "Skeleton2vec checkpoints as they are: wrappers, module./_orig_mod. prefixes and "
        + "Skeleton2vec names are handled; prefix picks \"ema.model.\" (the default when present) "
        + "or \"auto_encoder.\"; a PCM3 .pth.tar gives its query encoder \"encoder_q.\" to a "
        + "gru_encoder, its projector fc.* dropped). strict=true fails listing every missing, unexpected and "
        + "mismatched name; strict=false returns what was skipped. Returns {skipped, notes}."
    ) { args, _ in
      let object = try model(args, "m")
      let path = args.string("path")
      let contents = try WeightFile.read(
        path: path, prefix: args.isNil("prefix") ? nil : args.string("prefix")
      ).fitted(to: object.module)
      let skipped: [String]
      do {
        skipped = try object.module.load(contents.state, strict: args.bool("strict"))
      } catch let error as TensorError {
        throw TensorError(error.op, "\(path): \(error.message)")
      }
      return .record(
        RecordBox([
          ("skipped", .list(skipped.map(Value.string))),
          ("notes", .list(contents.notes.map(Value.string))),
        ]))
    }
    r.registerAttribute(
      "Model",
      Attribute("parameter_count", doc: "the number of trainable values") { o in
        .int((o as? ModelObject)?.module.parameterCount ?? 0)
      })
    r.registerAttribute(
      "Model",
      Attribute(
        "training", doc: "training mode (dropout, drop path, batch statistics); settable",
        get: { o in .bool((o as? ModelObject)?.module.training ?? false) },
        set: { o, value in
          guard case .bool(let flag) = value else {
            throw ScriptError(.type, "training must be Bool, got \(value.typeName)")
          }
          (o as? ModelObject)?.module.setTraining(flag)
        }))
    r.registerAttribute(
      "Model",
      Attribute(
        "frozen", doc: "whether every parameter is frozen (no gradients); settable",
        get: { o in
          .bool(
            (o as? ModelObject)?.module.namedParameters().allSatisfy(\.parameter.isFrozen) ?? false)
        },
        set: { o, value in
          guard case .bool(let flag) = value else {
            throw ScriptError(.type, "frozen must be Bool, got \(value.typeName)")
          }
          (o as? ModelObject)?.module.setFrozen(flag)
        }))
  }

  // MARK: Optimisers

  static func registerOptimisers(_ r: Registry) {
    r.register(
      "adamw",
      [
        BuiltinParameter("m", .object("Model")),
        BuiltinParameter("lr", .number, default: .float(1e-3)),
        BuiltinParameter("betas", .list, default: .list([.float(0.9), .float(0.999)])),
        BuiltinParameter("weight_decay", .number, default: .float(0.05)),
        BuiltinParameter("eps", .number, default: .float(1e-8)),
        BuiltinParameter("layer_decay", .optional(.number), default: .nil),
      ],
      doc: "PyTorch's AdamW over the model's trainable parameters, with the weight-decay groups "
        + "of methods.md §9.1 (no decay for 1-D tensors and biases; Skeleton2vec models also "
        + "exempt positional embeddings) and optional layer-wise lr decay (fine-tuning, 0.8)."
    ) { args, _ in
      let object = try model(args, "m")
      let betas = try args.list("betas").map { value -> Double in
        switch value {
        case .int(let i): return Double(i)
        case .float(let d): return d
        default: throw args.error("betas", "must be two numbers")
        }
      }
      guard betas.count == 2 else {
        throw args.error("betas", "must be two numbers, got \(betas.count)")
      }
      let groups = try groups(object, args)
      let optimizer = try AdamW(
        groups: groups, learningRate: args.number("lr"), beta1: betas[0], beta2: betas[1],
        eps: args.number("eps"))
      return .object(OptimizerObject(optimizer, module: object.module))
    }
    r.register(
      "sgd",
      [
        BuiltinParameter("m", .object("Model")),
        BuiltinParameter("lr", .number, default: .float(0.1)),
        BuiltinParameter("momentum", .number, default: .float(0.9)),
        BuiltinParameter("weight_decay", .number, default: .float(0)),
        BuiltinParameter("nesterov", .bool, default: .bool(false)),
        BuiltinParameter("layer_decay", .optional(.number), default: .nil),
      ],
      doc: "PyTorch's SGD (momentum, Nesterov, weight decay) over the model's trainable "
        + "parameters, with the same weight-decay groups as adamw."
    ) { args, _ in
      let object = try model(args, "m")
      let optimizer = try SGD(
        groups: try groups(object, args), learningRate: args.number("lr"),
        momentum: args.number("momentum"), nesterov: args.bool("nesterov"))
      return .object(OptimizerObject(optimizer, module: object.module))
    }
    r.register(
      "step", [BuiltinParameter("opt", .object("Optimizer"))],
      doc: "Updates every parameter that has a gradient (one optimiser step)."
    ) { args, _ in
      try optimizer(args).optimizer.step()
      return .nil
    }
    r.register(
      "zero_grad", [BuiltinParameter("opt", .object("Optimizer"))],
      doc: "Forgets the gradients of the optimiser's parameters."
    ) { args, _ in
      try optimizer(args).optimizer.zeroGrad()
      return .nil
    }
    r.register(
      "lr_schedule",
      [
        BuiltinParameter("opt", .object("Optimizer")),
        BuiltinParameter("epoch", .number),
        BuiltinParameter("base", .number),
        BuiltinParameter("epochs", .number),
        BuiltinParameter("warmup", .number, default: .float(0)),
        BuiltinParameter("min", .number, default: .float(0)),
      ],
      doc: "Sets the learning rate for fractional epoch `epoch` by linear warm-up (warmup, in "
        + "epochs) then cosine "
        + "decay to `min` (methods.md §9.1) and returns it."
    ) { args, _ in
      let schedule = CosineSchedule(
        base: args.number("base"), minimum: args.number("min"),
        warmupEpochs: args.number("warmup"), epochs: args.number("epochs"))
      let lr = schedule.learningRate(epoch: args.number("epoch"))
      try optimizer(args).optimizer.learningRate = lr
      return .float(lr)
    }
    r.register(
      "clip_grad_norm",
      [BuiltinParameter("m", .object("Model")), BuiltinParameter("max_norm", .number)],
      doc: "Scales the model's gradients so that their global L2 norm is at most max_norm "
        + "(clip_grad_norm_); returns the norm before clipping."
    ) { args, _ in
      let object = try model(args, "m")
      let norm = try clipGradientNorm(
        object.module.namedParameters().map(\.parameter), maxNorm: Float(args.number("max_norm")))
      return .float(Double(norm))
    }
    r.registerAttribute(
      "Optimizer",
      Attribute(
        "lr", doc: "the base learning rate; settable",
        get: { o in .float((o as? OptimizerObject)?.optimizer.learningRate ?? 0) },
        set: { o, value in
          switch value {
          case .int(let i): (o as? OptimizerObject)?.optimizer.learningRate = Double(i)
          case .float(let d): (o as? OptimizerObject)?.optimizer.learningRate = d
          default: throw ScriptError(.type, "lr must be a number, got \(value.typeName)")
          }
        }))
    r.registerAttribute(
      "Optimizer",
      Attribute("steps", doc: "the number of steps taken") { o in
        .int((o as? OptimizerObject)?.optimizer.stepCount ?? 0)
      })
  }

  static func optimizer(_ args: Arguments) throws -> OptimizerObject {
    try args.required("opt", as: OptimizerObject.self, "an Optimizer")
  }

  static func groups(_ object: ModelObject, _ args: Arguments) throws -> [ParameterGroup] {
    let encoder =
      (object.module as? any SequenceEncoder) ?? (object.module as? Classifier)?.encoder
    let flavor = encoder?.tuningGroups.flavor ?? .mamp
    var layerDecay: LayerDecay?
    if let factor = args.optionalNumber("layer_decay") {
      guard factor > 0, factor <= 1 else {
        throw args.error("layer_decay", "must be in (0, 1], got \(Value.float(factor).repr)")
      }
      guard let depth = encoder?.tuningGroups.depth else {
        throw args.error("layer_decay", "applies to transformer blocks; \(object.title) has none")
      }
      layerDecay = LayerDecay(factor: Float(factor), depth: depth, flavor: flavor)
    }
    let groups = ParameterGroup.groups(
      object.module, weightDecay: Float(args.number("weight_decay")),
      exclusion: flavor == .mamp ? .mamp : .skeleton2vec, layerDecay: layerDecay)
    guard !groups.isEmpty else {
      throw args.error("m", "has no trainable parameters (all frozen?)")
    }
    return groups
  }

  // MARK: Losses

  static func registerLosses(_ r: Registry) {
    func pair(
      _ name: String, _ doc: String, extra: [BuiltinParameter] = [],
      _ body: @escaping (Tensor, Tensor, Arguments) throws -> Tensor
    ) {
      r.register(
        name, [BuiltinParameter("pred"), BuiltinParameter("target")] + extra, doc: doc
      ) { args, _ in
        .tensor(
          try body(
            TensorBuiltins.tensor(args["pred"], args, "pred"),
            TensorBuiltins.tensor(args["target"], args, "target"), args))
      }
    }
    pair("mse_loss", "Mean squared error over all elements.") { p, t, _ in
      try Loss.meanSquaredError(p, t)
    }
    pair(
      "smooth_l1_loss", "Smooth L1: 0.5·d²/beta where |d| < beta, else |d| − 0.5·beta; mean.",
      extra: [BuiltinParameter("beta", .number, default: .float(1))]
    ) { p, t, args in try Loss.smoothL1(p, t, beta: Float(args.number("beta"))) }
    pair(
      "cross_entropy",
      "Cross-entropy of logits [N, C] against integer labels [N] (target), "
        + "with label smoothing (methods.md §8.2: 0.1 for fine-tuning); mean over the batch.",
      extra: [BuiltinParameter("smoothing", .number, default: .float(0))]
    ) { p, t, args in
      try Loss.crossEntropy(p, labels: t, smoothing: Float(args.number("smoothing")))
    }
    pair(
      "kl_div",
      "KL(target ‖ pred) between the softmax distributions of two [N, C] logit tensors "
        + "(the target is the teacher; no gradient flows into it), averaged over the batch."
    ) { p, t, _ in try Loss.klDivergence(teacherLogits: t, studentLogits: p) }
    r.register(
      "info_nce",
      [
        BuiltinParameter("q"), BuiltinParameter("k"), BuiltinParameter("queue"),
        BuiltinParameter("temperature", .number, default: .float(0.07)),
      ],
      doc: "MoCo's InfoNCE: logits [q̂·k̂, q̂·queueᵀ]/T with the positive at class 0, mean "
        + "cross-entropy. queue is [K, D], one key per row; no gradient through k or the queue."
    ) { args, _ in
      let (loss, _) = try Loss.infoNCE(
        query: TensorBuiltins.tensor(args["q"], args, "q"),
        keys: TensorBuiltins.tensor(args["k"], args, "k"),
        queue: TensorBuiltins.tensor(args["queue"], args, "queue"),
        temperature: Float(args.number("temperature")))
      return .tensor(loss)
    }
  }
}
