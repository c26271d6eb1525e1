import Foundation
import ScriptCore
import TensorCore

extension TensorBuiltins {
  // MARK: Creation

  static func registerCreation(_ r: Registry) {
    let shapeParameter = BuiltinParameter("shape", .oneOf([.int, .list]))
    r.register(
      "tensor", [BuiltinParameter("values", tensorLike)],
      doc: "A tensor from a number or a nested List of numbers: tensor([[1, 2], [3, 4]])."
    ) { args, _ in .tensor(try tensor(args["values"], args, "values")) }
    r.register("zeros", [shapeParameter], doc: "A tensor of zeros: zeros([2, 3]).") { args, _ in
      .tensor(try Tensor.full(checked: try shape(args["shape"], args, "shape"), 0, op: "zeros"))
    }
    r.register("ones", [shapeParameter], doc: "A tensor of ones: ones([2, 3]).") { args, _ in
      .tensor(try Tensor.full(checked: try shape(args["shape"], args, "shape"), 1, op: "ones"))
    }
    r.register(
      "full", [shapeParameter, BuiltinParameter("value", .number)],
      doc: "A tensor of `shape` filled with `value`."
    ) { args, _ in
      .tensor(
        try Tensor.full(
          checked: try shape(args["shape"], args, "shape"), Float(args.number("value")), op: "full")
      )
    }
    r.register(
      "randn", [shapeParameter],
      doc: "Standard normal draws; seed(n) first makes them reproducible on every machine."
    ) { args, _ in .tensor(try Tensor.randn(try shape(args["shape"], args, "shape"))) }
    r.register(
      "rand", [shapeParameter], doc: "Uniform draws in [0, 1); reproducible after seed(n)."
    ) { args, _ in .tensor(try Tensor.rand(try shape(args["shape"], args, "shape"))) }
    r.register(
      "arange",
      [
        BuiltinParameter("start", .number),
        BuiltinParameter("end", .optional(.number), default: .nil),
        BuiltinParameter("step", .number, default: .int(1)),
      ],
      doc: "arange(n) is 0, 1, ..., n-1 as a tensor; arange(a, b, step) counts from a up to b."
    ) { args, _ in
      let (start, end) =
        args.isNil("end") ? (0, args.number("start")) : (args.number("start"), args.number("end"))
      return .tensor(try Tensor.arange(start, end, step: args.number("step")))
    }
    r.register(
      "eye", [BuiltinParameter("n", .int), BuiltinParameter("m", .optional(.int), default: .nil)],
      doc: "The n × m identity matrix (m defaults to n)."
    ) { args, _ in .tensor(try Tensor.eye(args.int("n"), args.optionalInt("m"))) }
    r.register(
      "seed", [BuiltinParameter("n", .int)],
      doc: "Restarts the random stream: every draw after seed(n) is the same on every run and "
        + "every machine."
    ) { args, _ in
      guard args.int("n") >= 0 else { throw args.error("n", "must be ≥ 0") }
      Random.seed(UInt64(args.int("n")))
      return .nil
    }
  }

  // MARK: Element-wise maths

