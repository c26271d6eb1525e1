import Foundation
import ScriptCore
import SkeletonData
import TensorCore

/// A dataset as the language holds it, with its augmentations and, when split, its halves.
final class DatasetObject: ScriptObject {
  let dataset: SkeletonDataset
  let augmentations: [Augmentation]
  let split: String?
  let train: DatasetObject?
  let test: DatasetObject?

  init(
    _ dataset: SkeletonDataset, augmentations: [Augmentation] = [], split: String? = nil,
    train: DatasetObject? = nil, test: DatasetObject? = nil
  ) {
    self.dataset = dataset
    self.augmentations = augmentations
    self.split = split
    self.train = train
    self.test = test
  }

  var typeName: String { "Dataset" }

  /// Sample `i` with this dataset's augmentations (seeded by the index).
  func sample(_ i: Int) throws -> SkeletonSample {
    try Loader.augmentedSample(dataset, i, augmentations: augmentations)
  }

  func display() -> String {
    let shape = "[" + dataset.sampleShape.map(String.init).joined(separator: ", ") + "]"
    var text =
      "Dataset \(dataset.kind): \(dataset.count) samples, \(dataset.classNames.count) classes, "
      + "sample \(shape) (C, T, V, M), \(dataset.layout.name)"
    if let split, let train, let test {
      text += "\n  split \(split): train \(train.dataset.count), test \(test.dataset.count)"
    }
    if !augmentations.isEmpty {
      text += "\n  augmentations: " + augmentations.map { "\($0)" }.joined(separator: ", ")
    }
    if !dataset.skipped.isEmpty {
      text +=
        "\n  skipped \(dataset.skipped.count): " + dataset.skipped.prefix(3).joined(separator: "; ")
        + (dataset.skipped.count > 3 ? "; …" : "")
    }
    return text
  }
}

/// A loader as the language holds it; iterating gives batch Records for one epoch.
final class LoaderObject: ScriptObject {
  let loader: Loader
  init(_ loader: Loader) { self.loader = loader }
  var typeName: String { "Loader" }
  func display() -> String {
    "Loader(\(loader.dataset.count) samples, batch \(loader.batchSize), "
      + "\(loader.batchesPerEpoch) batches per epoch, shuffle \(loader.shuffle), seed \(loader.seed), "
      + "epoch \(loader.epoch), next batch \(loader.position))"
  }
}

/// The data builtins of language.md §6 "data" (methods.md §1).
enum DataBuiltins {
  static func register(in r: Registry) {
    r.registerType(
      "Dataset",
      doc: "Skeleton sequences [C, T, V, M] with labels and metadata. ds[i] is a sample Record "
        + "(x, label, length, subject, view, setup, source); len(ds); .train and .test when split.")
    r.registerType("Loader", doc: "Batches of a dataset; for b in loader gives {x, label, length}.")
    registerDatasets(r)
    registerTypeTables(r)
    registerTransforms(r)
    registerSampleFunctions(r)
  }

  /// Throws, naming `argument`, when samples resized to `frames` frames would not pass the
  /// memory check (a batch of 256 of them, as the loaders make).
  static func cropFits(
    _ args: Arguments, _ argument: String, _ frames: Int, _ data: SkeletonDataset
  )
    throws
  {
    let shape = data.sampleShape
    try ModelBuiltins.fits(
      args, argument, [256, shape[0], frames, shape[2], shape[3]],
      "a batch of samples of \(frames) frames")
  }

  static func dataset(_ args: Arguments, _ name: String) throws -> DatasetObject {
    try args.required(name, as: DatasetObject.self, "a Dataset")
  }

  /// A sample as the language holds it; `class` is the label's name in `names` ("" when the
  /// label has none).
  static func record(_ s: SkeletonSample, names: [String]) -> Value {
    .record(
      RecordBox([
        ("x", .tensor(s.data)), ("label", .int(s.label)),
        ("class", .string(names.indices.contains(s.label) ? names[s.label] : "")),
        ("length", .int(s.length)), ("subject", .int(s.subject)), ("view", .int(s.view)),
        ("setup", .int(s.setup)), ("source", .string(s.source)),
      ]))
  }

  /// Splits a dataset object by a standard split name.
  static func split(_ object: DatasetObject, _ name: String) throws -> DatasetObject {
    let (train, test) = try object.dataset.standardSplit(name)
    return DatasetObject(
      object.dataset, augmentations: object.augmentations, split: name,
      train: DatasetObject(train, augmentations: object.augmentations),
      test: DatasetObject(test, augmentations: object.augmentations))
  }

  // MARK: Building

