import Foundation
import TensorCore

/// A collection of skeleton sequences in one form, `[C, T, V, M]` each, with labels and
/// metadata: read from files into one array, or generated on access (the synthetic set).
/// Subsets and splits are views (index lists) over the same storage.
public struct SkeletonDataset: Sendable {
  /// Where the sequences live.
  final class Storage: Sendable {
    enum Content: Sendable {
      /// `[N, C, T, V, M]` and per-sample metadata.
      case array(Tensor, [Metadata])
      case synthetic(SyntheticSkeletons)
    }
    let content: Content
    init(_ content: Content) { self.content = content }
  }

  /// A sample's metadata without its coordinates.
  public struct Metadata: Sendable {
    public var length: Int
    public var label: Int
    public var subject: Int
    public var view: Int
    public var setup: Int
    public var replication: Int
    public var source: String

    public init(_ sample: SkeletonSample) {
      (length, label, subject, view) = (sample.length, sample.label, sample.subject, sample.view)
      (setup, replication, source) = (sample.setup, sample.replication, sample.source)
    }
  }

  let storage: Storage
  /// Positions in the storage of this view's samples.
  public let indices: [Int]
  public let kind: String
  public let layout: JointLayout
  public let classNames: [String]
  /// What loading left out (file and reason), reported rather than dropped silently.
  public var skipped: [String] = []

  /// The built-in synthetic dataset.
  public static func synthetic(_ generator: SyntheticSkeletons) -> SkeletonDataset {
    SkeletonDataset(
      storage: Storage(.synthetic(generator)), indices: Array(0..<generator.count),
      kind: "synthetic",
      layout: .kinectV2, classNames: SyntheticSkeletons.classes)
  }

  /// A dataset of samples of one shape, padded in time to the longest (zeros after each
  /// sample's valid length).
  public init(
    samples: [SkeletonSample], kind: String, layout: JointLayout, classNames: [String] = [],
    skipped: [String] = []
  ) throws {
    guard let first = samples.first else {
      throw TensorError(
        "dataset", "\(kind): no samples" + (skipped.isEmpty ? "" : " (\(skipped.count) skipped)"))
    }
    let (c, v, m) = (first.channels, first.joints, first.bodies)
    let t = samples.map(\.frames).max() ?? first.frames
    for sample in samples where sample.channels != c || sample.joints != v || sample.bodies != m {
      throw TensorError(
        "dataset",
        "\(sample.source): shape \(shapeString(sample.data.shape)) differs from [\(c), T, \(v), \(m)]"
      )
    }
    let data = try Tensor(shape: [samples.count, c, t, v, m], op: "dataset") { out in
      out.initialize(repeating: 0)
      for (n, sample) in samples.enumerated() {
        sample.data.withUnsafeBufferPointer { values in
          let frames = sample.frames
          for ch in 0..<c {
            let target = ((n * c + ch) * t) * v * m
            let source = ch * frames * v * m
            for i in 0..<(frames * v * m) { out[target + i] = values[source + i] }
          }
        }
      }
    }
    let metadata = samples.map(Metadata.init)
    try SkeletonDataset.validate(metadata, frames: t, classNames: classNames)
    self.init(
      storage: Storage(.array(data, metadata)), indices: Array(samples.indices),
      kind: kind, layout: layout,
      classNames: classNames.isEmpty ? Labels.names(for: samples.map(\.label)) : classNames)
    self.skipped = skipped
  }

  /// A dataset over an `[N, C, T, V, M]` array with its metadata.
  public init(
    array: Tensor, metadata: [Metadata], kind: String, layout: JointLayout, classNames: [String],
    skipped: [String] = []
  ) throws {
    guard array.rank == 5, array.shape[0] == metadata.count else {
      throw TensorError(
        "dataset",
        "expects [N, C, T, V, M] and N metadata, got \(shapeString(array.shape)) and \(metadata.count)"
      )
    }
    try SkeletonDataset.validate(metadata, frames: array.shape[2], classNames: classNames)
    self.init(
      storage: Storage(.array(array.contiguous(), metadata)), indices: Array(metadata.indices),
      kind: kind, layout: layout, classNames: classNames)
    self.skipped = skipped
  }

  /// Every label a class index (below `Labels.maximum`, and below the class-name count when
  /// names are given) and every length in `0...frames`; errors name the sample's source.
  static func validate(_ metadata: [Metadata], frames: Int, classNames: [String]) throws {
    let bound = classNames.isEmpty ? Labels.maximum : classNames.count
    for m in metadata {
      guard m.label >= 0, m.label < bound else {
        throw TensorError(
          "dataset",
          "\(m.source): label \(m.label) is not a class index in 0..<\(bound)"
            + (m.label < 0 ? " (is its file named as the dataset names its files?)" : ""))
      }
      guard m.length >= 0, m.length <= frames else {
        throw TensorError(
          "dataset", "\(m.source): length \(m.length) is not in 0...\(frames) frames")
      }
    }
  }