  static func registerMaths(_ r: Registry) {
    let unary: [(String, String, (Tensor) throws -> Tensor)] = [
      ("exp", "e^x, element-wise.", { $0.exp() }),
      ("log", "Natural logarithm, element-wise.", { $0.log() }),
      ("sqrt", "Square root, element-wise.", { $0.sqrt() }),
      ("abs", "Absolute value, element-wise.", { $0.abs() }),
      ("tanh", "Hyperbolic tangent, element-wise.", { $0.tanh() }),
      ("sigmoid", "1 / (1 + e^-x), element-wise.", { $0.sigmoid() }),
      ("relu", "max(x, 0), element-wise.", { $0.relu() }),
      ("gelu", "Exact GELU 0.5·x·(1 + erf(x/√2)), element-wise.", { $0.gelu() }),
    ]
    for (name, doc, function) in unary {
      r.register(name, [BuiltinParameter("x", tensorLike)], doc: doc) { args, _ in
        .tensor(try function(try tensor(args["x"], args, "x")))
      }
    }
    r.register(
      "pow", [BuiltinParameter("x", tensorLike), BuiltinParameter("exponent", tensorLike)],
      doc: "x raised to `exponent` element-wise, broadcasting (also x ** exponent)."
    ) { args, _ in
      let x = try tensor(args["x"], args, "x")
      switch args["exponent"] {
      case .int(let p): return .tensor(x.pow(Float(p)))
      case .float(let p): return .tensor(x.pow(Float(p)))
      default: return .tensor(try Tensor.pow(x, try tensor(args["exponent"], args, "exponent")))
      }
    }
    r.register(
      "softmax",
      [BuiltinParameter("x", tensorLike), BuiltinParameter("axis", .int, default: .int(-1))],
      doc: "Softmax along `axis` (default the last), computed after subtracting the maximum."
    ) { args, _ in .tensor(try tensor(args["x"], args, "x").softmax(axis: args.int("axis"))) }
    r.register(
      "log_softmax",
      [BuiltinParameter("x", tensorLike), BuiltinParameter("axis", .int, default: .int(-1))],
      doc: "Log-softmax along `axis` (default the last)."
    ) { args, _ in .tensor(try tensor(args["x"], args, "x").logSoftmax(axis: args.int("axis"))) }
    r.register(
      "layer_norm",
      [
        BuiltinParameter("x", tensorLike),
        BuiltinParameter("weight", .optional(.object("Tensor")), default: .nil),
        BuiltinParameter("bias", .optional(.object("Tensor")), default: .nil),
        BuiltinParameter("eps", .number, default: .float(1e-5)),
      ],
      doc: "Layer normalisation over the last axis with the biased variance: "
        + "(x - mean) / sqrt(var + eps) · weight + bias."
    ) { args, _ in
      let x = try tensor(args["x"], args, "x")
      return .tensor(
        try x.layerNorm(
          weight: args.object("weight", as: TensorObject.self)?.tensor,
          bias: args.object("bias", as: TensorObject.self)?.tensor, eps: Float(args.number("eps"))))
    }
    r.register(
      "matmul", [BuiltinParameter("a", tensorLike), BuiltinParameter("b", tensorLike)],
      doc: "Matrix product with NumPy rules (also `a @ b`): batch axes broadcast, 1-D operands "
        + "are promoted."
    ) { args, _ in
      .tensor(try tensor(args["a"], args, "a").matmul(try tensor(args["b"], args, "b")))
    }
    r.register(
      "clamp",
      [
        BuiltinParameter("x", tensorLike),
        BuiltinParameter("min", .optional(.number), default: .nil),
        BuiltinParameter("max", .optional(.number), default: .nil),
      ],
      doc: "Limits every element to [min, max]; either bound may be left out."
    ) { args, _ in
      .tensor(
        try tensor(args["x"], args, "x").clamp(
          min: args.optionalNumber("min").map(Float.init),
          max: args.optionalNumber("max").map(Float.init)))
    }
    r.register(
      "where",
      [
        BuiltinParameter("condition", tensorLike), BuiltinParameter("a", tensorLike),
        BuiltinParameter("b", tensorLike),
      ],
      doc: "Takes `a` where `condition` is non-zero and `b` elsewhere, broadcasting all three."
    ) { args, _ in
      .tensor(
        try Tensor.where(
          try tensor(args["condition"], args, "condition"), try tensor(args["a"], args, "a"),
          try tensor(args["b"], args, "b")))
    }
    r.register(
      "allclose",
      [
        BuiltinParameter("a", tensorLike), BuiltinParameter("b", tensorLike),
        BuiltinParameter("rtol", .number, default: .float(1e-5)),
        BuiltinParameter("atol", .number, default: .float(1e-6)),
      ],
      doc: "Whether |a - b| ≤ atol + rtol·|b| for every element (shapes must broadcast). A Bool."
    ) { args, _ in
      let a = try tensor(args["a"], args, "a")
      let b = try tensor(args["b"], args, "b")
      let gap = try (a - b).abs()
      let limit = b.abs() * Float(args.number("rtol")) + Float(args.number("atol"))
      let ok = try Tensor.lessEqual(gap, limit)
      return .bool(try ok.min().item() == 1)
    }
    r.register(
      "max_abs_diff", [BuiltinParameter("a", tensorLike), BuiltinParameter("b", tensorLike)],
      doc: "The largest absolute element difference of two tensors (shapes must broadcast)."
    ) { args, _ in
      let gap = try (tensor(args["a"], args, "a") - tensor(args["b"], args, "b")).abs()
      return .float(Double(try gap.max().item()))
    }
  }

  // MARK: Reductions