  static func registerDatasets(_ r: Registry) {
    r.register(
      "dataset",
      [
        BuiltinParameter("kind", .string, default: .string("synthetic")),
        .path("path", optional: true),
        BuiltinParameter("split", .optional(.string), default: .nil),
        .path("labels", optional: true),
        .path("frames_file", optional: true),
        BuiltinParameter("seed", .int, default: .int(0)),
        BuiltinParameter("subjects", .int, default: .int(10)),
        BuiltinParameter("views", .int, default: .int(3)),
        BuiltinParameter("repetitions", .int, default: .int(2)),
        BuiltinParameter("frames", .int, default: .int(64)),
        BuiltinParameter("bodies", .string, default: .string("denoised")),
        BuiltinParameter("normalize", .string, default: .string("mamp")),
        .path("cache", optional: true),
      ],
      doc: "A skeleton dataset. kind \"synthetic\" (the built-in generator: seed, subjects, views, "
        + "repetitions, frames; needs no files), \"ntu\" (a folder of raw .skeleton files; bodies "
        + "\"denoised\"|\"energy\", normalize \"mamp\"|\"agcn\"|\"none\"), \"npz\" (MAMP's "
        + "x_train/y_train/x_test/y_test file: .train and .test), \"agcn\" (path = *_data_joint.npy, "
        + "labels = *_label.pkl or .npy, frames_file = *_num_frame.npy; or path = the folder "
        + "CTR-GCN-style preprocessing writes, with train_data_joint.npy, train_label.pkl, "
        + "train_num_frame.npy and val_* (or test_*) beside them: .train and .test), \"pyskl\" (path = "
        + "*_3danno.pkl; split \"xsub\" gives xsub_train/xsub_val), \"pkummd\" (path = skeleton "
        + "folder, labels = label folder), \"msr\" (MSR Action3D folder). split \"xsub\", "
        + "\"xsub120\", \"xview\" or \"xset\" adds .train and .test. cache = an .npz path: "
        + "reloaded if it exists, written otherwise."
    ) { args, context in
      let kind = args.string("kind")
      func path() throws -> String {
        guard case .string(let p) = args["path"] else {
          throw args.error("path", "dataset \"\(kind)\" needs path=")
        }
        return p
      }
      func labels() throws -> String {
        guard case .string(let p) = args["labels"] else {
          throw args.error("labels", "dataset \"\(kind)\" needs labels=")
        }
        return p
      }
      let splitName = args.isNil("split") ? nil : args.string("split")
      var isFolder: ObjCBool = false
      if kind == "agcn", !args.isNil("cache"), case .string(let p) = args["path"],
        FileManager.default.fileExists(atPath: p, isDirectory: &isFolder), isFolder.boolValue
      {
        throw args.error(
          "cache", "the AGCN folder form reads its .npy files directly; cache= is for one file")
      }
      if let cache = args.isNil("cache") ? nil : args.string("cache"),
        FileManager.default.fileExists(atPath: cache)
      {
        let object = DatasetObject(try SkeletonDataset.cached(path: cache, kind: kind))
        return .object(try splitName.map { try split(object, $0) } ?? object)
      }
      var object: DatasetObject
      switch kind {
      case "synthetic":
        for name in ["subjects", "views", "repetitions"] where args.int(name) > 100_000 {
          throw args.error(name, "at most 100000, got \(args.int(name))")
        }
        // Every sample is [3, frames, 25, 2]; the index holds one entry per sample.
        try ModelBuiltins.fits(
          args, "frames", [max(args.int("frames"), 0), 150], "\(args.int("frames")) frames")
        try ModelBuiltins.fits(
          args, "subjects",
          [
            max(args.int("subjects"), 0), max(args.int("views"), 0),
            max(args.int("repetitions"), 0), SyntheticSkeletons.classes.count, 16,
          ], "a synthetic set of that many samples")
        let generator = try SyntheticSkeletons(
          seed: UInt64(max(args.int("seed"), 0)), subjects: args.int("subjects"),
          views: args.int("views"),
          repetitions: args.int("repetitions"), frames: args.int("frames"))
        object = DatasetObject(SkeletonDataset.synthetic(generator))
      case "ntu":
        guard let selection = NTUSkeletonReader.BodySelection(rawValue: args.string("bodies"))
        else {
          throw args.error("bodies", "must be \"denoised\" or \"energy\"")
        }
        guard let normalization = DatasetReaders.Normalization(rawValue: args.string("normalize"))
        else {
          throw args.error("normalize", "must be \"mamp\", \"agcn\" or \"none\"")
        }
        object = DatasetObject(
          try DatasetReaders.ntu(
            folder: try path(), selection: selection, normalization: normalization))
      case "msr": object = DatasetObject(try DatasetReaders.msr(folder: try path()))
      case "npz":
        let p = try path()
        let train = DatasetObject(try DatasetReaders.npz(path: p, split: "train"))
        let test = DatasetObject(try DatasetReaders.npz(path: p, split: "test"))
        return .object(DatasetObject(train.dataset, split: "file", train: train, test: test))
      case "agcn":
        if FileManager.default.fileExists(atPath: try path(), isDirectory: &isFolder),
          isFolder.boolValue
        {
          // CTR-GCN-style preprocessing: train_* and val_* (or test_*) files side by side.
          let (train, test) = try DatasetReaders.agcnFolder(try path())
          return .object(
            DatasetObject(
              train, split: "file", train: DatasetObject(train), test: DatasetObject(test)))
        }
        object = DatasetObject(
          try DatasetReaders.agcn(
            data: try path(), labels: try labels(),
            frames: args.isNil("frames_file") ? nil : args.string("frames_file")))
      case "pyskl":
        let p = try path()
        guard let name = splitName else {
          throw args.error("split", "dataset \"pyskl\" needs split= (e.g. \"xsub\")")
        }
        let train = DatasetObject(try DatasetReaders.pyskl(path: p, split: name + "_train"))
        let test = DatasetObject(try DatasetReaders.pyskl(path: p, split: name + "_val"))
        return .object(DatasetObject(train.dataset, split: name, train: train, test: test))
      case "pkummd":
        object = DatasetObject(
          try DatasetReaders.pkummd(skeletonFolder: try path(), labelFolder: try labels()))
      default:
        throw args.error(
          "kind",
          "unknown dataset kind \"\(kind)\" (synthetic, ntu, npz, agcn, pyskl, pkummd, msr)")
      }
      if !object.dataset.skipped.isEmpty {
        context.write("dataset \(kind): skipped \(object.dataset.skipped.count) sequence(s)\n")
      }
      if let cache = args.isNil("cache") ? nil : args.string("cache") {
        try object.dataset.cache(to: cache)
      }
      return .object(try splitName.map { try split(object, $0) } ?? object)
    }
    r.register(
      "joint_layout",
      [
        BuiltinParameter("name", .string), BuiltinParameter("joints", .list),
        BuiltinParameter("bones", .list, default: .list([])),
        BuiltinParameter("parts", .list, default: .list([])),
        BuiltinParameter("centre", .int, default: .int(0)),
        BuiltinParameter("spine", .optional(.list), default: .nil),
        BuiltinParameter("shoulders", .optional(.list), default: .nil),
        BuiltinParameter("mirrored", .list, default: .list([])),
      ],
      doc: "Describes a skeleton SkelLab does not know (an 18-joint OpenPose export, say), for "
        + "every dataset of that many joints read after it: joint names, bones [[parent, "
        + "child], ...] for drawing, parts [[\"left arm\", [joints]], ...] for body-part masks "
        + "and occlusion, the centre joint, the spine [from, to] and shoulders [left, right] "
        + "that normalisation aligns, mirrored [[left, right], ...] pairs. Indices are 0-based. "
        + "Returns a Record of it."
    ) { args, _ in
      func index(_ value: Value, _ what: String) throws -> Int {
        guard case .int(let i) = value else { throw args.error(what, "joint indices are Ints") }
        return i
      }
      func pair(_ value: Value, _ what: String) throws -> (Int, Int) {
        guard case .list(let box) = value, box.items.count == 2 else {
          throw args.error(what, "expects pairs [a, b] of joint indices")
        }
        return (try index(box.items[0], what), try index(box.items[1], what))
      }
      let names = try args.list("joints").map { value -> String in
        guard case .string(let name) = value else {
          throw args.error("joints", "names are Strings")
        }
        return name
      }
      let parts = try args.list("parts").map { value -> (name: String, joints: [Int]) in
        guard case .list(let box) = value, box.items.count == 2,
          case .string(let name) = box.items[0], case .list(let joints) = box.items[1]
        else { throw args.error("parts", "expects [[\"name\", [joints]], ...]") }
        return (name, try joints.items.map { try index($0, "parts") })
      }
      let layout = JointLayout(
        name: args.string("name"), joints: names,
        bones: try args.list("bones").map { try pair($0, "bones") }, parts: parts,
        mirrored: try args.list("mirrored").map { try pair($0, "mirrored") },
        centre: args.int("centre"),
        spine: try args.isNil("spine") ? (0, args.int("centre")) : pair(args["spine"], "spine"),
        shoulders: try args.isNil("shoulders") ? (0, 0) : pair(args["shoulders"], "shoulders"))
      do {
        try JointLayout.register(layout)
      } catch let error as TensorError {
        throw args.error("joints", error.message)
      }
      return .record(
        RecordBox([
          ("name", .string(layout.name)), ("joints", .int(layout.count)),
          ("bones", .int(layout.bones.count)), ("parts", .list(parts.map { .string($0.name) })),
        ]))
    }
    r.register(
      "split",
      [
        BuiltinParameter("ds", .optional(.object("Dataset")), default: .nil),
        BuiltinParameter("by", .optional(.oneOf([.string, .callable])), default: .nil),
        BuiltinParameter("train", .optional(.object("Dataset")), default: .nil),
        BuiltinParameter("test", .optional(.object("Dataset")), default: .nil),
      ],
      doc: "The dataset with .train and .test: a standard split — \"xsub\" (NTU-60's training "
        + "performers; odd subjects for MSR and the synthetic set), \"xsub120\", \"xview\" "
        + "(camera or view 1 is the test set), \"xset\" (even setups train) — or a function of "
        + "a sample's metadata Record {label, subject, view, setup, replication, source} that is "
        + "true for training samples. split(train=a, test=b) pairs two datasets that come as "
        + "separate files (they must share a joint layout)."
    ) { args, context in
      if !args.isNil("train") || !args.isNil("test") {
        guard args.isNil("ds"), args.isNil("by") else {
          throw args.error("train", "give either ds and by, or train= and test=, not both")
        }
        guard let train = args.object("train", as: DatasetObject.self),
          let test = args.object("test", as: DatasetObject.self)
        else {
          throw args.error(args.isNil("train") ? "train" : "test", "give both train= and test=")
        }
        guard train.dataset.layout.name == test.dataset.layout.name else {
          throw args.error(
            "test",
            "the test set's joints (\(test.dataset.layout.name), \(test.dataset.layout.count)) "
              + "are not the training set's (\(train.dataset.layout.name), "
              + "\(train.dataset.layout.count))")
        }
        return .object(
          DatasetObject(
            train.dataset, augmentations: train.augmentations, split: "given", train: train,
            test: test))
      }
      guard !args.isNil("ds") else {
        throw args.error("ds", "split needs a dataset and how to split it, or train= and test=")
      }
      guard !args.isNil("by") else {
        throw args.error("by", "split(ds, by) needs by: \"xsub\", \"xview\", ... or a function")
      }
      let object = try dataset(args, "ds")
      if case .string(let name) = args["by"] { return .object(try split(object, name)) }
      var failure: Error?
      let (train, test) = try object.dataset.split { m in
        guard failure == nil else { return false }
        let record = Value.record(
          RecordBox([
            ("label", .int(m.label)), ("subject", .int(m.subject)), ("view", .int(m.view)),
            ("setup", .int(m.setup)), ("replication", .int(m.replication)),
            ("source", .string(m.source)),
          ]))
        do {
          let verdict = try context.call(args["by"], [record])
          guard case .bool(let flag) = verdict else {
            throw args.error("by", "the function must return a Bool, got \(verdict.typeName)")
          }
          return flag
        } catch {
          failure = error
          return false
        }
      }
      if let failure { throw failure }
      return .object(
        DatasetObject(
          object.dataset, augmentations: object.augmentations, split: "by function",
          train: DatasetObject(train, augmentations: object.augmentations),
          test: DatasetObject(test, augmentations: object.augmentations)))
    }
    r.register(
      "subset",
      [
        BuiltinParameter("ds", .object("Dataset")),
        BuiltinParameter("fraction", .optional(.number), default: .nil),
        BuiltinParameter("per_class", .bool, default: .bool(true)),
        BuiltinParameter("seed", .int, default: .int(0)),
        BuiltinParameter("classes", .optional(.list), default: .nil),
      ],
      doc: "A seeded random subset: floor(n·fraction) samples (at least one), per class when "
        + "per_class (the semi-supervised 1% and 10% subsets); or the samples of the listed classes "
        + "(held-out classes for few-shot)."
    ) { args, _ in
      let object = try dataset(args, "ds")
      var result = object.dataset
      if let fraction = args.optionalNumber("fraction") {
        result = try result.fraction(
          fraction, perClass: args.bool("per_class"), seed: UInt64(max(args.int("seed"), 0)))
      }
      if !args.isNil("classes") {
        let classes = try args.list("classes").map { value -> Int in
          guard case .int(let c) = value else {
            throw args.error("classes", "must be a List of Int")
          }
          return c
        }
        result = try result.classes(Set(classes))
      }
      guard args.optionalNumber("fraction") != nil || !args.isNil("classes") else {
        throw args.error("fraction", "give fraction= or classes=")
      }
      return .object(DatasetObject(result, augmentations: object.augmentations))
    }
    r.register(
      "loader",
      [
        BuiltinParameter("ds", .object("Dataset")),
        BuiltinParameter("batch", .int, default: .int(32)),
        BuiltinParameter("shuffle", .bool, default: .bool(true)),
        BuiltinParameter("seed", .int, default: .int(0)),
        BuiltinParameter("drop_last", .bool, default: .bool(false)),
      ],
      doc: "Batches of a dataset with its augmentations, made one ahead by a background thread. "
        + "The same seed gives the same batches in the same order; each epoch reshuffles. "
        + "for b in loader gives {x [N, C, T, V, M], label [N], length} for one epoch."
    ) { args, _ in
      let object = try dataset(args, "ds")
      let loader = try Loader(
        dataset: object.dataset, batchSize: args.int("batch"), shuffle: args.bool("shuffle"),
        seed: UInt64(max(args.int("seed"), 0)), dropLast: args.bool("drop_last"),
        augmentations: object.augmentations)
      return .object(LoaderObject(loader))
    }
  }