  init(storage: Storage, indices: [Int], kind: String, layout: JointLayout, classNames: [String]) {
    self.storage = storage
    self.indices = indices
    self.kind = kind
    self.layout = layout
    self.classNames = classNames
  }

  public var count: Int { indices.count }

  /// `[C, T, V, M]` of every sample.
  public var sampleShape: [Int] {
    switch storage.content {
    case .array(let data, _): return Array(data.shape.dropFirst())
    case .synthetic(let g): return [3, g.frames, 25, 2]
    }
  }

  /// The metadata of sample `i` (cheap: no coordinates are made).
  public func metadata(_ i: Int) throws -> Metadata {
    try checkIndex(i)
    switch storage.content {
    case .array(_, let metadata): return metadata[indices[i]]
    case .synthetic(let g):
      let id = g.identity(indices[i])
      var m = Metadata(
        SkeletonSample(
          data: Tensor(0), length: 0, label: id.label, subject: id.subject, view: id.view))
      m.replication = id.repetition
      m.source = "synthetic:\(g.seed):\(indices[i])"
      m.length = -1  // known once generated
      return m
    }
  }

  /// The labels of every sample, in order.
  public var labels: [Int] { indices.indices.compactMap { try? metadata($0).label } }

  func checkIndex(_ i: Int) throws {
    guard i >= 0, i < indices.count else {
      throw TensorError("dataset", "index \(i) is out of range for \(indices.count) samples")
    }
  }

  /// Sample `i`.
  public func sample(_ i: Int) throws -> SkeletonSample {
    try checkIndex(i)
    switch storage.content {
    case .array(let data, let metadata):
      let m = metadata[indices[i]]
      return SkeletonSample(
        data: try data[.index(indices[i])].contiguous(), length: m.length, label: m.label,
        subject: m.subject, view: m.view, setup: m.setup, replication: m.replication,
        source: m.source)
    case .synthetic(let g): return try g.sample(indices[i])
    }
  }

  /// The samples at positions `positions` of this view.
  public func subset(_ positions: [Int]) throws -> SkeletonDataset {
    for p in positions { try checkIndex(p) }
    var result = SkeletonDataset(
      storage: storage, indices: positions.map { indices[$0] }, kind: kind, layout: layout,
      classNames: classNames)
    result.skipped = skipped
    return result
  }

  /// Splits by a predicate on the metadata: (where true, where false).
  public func split(_ isTraining: (Metadata) -> Bool) throws -> (
    train: SkeletonDataset, test: SkeletonDataset
  ) {
    var train: [Int] = []
    var test: [Int] = []
    for i in 0..<count {
      if isTraining(try metadata(i)) { train.append(i) } else { test.append(i) }
    }
    return (try subset(train), try subset(test))
  }

  /// NTU RGB+D 60 cross-subject training performers (the official list).
  public static let ntu60TrainingSubjects: Set<Int> = [
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38,
  ]
  /// NTU RGB+D 120 cross-subject training performers (the official list).
  public static let ntu120TrainingSubjects: Set<Int> = [
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49, 50,
    52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93, 94,
    95, 97, 98, 100, 103,
  ]

  /// A standard split by name: `xsub` (NTU-60's training performers; odd subjects for MSR and
  /// the synthetic set), `xsub120` (NTU-120's), `xview` (camera/view 1 is the test set),
  /// `xset` (even setups train).
  public func standardSplit(_ name: String) throws -> (
    train: SkeletonDataset, test: SkeletonDataset
  ) {
    switch name {
    case "xsub" where kind == "pkummd":
      throw TensorError(
        "dataset",
        "PKU-MMD's cross-subject split needs its official subject lists; split with a function "
          + "of the metadata instead (split(ds, f))")
    case "xsub":
      if kind == "ntu" || kind == "ntu120" {
        return try split { Self.ntu60TrainingSubjects.contains($0.subject) }
      }
      return try split { $0.subject % 2 == 1 }
    case "xsub120": return try split { Self.ntu120TrainingSubjects.contains($0.subject) }
    case "xview": return try split { $0.view != 1 }
    case "xset": return try split { $0.setup % 2 == 0 }
    default:
      throw TensorError("dataset", "unknown split '\(name)' (xsub, xsub120, xview, xset)")
    }
  }