  static func registerReductions(_ r: Registry) {
    let reductions: [(String, String, (Tensor, [Int]?, Bool) throws -> Tensor)] = [
      (
        "sum", "Sum over `axis` (an Int or a List; all axes when left out).",
        { try $0.sum(axes: $1, keepDim: $2) }
      ),
      (
        "mean", "Mean over `axis` (all axes when left out).", { try $0.mean(axes: $1, keepDim: $2) }
      ),
      (
        "logsumexp", "log(sum(exp(x))) over `axis`, computed stably.",
        { try $0.logSumExp(axes: $1, keepDim: $2) }
      ),
    ]
    for (name, doc, function) in reductions {
      r.register(
        name,
        [
          BuiltinParameter("x", tensorLike), BuiltinParameter("axis", axisType, default: .nil),
          BuiltinParameter("keepdim", .bool, default: .bool(false)),
        ],
        doc: doc + " With keepdim=true the reduced axes stay as size 1."
      ) { args, _ in
        .tensor(
          try function(
            try tensor(args["x"], args, "x"), try axes(args["axis"], args, "axis"),
            args.bool("keepdim")))
      }
    }
    for (name, unbiasedDoc) in [("var", "variance"), ("std", "standard deviation")] {
      r.register(
        name,
        [
          BuiltinParameter("x", tensorLike), BuiltinParameter("axis", axisType, default: .nil),
          BuiltinParameter("keepdim", .bool, default: .bool(false)),
          BuiltinParameter("unbiased", .bool, default: .bool(false)),
        ],
        doc: "The \(unbiasedDoc) over `axis`: biased (divide by n) unless unbiased=true, as NumPy."
      ) { args, _ in
        let x = try tensor(args["x"], args, "x")
        let a = try axes(args["axis"], args, "axis")
        let keep = args.bool("keepdim")
        let unbiased = args.bool("unbiased")
        return .tensor(
          name == "var"
            ? try x.variance(axes: a, keepDim: keep, unbiased: unbiased)
            : try x.standardDeviation(axes: a, keepDim: keep, unbiased: unbiased))
      }
    }
    for name in ["max", "min"] {
      r.register(
        name,
        [
          BuiltinParameter("x", .oneOf([tensorLike, .list])),
          BuiltinParameter("axis", axisType, default: .nil),
          BuiltinParameter("keepdim", .bool, default: .bool(false)),
        ],
        doc: "The \(name == "max" ? "largest" : "smallest") value over `axis` (all axes when left "
          + "out). Of a List of numbers, the \(name == "max" ? "largest" : "smallest") number."
      ) { args, _ in
        if case .list(let box) = args["x"],
          box.items.allSatisfy({
            if case .int = $0 { return true }; if case .float = $0 { return true }; return false
          }), !box.items.isEmpty
        {
          let isInt = box.items.allSatisfy {
            if case .int = $0 { return true }; return false
          }
          let numbers = box.items.map { v -> Double in
            if case .int(let i) = v { return Double(i) }; if case .float(let d) = v { return d };
            return 0
          }
          let best = name == "max" ? numbers.max() ?? 0 : numbers.min() ?? 0
          return isInt ? .int(Int(best)) : .float(best)
        }
        let x = try tensor(args["x"], args, "x")
        let a = try axes(args["axis"], args, "axis")
        return .tensor(
          name == "max"
            ? try x.max(axes: a, keepDim: args.bool("keepdim"))
            : try x.min(axes: a, keepDim: args.bool("keepdim")))
      }
    }
    r.register(
      "argmax",
      [
        BuiltinParameter("x", tensorLike), BuiltinParameter("axis", .optional(.int), default: .nil),
        BuiltinParameter("keepdim", .bool, default: .bool(false)),
      ],
      doc: "Positions of the largest values along `axis` (first on ties); of the flattened tensor "
        + "when `axis` is left out."
    ) { args, _ in
      .tensor(
        try tensor(args["x"], args, "x").argmax(
          axis: args.optionalInt("axis"), keepDim: args.bool("keepdim")))
    }
    r.register(
      "item", [BuiltinParameter("x", .object("Tensor"))],
      doc: "The value of a one-element tensor, as a Float."
    ) { args, _ in .float(Double(try tensor(args["x"], args, "x").item())) }
    r.register(
      "list", [BuiltinParameter("x", .oneOf([.object("Tensor"), .list, .record, .string]))],
      doc: "A tensor as nested Lists of Float (a Record's keys, a String's characters)."
    ) { args, _ in
      switch args["x"] {
      case .object(let o as TensorObject): return nested(o.tensor)
      case .list(let box): return .list(box.items)
      case .record(let box): return .list(box.keys.map(Value.string))
      case .string(let s): return .list(s.map { .string(String($0)) })
      default: return .nil
      }
    }
    r.register(
      "tolist", [BuiltinParameter("x", .object("Tensor"))],
      doc: "A tensor as nested Lists of Float, as PyTorch's t.tolist() (the same as list(t))."
    ) { args, _ in
      guard case .object(let o as TensorObject) = args["x"] else { return .nil }
      return nested(o.tensor)
    }
    r.register(
      "print_options",
      [
        BuiltinParameter("threshold", .optional(.int), default: .nil),
        BuiltinParameter("edge", .optional(.int), default: .nil),
        BuiltinParameter("precision", .optional(.int), default: .nil),
        BuiltinParameter("reset", .bool, default: .bool(false)),
      ],
      doc: "How tensors print, as torch.set_printoptions: above `threshold` elements only the "
        + "shape and statistics (default 1000); `edge` items at each end of a long axis (3); "
        + "`precision` digits after the point (default: the shortest form that reads back). "
        + "reset=true restores the defaults. Returns the options as a Record."
    ) { args, _ in
      var options = args.bool("reset") ? TensorDisplay.Options() : TensorDisplay.options
      if !args.isNil("threshold") {
        guard args.int("threshold") >= 0 else {
          throw args.error("threshold", "must be 0 or more")
        }
        options.threshold = args.int("threshold")
      }
      if !args.isNil("edge") {
        guard (1...1000).contains(args.int("edge")) else {
          throw args.error("edge", "must be in 1...1000")
        }
        options.edge = args.int("edge")
      }
      if !args.isNil("precision") {
        guard (0...12).contains(args.int("precision")) else {
          throw args.error("precision", "must be in 0...12")
        }
        options.precision = args.int("precision")
      }
      TensorDisplay.options = options
      return .record(
        RecordBox([
          ("threshold", .int(options.threshold)), ("edge", .int(options.edge)),
          ("precision", options.precision.map(Value.int) ?? .nil),
        ]))
    }
  }