  // MARK: Attributes, indexing, iteration

  static func registerTypeTables(_ r: Registry) {
    func attribute(_ name: String, _ doc: String, _ get: @escaping (DatasetObject) throws -> Value)
    {
      r.registerAttribute(
        "Dataset",
        Attribute(name, doc: doc) { o in
          guard let object = o as? DatasetObject else { return .nil }
          return try get(object)
        })
    }
    attribute("length", "the number of samples") { .int($0.dataset.count) }
    attribute("train", "the training half of a split dataset") { object in
      guard let train = object.train else {
        throw ScriptError(
          .value, "this dataset is not split; use split(ds, \"xsub\") or dataset(..., split=)")
      }
      return .object(train)
    }
    attribute("test", "the test half of a split dataset") { object in
      guard let test = object.test else {
        throw ScriptError(
          .value, "this dataset is not split; use split(ds, \"xsub\") or dataset(..., split=)")
      }
      return .object(test)
    }
    attribute("classes", "the class names, in label order") {
      .list($0.dataset.classNames.map(Value.string))
    }
    attribute("shape", "the sample shape [C, T, V, M]") {
      .list($0.dataset.sampleShape.map(Value.int))
    }
    attribute("kind", "the dataset kind") { .string($0.dataset.kind) }
    attribute("skipped", "sequences left out at load, with the reason") {
      .list($0.dataset.skipped.map(Value.string))
    }
    attribute("labels", "every sample's label, a List of Int") {
      .list($0.dataset.labels.map(Value.int))
    }
    r.registerIndexing(
      "Dataset",
      get: { o, indices in
        guard let object = o as? DatasetObject else { return .nil }
        guard indices.count == 1, case .value(.int(let i)) = indices[0] else {
          throw ScriptError(.type, "a Dataset takes one Int index")
        }
        let n = object.dataset.count
        return record(try object.sample(i < 0 ? i + n : i), names: object.dataset.classNames)
      })
    r.registerStream("Dataset") { o in
      guard let object = o as? DatasetObject else { return { nil } }
      var i = 0
      return {
        guard i < object.dataset.count else { return nil }
        defer { i += 1 }
        return record(try object.sample(i), names: object.dataset.classNames)
      }
    }
    r.registerAttribute(
      "Loader",
      Attribute("length", doc: "batches per epoch") { o in
        .int((o as? LoaderObject)?.loader.batchesPerEpoch ?? 0)
      })
    r.registerAttribute(
      "Loader",
      Attribute("epoch", doc: "the epoch the next batch belongs to") { o in
        .int((o as? LoaderObject)?.loader.epoch ?? 0)
      })
    r.registerStream("Loader") { o in
      guard let loader = (o as? LoaderObject)?.loader else { return { nil } }
      let batches = try loader.makeIterator()
      return {
        guard let batch = try batches.next() else { return nil }
        return .record(
          RecordBox([
            ("x", .tensor(batch.x)), ("label", .tensor(Tensor(batch.labels.map(Float.init)))),
            ("length", .list(batch.lengths.map(Value.int))),
          ]))
      }
    }
  }