  /// A random subset with a seed: `floor(n·fraction)` samples (at least one), per class when
  /// `perClass` (the semi-supervised 1% and 10% subsets).
  public func fraction(_ fraction: Double, perClass: Bool = true, seed: UInt64 = 0) throws
    -> SkeletonDataset
  {
    guard fraction > 0, fraction <= 1 else {
      throw TensorError("subset", "fraction must be in (0, 1], got \(fraction)")
    }
    var generator = RandomGenerator(seed: seed)
    let labels = self.labels
    var groups: [[Int]] = perClass ? [] : [Array(0..<count)]
    if perClass {
      var byClass: [Int: [Int]] = [:]
      for (i, label) in labels.enumerated() { byClass[label, default: []].append(i) }
      groups = byClass.keys.sorted().compactMap { byClass[$0] }
    }
    var chosen: [Int] = []
    for group in groups {
      let k = max(1, Int((Double(group.count) * fraction).rounded(.down)))
      chosen += try generator.sample(min(k, group.count), from: group.count).map { group[$0] }
    }
    return try subset(chosen.sorted())
  }

  /// The samples whose label is in `classes` (held-out classes for few-shot episodes).
  public func classes(_ classes: Set<Int>) throws -> SkeletonDataset {
    try split { classes.contains($0.label) }.train
  }

  // MARK: Cache

  /// Writes this view as a `.npz` (`x` `[N, C, T, V, M]` and the metadata columns) atomically.
  public func cache(to path: String) throws {
    var tensors: [Tensor] = []
    var columns = [[Float]](repeating: [], count: 6)
    for i in 0..<count {
      let s = try sample(i)
      tensors.append(s.data)
      for (k, v) in [s.length, s.label, s.subject, s.view, s.setup, s.replication].enumerated() {
        columns[k].append(Float(v))
      }
    }
    let x = try Tensor.stack(tensors)
    let names = ["length", "label", "subject", "view", "setup", "replication"]
    var arrays: [(name: String, tensor: Tensor)] = [("x", x)]
    for (name, column) in zip(names, columns) { arrays.append((name, Tensor(column))) }
    arrays.append(("layout_joints", Tensor(Float(layout.count))))
    try NumPy.writeArchive(arrays, to: path)
  }

  /// Reloads a dataset written by `cache(to:)`.
  public static func cached(path: String, kind: String, classNames: [String] = []) throws
    -> SkeletonDataset
  {
    let archive = try NumPy.readArchive(path: path)
    var byName: [String: Tensor] = [:]
    for entry in archive { byName[entry.name] = entry.array.tensor }
    guard let x = byName["x"], x.rank == 5 else {
      throw TensorError("dataset", "\(path): not a SkelLab dataset cache (no x [N, C, T, V, M])")
    }
    func column(_ name: String) throws -> [Int] {
      guard let t = byName[name], t.count == x.shape[0] else {
        throw TensorError("dataset", "\(path): missing or short column '\(name)'")
      }
      return try t.scalars.enumerated().map { i, value in
        guard value.isFinite, value == value.rounded(), abs(value) < 1e9 else {
          throw TensorError("dataset", "\(path): column '\(name)' entry \(i) is \(value)")
        }
        return Int(value)
      }
    }
    let (lengths, labels, subjects) = (
      try column("length"), try column("label"), try column("subject")
    )
    let (views, setups, replications) = (
      try column("view"), try column("setup"), try column("replication")
    )
    let metadata = (0..<x.shape[0]).map { i in
      var m = Metadata(
        SkeletonSample(
          data: Tensor(0), length: lengths[i], label: labels[i], subject: subjects[i],
          view: views[i], setup: setups[i], replication: replications[i]))
      m.source = "\(path)#\(i)"
      return m
    }
    let layout = JointLayout.forData(x.shape[3])
    for (i, label) in labels.enumerated() { _ = try Labels.label(label, "\(path)#\(i)") }
    return try SkeletonDataset(
      array: x, metadata: metadata, kind: kind, layout: layout,
      classNames: classNames.isEmpty ? Labels.names(for: labels) : classNames)
  }
}

extension SkeletonDataset {
  /// The same sequences in another joint layout with `bodies` bodies (missing bodies zero), for
  /// transfer between datasets (MSR Action3D's 20 joints to the 25 of Kinect v2).
  public func converted(to target: JointLayout, bodies: Int) throws -> SkeletonDataset {
    try layout.requireStructure("transfer")
    try target.requireStructure("transfer")
    guard let map = layout.mapping(to: target) else {
      throw TensorError("dataset", "no joint mapping from \(layout.name) to \(target.name)")
    }
    var samples: [SkeletonSample] = []
    for i in 0..<count {
      var s = try sample(i)
      var data = try s.data.indexSelect(axis: 2, indices: map)  // [C, T, V', M]
      let m = data.shape[3]
      if m < bodies {
        var pad = data.shape
        pad[3] = bodies - m
        data = try Tensor.concat([data, Tensor.zeros(pad)], axis: 3)
      } else if m > bodies {
        data = try data.indexSelect(axis: 3, indices: Array(0..<bodies))
      }
      s.data = data.contiguous()
      samples.append(s)
    }
    return try SkeletonDataset(
      samples: samples, kind: kind, layout: target, classNames: classNames, skipped: skipped)
  }
}