  // MARK: Shapes

  static func registerShapes(_ r: Registry) {
    r.register(
      "reshape",
      [
        BuiltinParameter("x", tensorLike),
        BuiltinParameter("shape", .oneOf([.int, .list]), variadic: false),
      ],
      doc: "The same elements in a new shape; one size may be -1 and is inferred."
    ) { args, _ in
      .tensor(try tensor(args["x"], args, "x").reshaped(try shape(args["shape"], args, "shape")))
    }
    r.register(
      "permute", [BuiltinParameter("x", tensorLike), BuiltinParameter("axes", .list)],
      doc: "Reorders the axes: axis i of the result is axis axes[i] of x."
    ) { args, _ in
      .tensor(try tensor(args["x"], args, "x").permuted(try shape(args["axes"], args, "axes")))
    }
    r.register(
      "transpose",
      [
        BuiltinParameter("x", tensorLike), BuiltinParameter("a", .int, default: .int(-2)),
        BuiltinParameter("b", .int, default: .int(-1)),
      ],
      doc: "Swaps two axes; with none given, the last two."
    ) { args, _ in
      .tensor(try tensor(args["x"], args, "x").transposed(args.int("a"), args.int("b")))
    }
    r.register(
      "squeeze",
      [
        BuiltinParameter("x", tensorLike), BuiltinParameter("axis", .optional(.int), default: .nil),
      ],
      doc: "Removes a size-1 axis, or every size-1 axis when none is given."
    ) { args, _ in
      .tensor(try tensor(args["x"], args, "x").squeezed(axis: args.optionalInt("axis")))
    }
    r.register(
      "unsqueeze", [BuiltinParameter("x", tensorLike), BuiltinParameter("axis", .int)],
      doc: "Inserts a size-1 axis at `axis`."
    ) { args, _ in .tensor(try tensor(args["x"], args, "x").unsqueezed(axis: args.int("axis"))) }
    r.register(
      "concat",
      [BuiltinParameter("tensors", .list), BuiltinParameter("axis", .int, default: .int(0))],
      doc: "Joins a List of tensors along an existing axis."
    ) { args, _ in
      .tensor(
        try Tensor.concat(tensors(args, "tensors"), axis: args.int("axis")))
    }
    r.register(
      "stack",
      [BuiltinParameter("tensors", .list), BuiltinParameter("axis", .int, default: .int(0))],
      doc: "Joins a List of same-shaped tensors along a new axis."
    ) { args, _ in
      .tensor(
        try Tensor.stack(tensors(args, "tensors"), axis: args.int("axis")))
    }
  }

  // MARK: Autograd