  // MARK: Transforms on a sample or a batch

  /// Applies `body` to a `[C, T, V, M]` sequence, or to each sequence of a `[N, C, T, V, M]`
  /// batch.
  static func eachSequence(_ x: Tensor, _ args: Arguments, _ body: (Tensor) throws -> Tensor) throws
    -> Tensor
  {
    switch x.rank {
    case 4: return try body(x)
    case 5: return try Tensor.stack((0..<x.shape[0]).map { try body(x[.index($0)].contiguous()) })
    default:
      throw args.error(
        "x",
        "expects a sequence [C, T, V, M] or a batch [N, C, T, V, M], got \(shapeString(x.shape))")
    }
  }

  /// Runs `body` with a generator seeded by `seed=`, or with the global one.
  static func randomly<R>(_ args: Arguments, _ body: (inout RandomGenerator) throws -> R) throws
    -> R
  {
    if let seed = args.optionalInt("seed") {
      var generator = RandomGenerator(seed: UInt64(truncatingIfNeeded: seed))
      return try body(&generator)
    }
    return try Random.withGenerator { try body(&$0) }
  }

  static func layout(_ x: Tensor, _ args: Arguments) throws -> JointLayout {
    let joints = x.rank >= 4 ? x.shape[x.rank - 2] : 0
    guard x.rank >= 4 else {
      throw args.error("x", "expects a sample [C, T, V, M] or a batch, got \(shapeString(x.shape))")
    }
    return JointLayout.forData(joints)
  }