  static func registerAutograd(_ r: Registry) {
    r.register(
      "backward",
      [
        BuiltinParameter("loss", .object("Tensor")),
        BuiltinParameter("retain_graph", .bool, default: .bool(false)),
      ],
      doc: "Back-propagates from a one-element tensor, adding to the .grad of every leaf with "
        + "requires_grad set. As in PyTorch, the graph's saved tensors are freed on the way "
        + "(a second backward through it is an error) unless retain_graph=true."
    ) { args, _ in
      try tensor(args["loss"], args, "loss").backward(retainGraph: args.bool("retain_graph"))
      return .nil
    }
    r.register(
      "detach", [BuiltinParameter("x", .object("Tensor"))],
      doc: "The same values with no gradient flowing through."
    ) { args, _ in .tensor(try tensor(args["x"], args, "x").detached()) }
    r.register(
      "no_grad", [BuiltinParameter("f", .callable)],
      doc: "Calls the function f with no gradients recorded (inference, teacher targets) and "
        + "returns its value."
    ) { args, context in try Autograd.noGrad { try context.call(args["f"], []) } }
  }

  // MARK: Files

  static func registerFiles(_ r: Registry) {
    r.register(
      "memory", [],
      doc: "This process's memory in MiB as a Record: rss (resident now), peak (the most it has "
        + "been resident, VmHWM) and cache (freed tensor buffers kept for reuse; fit and the "
        + "evaluation protocols empty it when they end)."
    ) { _, _ in
      let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
      func field(_ name: String) -> Double {
        for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
          let digits = line.dropFirst(name.count + 1).filter(\.isNumber)
          return (Double(String(digits)) ?? 0) / 1024  // kB
        }
        return 0
      }
      return .record(
        RecordBox([
          ("rss", .float(field("VmRSS"))), ("peak", .float(field("VmHWM"))),
          ("cache", .float(Double(BufferCache.heldBytes) / 1_048_576)),
        ]))
    }
    r.register(
      "load", [.path("path")],
      doc: "Reads a file by its extension: .safetensors and .npz give a Record of tensors (in "
        + "file order), .npy gives a tensor."
    ) { args, _ in
      let path = args.string("path")
      if path.hasSuffix(".safetensors") {
        let file = try SafeTensors.read(path: path)
        return .record(RecordBox(try file.names.map { ($0, .tensor(try file.tensor($0))) }))
      }
      if path.hasSuffix(".npy") { return .tensor(try NumPy.readArray(path: path).tensor) }
      if path.hasSuffix(".npz") {
        return .record(
          RecordBox(try NumPy.readArchive(path: path).map { ($0.name, .tensor($0.array.tensor)) }))
      }
      throw args.error("path", "'\(path)': load reads .safetensors, .npy and .npz files")
    }
    r.register(
      "save",
      [
        .path("path"),
        BuiltinParameter("value", .oneOf([.object("Tensor"), .record, .object("Model")])),
      ],
      doc: "Writes by the extension: a tensor to .npy, a Record of tensors to .npz or "
        + ".safetensors (a single tensor there is stored as 'tensor'), a Model's parameters and "
        + "buffers (its state dict) to .safetensors or .npz. Always atomically: a temporary "
        + "file, then a rename."
    ) { args, _ in
      let path = args.string("path")
      var named: [(String, Tensor)] = []
      switch args["value"] {
      case .object(let o as TensorObject): named = [("tensor", o.tensor)]
      case .object(let o as ModelObject): named = o.module.stateDict().map { ($0.name, $0.tensor) }
      case .record(let box):
        for (key, value) in box.entries {
          guard case .object(let o as TensorObject) = value else {
            throw args.error("value", "entry '\(key)' is \(value.typeName), not a Tensor")
          }
          named.append((key, o.tensor))
        }
      default: break
      }
      if path.hasSuffix(".safetensors") {
        try SafeTensors.write(
          Dictionary(
            named.map { ($0.0, SafeTensors.Value.float32($0.1)) }, uniquingKeysWith: { $1 }),
          to: path)
      } else if path.hasSuffix(".npz") {
        try NumPy.writeArchive(named.map { (name: $0.0, tensor: $0.1) }, to: path)
      } else if path.hasSuffix(".npy") {
        guard case .object(let o as TensorObject) = args["value"] else {
          throw args.error("value", ".npy holds one tensor; save a Record to .npz or .safetensors")
        }
        try NumPy.writeArray(o.tensor, to: path)
      } else {
        throw args.error("path", "'\(path)': save writes .npy, .npz and .safetensors files")
      }
      return .nil
    }
  }
}