  static func registerSampleFunctions(_ r: Registry) {
    let x = BuiltinParameter("x", .object("Tensor"))
    let seed = BuiltinParameter("seed", .optional(.int), default: .nil)
    func tensor(_ args: Arguments) throws -> Tensor {
      try TensorBuiltins.tensor(args["x"], args, "x")
    }
    r.register(
      "crop_resize",
      [
        x, BuiltinParameter("window", .int),
        BuiltinParameter("length", .optional(.int), default: .nil),
        BuiltinParameter("ratio", .oneOf([.number, .list]), default: .float(0.95)),
        BuiltinParameter("minimum", .int, default: .int(64)), seed,
      ],
      doc: "Temporal crop-and-resize (methods.md §1.4) of a sequence or each of a batch: ratio a "
        + "number is the test-time centre crop, [low, high] the random training crop (at least "
        + "minimum frames); length is the valid length (default: the non-zero frames)."
    ) { args, _ in
      let window = args.int("window")
      guard window > 0 else { throw args.error("window", "must be positive") }
      return .tensor(
        try eachSequence(try tensor(args), args) { s in
          let n = args.optionalInt("length") ?? max(SkeletonSample.validLength(s), 1)
          if case .list(let box) = args["ratio"] {
            let bounds = box.items.compactMap { value -> Double? in
              if case .float(let d) = value { return d }
              if case .int(let i) = value { return Double(i) }
              return nil
            }
            guard bounds.count == 2, bounds[0] > 0, bounds[0] <= bounds[1] else {
              throw args.error("ratio", "must be a number or [low, high]")
            }
            return try randomly(args) { g in
              try Transforms.randomCropResize(
                s, length: n, window: window, ratio: bounds[0]...bounds[1],
                minimum: args.int("minimum"),
                generator: &g)
            }
          }
          return try Transforms.centreCropResize(
            s, length: n, window: window, ratio: args.number("ratio"))
        })
    }
    r.register(
      "rotate",
      [
        x, BuiltinParameter("theta", .number, default: .float(0.3)),
        BuiltinParameter("angles", .optional(.list), default: .nil), seed,
      ],
      doc: "Rotates every point by R = Rz·Ry·Rx (methods.md §1.6): angles [ax, ay, az] given, or "
        + "drawn from U(−theta, theta), one rotation per sequence."
    ) { args, _ in
      let angles =
        try args.isNil("angles")
        ? nil
        : args.list("angles").map { value -> Double in
          switch value {
          case .int(let i): return Double(i)
          case .float(let d): return d
          default: throw args.error("angles", "must be three numbers")
          }
        }
      if let angles, angles.count != 3 { throw args.error("angles", "must be three numbers") }
      return .tensor(
        try eachSequence(try tensor(args), args) { s in
          if let angles {
            return try Transforms.rotate(
              s, Transforms.rotationMatrix(angles[0], angles[1], angles[2]))
          }
          return try randomly(args) {
            try Transforms.randomRotation(s, theta: args.number("theta"), generator: &$0)
          }
        })
    }
    r.register(
      "shear", [x, BuiltinParameter("amount", .number, default: .float(1)), seed],
      doc: "Shear by [[1, a, b], [c, 1, d], [e, f, 1]] with off-diagonals from U(−amount, amount) "
        + "(methods.md §1.8), per sequence."
    ) { args, _ in
      .tensor(
        try eachSequence(try tensor(args), args) { s in
          try randomly(args) {
            try Transforms.shear(s, amount: args.number("amount"), generator: &$0)
          }
        })
    }
    r.register(
      "corrupt", [x, seed],
      doc: "PCM3's joint corruption (methods.md §1.8): 15 of 25 joints zeroed (probability 0.5) or "
        + "multiplied by a random 3×3 matrix, per sequence."
    ) { args, _ in
      .tensor(
        try eachSequence(try tensor(args), args) { s in
          try randomly(args) { try Transforms.jointCorruption(s, generator: &$0) }
        })
    }
    r.register(
      "motion", [x],
      doc: "Frame differences x[t+1] − x[t], the last frame 0 (methods.md §1.7)."
    ) { args, _ in
      .tensor(try eachSequence(try tensor(args), args) { try Transforms.motion($0) })
    }
    r.register(
      "normalize",
      [
        x, BuiltinParameter("mode", .string, default: .string("mamp")),
        BuiltinParameter("align", .bool, default: .bool(false)),
      ],
      doc: "Offline normalisation (methods.md §1.3): \"mamp\" (body 1's spine mid in its first "
        + "frame is the origin), \"agcn\" (gap filling, per-frame centring, alignment rotations) "
        + "or \"pyskl\" (empty frames dropped and zero-padded at the end, centred on the first "
        + "kept frame; align adds the alignment rotations)."
    ) { args, _ in
      let x = try tensor(args)
      let layout = try layout(x, args)
      return .tensor(
        try eachSequence(x, args) { s in
          switch args.string("mode") {
          case "mamp": return try Transforms.centreOnFirstFrame(s, layout: layout)
          case "agcn": return try Transforms.agcnNormalize(s, layout: layout)
          case "pyskl":
            let (data, length) = try Transforms.pysklNormalize(
              s, layout: layout, align: args.bool("align"))
            guard length < s.shape[1] else { return data }
            var padding = s.shape
            padding[1] = s.shape[1] - length
            return try length == 0
              ? Tensor.zeros(s.shape) : Tensor.concat([data, Tensor.zeros(padding)], axis: 1)
          default: throw args.error("mode", "must be \"mamp\", \"agcn\" or \"pyskl\"")
          }
        })
    }
    r.register(
      "uniform_sample",
      [
        x, BuiltinParameter("clip", .int, default: .int(90)),
        BuiltinParameter("length", .optional(.int), default: .nil), seed,
      ],
      doc: "PYSKL's uniform sampling of clip frames (methods.md §1.5) from the valid length."
    ) { args, _ in
      .tensor(
        try eachSequence(try tensor(args), args) { s in
          let n = args.optionalInt("length") ?? max(SkeletonSample.validLength(s), 1)
          let indices = try randomly(args) {
            try Transforms.uniformSampleIndices(total: n, clip: args.int("clip"), generator: &$0)
          }
          return try Transforms.frames(s, at: indices)
        })
    }
    r.register(
      "occlude",
      [
        x, BuiltinParameter("parts", .int, default: .int(0)),
        BuiltinParameter("ratio", .number, default: .float(0)), seed,
      ],
      doc: "The occluded protocol's transforms: parts random body parts hidden in every frame, "
        + "and/or a contiguous block of ratio of the valid frames hidden."
    ) { args, _ in
      let x = try tensor(args)
      let layout = try layout(x, args)
      return .tensor(
        try eachSequence(x, args) { s in
          var out = s
          if args.int("parts") > 0 {
            out = try randomly(args) {
              try Transforms.occludeParts(
                out, layout: layout, count: args.int("parts"), generator: &$0)
            }
          }
          if args.number("ratio") > 0 {
            let n = max(SkeletonSample.validLength(out), 1)
            out = try randomly(args) {
              try Transforms.occludeTime(
                out, length: n, ratio: args.number("ratio"), generator: &$0)
            }
          }
          return out
        })
    }
    r.register(
      "mix", [x, seed],
      doc: "PCM3's view mixing of a batch [N, C, T, V, M] (methods.md §7.2): one random case per "
        + "batch — swap of 2–3 body parts over 7–11 segments with sample (i + shift) mod N, the "
        + "same region pasted from its resampled first frames, or mixup. Returns {x, lam, shift, kind}."
    ) { args, _ in
      let batch = try tensor(args)
      let result = try randomly(args) {
        try Transforms.mix(batch, layout: layout(batch, args), generator: &$0)
      }
      return .record(
        RecordBox([
          ("x", .tensor(result.x)), ("lam", .float(result.lam)), ("shift", .int(result.shift)),
          ("kind", .string(result.kind)),
        ]))
    }
  }

  // MARK: Augmentation and drawing

  static func registerTransforms(_ r: Registry) {
    r.register(
      "augment",
      [
        BuiltinParameter("ds", .object("Dataset")),
        BuiltinParameter("crop", .optional(.int), default: .nil),
        BuiltinParameter("crop_ratio", .list, default: .list([.float(0.5), .float(1)])),
        BuiltinParameter("crop_min", .int, default: .int(64)),
        BuiltinParameter("centre", .optional(.int), default: .nil),
        BuiltinParameter("centre_ratio", .number, default: .float(0.95)),
        BuiltinParameter("uniform", .optional(.int), default: .nil),
        BuiltinParameter("rotate", .number, default: .float(0)),
        BuiltinParameter("shear", .number, default: .float(0)),
        BuiltinParameter("corrupt", .optional(.number), default: .nil),
        BuiltinParameter("occlude_parts", .int, default: .int(0)),
        BuiltinParameter("occlude_time", .number, default: .float(0)),
        BuiltinParameter("motion", .bool, default: .bool(false)),
        BuiltinParameter("centre_first", .bool, default: .bool(false)),
        BuiltinParameter("align", .bool, default: .bool(false)),
      ],
      doc: "The dataset with augmentations (methods.md §1.4–1.8), applied in this order: a "
        + "temporal step — crop (random crop of crop_ratio, at least crop_min frames, resized to "
        + "crop frames; training), centre (centre crop of centre_ratio resized to centre frames; "
        + "testing) or uniform (PYSKL sampling of uniform frames) — then rotate (angles in ±θ), "
        + "shear (±amount) or corrupt (joint corruption with that probability, else shear), "
        + "occlusion (occlude_parts random body parts, occlude_time a block of that ratio), "
        + "motion (frame differences). centre_first moves body 1's spine mid in its first frame "
        + "to the origin before everything (MAMP's §1.3 centring); align then rotates body 1's "
        + "spine in the first frame to +z and its shoulders to +x (§1.3's alignment, which "
        + "removes the camera view). Loaders draw new randomness every epoch."
    ) { args, _ in
      let object = try dataset(args, "ds")
      var steps = object.augmentations
      if args.bool("centre_first") { steps.append(.centre) }
      if args.bool("align") { steps.append(.align) }
      let temporal = ["crop", "centre", "uniform"].filter { !args.isNil($0) }
      guard temporal.count <= 1 else {
        throw args.error(temporal[1], "give one of crop, centre and uniform")
      }
      if let window = args.optionalInt("crop") {
        let ratio = try args.list("crop_ratio").map { value -> Double in
          switch value {
          case .int(let i): return Double(i)
          case .float(let d): return d
          default: throw args.error("crop_ratio", "must be two numbers")
          }
        }
        guard ratio.count == 2, ratio[0] > 0, ratio[0] <= ratio[1], ratio[1] <= 1, window > 0 else {
          throw args.error("crop_ratio", "must be [low, high] with 0 < low ≤ high ≤ 1")
        }
        try cropFits(args, "crop", window, object.dataset)
        steps.append(
          .randomCrop(window: window, low: ratio[0], high: ratio[1], minimum: args.int("crop_min")))
      }
      if let window = args.optionalInt("centre") {
        guard window > 0 else { throw args.error("centre", "must be positive") }
        try cropFits(args, "centre", window, object.dataset)
        steps.append(.centreCrop(window: window, ratio: args.number("centre_ratio")))
      }
      if let clip = args.optionalInt("uniform") {
        guard clip > 0 else { throw args.error("uniform", "must be positive") }
        try cropFits(args, "uniform", clip, object.dataset)
        steps.append(.uniformSample(clip: clip))
      }
      if args.number("rotate") > 0 { steps.append(.rotate(theta: args.number("rotate"))) }
      if let probability = args.optionalNumber("corrupt") {
        steps.append(.corruptOrShear(probability: probability))
      } else if args.number("shear") > 0 {
        steps.append(.shear(amount: args.number("shear")))
      }
      if args.int("occlude_parts") > 0 {
        steps.append(.occludeParts(count: args.int("occlude_parts")))
      }
      if args.number("occlude_time") > 0 {
        steps.append(.occludeTime(ratio: args.number("occlude_time")))
      }
      if args.bool("motion") { steps.append(.motion) }
      return .object(
        DatasetObject(
          object.dataset, augmentations: steps, split: object.split,
          train: object.train.map { DatasetObject($0.dataset, augmentations: steps) },
          test: object.test.map { DatasetObject($0.dataset, augmentations: steps) }))
    }
    r.register(
      "show",
      [
        BuiltinParameter("sample"),
        .path("path", optional: true),
        BuiltinParameter("frames", .int, default: .int(8)),
        BuiltinParameter("mask", .optional(.object("Tensor")), default: .nil),
      ],
      doc: "Draws a sample (a Record from ds[i], or a [C, T, V, M] tensor) as a strip of stick "
        + "figures: to an SVG file when path is given (two bodies in two colours, a [T, V] mask "
        + "drawn in red; it prints where it wrote), else as braille characters in the terminal (a mask's "
        + "hidden joints ringed)."
    ) { args, context in
      var sample: SkeletonSample
      var className: String?
      switch args["sample"] {
      case .record(let box):
        guard case .object(let o as TensorObject)? = box["x"] else {
          throw args.error("sample", "a sample Record has x (a [C, T, V, M] tensor)")
        }
        var length = o.tensor.rank == 4 ? o.tensor.shape[1] : 0
        if case .int(let l)? = box["length"] { length = l }
        var label = -1
        if case .int(let l)? = box["label"] { label = l }
        var source = ""
        if case .string(let s)? = box["source"] { source = s }
        if case .string(let name)? = box["class"], !name.isEmpty { className = name }
        sample = SkeletonSample(data: o.tensor, length: length, label: label, source: source)
      case .object(let o as TensorObject):
        sample = SkeletonSample(
          data: o.tensor, length: o.tensor.rank == 4 ? o.tensor.shape[1] : 0, label: -1)
      default:
        throw args.error("sample", "expected a sample Record or a [C, T, V, M] tensor")
      }
      guard sample.data.rank == 4 else {
        throw args.error(
          "sample", "cannot draw shape \(shapeString(sample.data.shape)) (needs [C, T, V, M])")
      }
      let layout = JointLayout.forData(sample.data.shape[2])
      sample.length = min(max(sample.length, 1), sample.data.shape[1])
      let mask = args.object("mask", as: TensorObject.self)?.tensor
      if case .string(let path) = args["path"] {
        try SkeletonDrawing.writeSVG(
          sample, layout: layout, to: path, count: args.int("frames"), mask: mask,
          className: className)
        context.write("wrote \(path)\n")
        return .nil
      }
      context.write(
        try SkeletonDrawing.terminal(
          sample, layout: layout, count: min(args.int("frames"), 6), mask: mask)
          + "\n")
      return .nil
    }
  }
}
