import Foundation
import TensorCore

/// Reading whole datasets from the formats of methods.md §1.2. Sequences that are empty,
/// all-zero or hold NaN/inf are skipped and listed in `skipped` (never dropped silently).
public enum DatasetReaders {
  static func files(in folder: String, suffix: String) throws -> [String] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory),
      isDirectory.boolValue
    else { throw TensorError("dataset", "no folder at '\(folder)'") }
    let names = try FileManager.default.contentsOfDirectory(atPath: folder).filter {
      $0.hasSuffix(suffix)
    }
    guard !names.isEmpty else {
      throw TensorError("dataset", "'\(folder)' holds no \(suffix) files")
    }
    return names.sorted().map { folder + "/" + $0 }
  }

  /// Adds `sample` to `samples` when it is finite and not empty; otherwise lists why in
  /// `skipped` (the one rule of every reader).
  static func keep(
    _ sample: SkeletonSample, in samples: inout [SkeletonSample], skipped: inout [String]
  ) {
    do {
      try sample.validate()
      samples.append(sample)
    } catch let error as TensorError {
      skipped.append(error.message)
    } catch {
      skipped.append("\(sample.source): \(error)")
    }
  }

  /// Offline normalisation applied while reading raw files (§1.3).
  public enum Normalization: String, Sendable, CaseIterable {
    case none
    /// MAMP: one translation per clip (body 1's spine mid in its first frame).
    case mamp
    /// AGCN/PCM3: gap filling, per-frame centring and the two alignment rotations.
    case agcn
  }

  /// Raw NTU RGB+D `.skeleton` files of a folder. `skip` names samples to leave out (like the
  /// official missing-skeleton lists, with or without the extension).
  public static func ntu(
    folder: String, selection: NTUSkeletonReader.BodySelection = .denoised,
    normalization: Normalization = .mamp, skip: Set<String> = []
  ) throws -> SkeletonDataset {
    var samples: [SkeletonSample] = []
    var skipped: [String] = []
    var layout: JointLayout?
    for path in try files(in: folder, suffix: ".skeleton") {
      let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
      if skip.contains(name) || skip.contains(name + ".skeleton") {
        skipped.append("\(path): on the skip list")
        continue
      }
      var sample = try NTUSkeletonReader.read(path: path, selection: selection)
      do {
        try sample.validate()
      } catch let error as TensorError {
        skipped.append(error.message)
        continue
      }
      guard sample.label >= 0 else {
        throw TensorError(
          "dataset", "\(path): the name does not follow NTU's SsssCcccPpppRrrrAaaa pattern")
      }
      guard let sampleLayout = JointLayout.forJointCount(sample.joints) else {
        throw TensorError(
          "dataset",
          "\(path): bodies of \(sample.joints) joints: "
            + JointLayout.describeMessage(sample.joints))
      }
      if let first = layout, first != sampleLayout {
        throw TensorError(
          "dataset",
          "\(path): bodies of \(sample.joints) joints where earlier files had \(first.count)")
      }
      layout = sampleLayout
      switch normalization {
      case .none: break
      case .mamp: sample.data = try Transforms.centreOnFirstFrame(sample.data, layout: sampleLayout)
      case .agcn: sample.data = try Transforms.agcnNormalize(sample.data, layout: sampleLayout)
      }
      samples.append(sample)
    }
    // NTU RGB+D 60 has actions 1–60; NTU-120 adds 61–120.
    let classes = (samples.map(\.label).max() ?? 0) < 60 ? 60 : 120
    return try SkeletonDataset(
      samples: samples, kind: "ntu", layout: layout ?? .kinectV2,
      classNames: (0..<classes).map { "A\(String(format: "%03d", $0 + 1))" }, skipped: skipped)
  }

  /// MSR Action3D: every `*_skeleton3D.txt` of a folder (20 classes, 20 joints, one body).
  public static func msr(folder: String) throws -> SkeletonDataset {
    var samples: [SkeletonSample] = []
    var skipped: [String] = []
    for path in try files(in: folder, suffix: "_skeleton3D.txt") {
      let sample = try MSRAction3DReader.read(path: path)
      guard sample.label >= 0, sample.label < 20 else {
        throw TensorError(
          "dataset",
          "\(path): the name does not give an action in a01...a20 (aAA_sSS_eEE_skeleton3D.txt)")
      }
      keep(sample, in: &samples, skipped: &skipped)
    }
    let names = [
      "high arm wave", "horizontal arm wave", "hammer", "hand catch", "forward punch",
      "high throw", "draw x", "draw tick", "draw circle", "hand clap", "two hand wave",
      "side-boxing", "bend", "forward kick", "side kick", "jogging", "tennis swing",
      "tennis serve", "golf swing", "pick up and throw",
    ]
    return try SkeletonDataset(
      samples: samples, kind: "msr", layout: .msrAction3D, classNames: names, skipped: skipped)
  }

  /// The preprocessed NTU/PKU `.npz` of MAMP (§1.2 item 1): `x_<split>` `(n, 300, 150)`
  /// (body × joint × xyz per frame) and one-hot `y_<split>`; `split` is `train` or `test`.
  public static func npz(path: String, split: String) throws -> SkeletonDataset {
    let archive = try NumPy.readArchive(path: path)
    func member(_ name: String) throws -> Tensor {
      guard let entry = archive.first(where: { $0.name == name }) else {
        throw TensorError(
          "dataset", "\(path): no '\(name)' (has \(archive.map(\.name).joined(separator: ", ")))")
      }
      return entry.array.tensor
    }
    let x = try member("x_" + split)
    let y = try member("y_" + split)
    guard x.rank == 3, x.shape[2] % 3 == 0, (x.shape[2] / 3) % 2 == 0 else {
      throw TensorError(
        "dataset", "\(path): x_\(split) has shape \(shapeString(x.shape)), expected (n, T, 2·V·3)")
    }
    let (n, t) = (x.shape[0], x.shape[1])
    let v = x.shape[2] / 6
    guard y.rank == 2, y.shape[0] == n else {
      throw TensorError(
        "dataset", "\(path): y_\(split) has shape \(shapeString(y.shape)) for \(n) clips")
    }
    // (n, T, M, V, C) -> (n, C, T, V, M)
    let data = try x.reshaped([n, t, 2, v, 3]).permuted([0, 4, 1, 3, 2]).contiguous()
    guard y.shape[1] <= Labels.maximum else {
      throw TensorError(
        "dataset", "\(path): y_\(split) has \(y.shape[1]) classes (at most \(Labels.maximum))")
    }
    guard y.withUnsafeBufferPointer({ $0.allSatisfy(\.isFinite) }) else {
      throw TensorError("dataset", "\(path): y_\(split) holds NaN or infinite values")
    }
    let labels = try y.argmax(axis: 1).scalars.map { Int($0) }
    var metadata: [SkeletonDataset.Metadata] = []
    for i in 0..<n {
      var m = SkeletonDataset.Metadata(
        SkeletonSample(data: Tensor(0), length: t, label: labels[i]))
      m.source = "\(path)#\(split)[\(i)]"
      metadata.append(m)
    }
    let (kept, keptMetadata, skipped) = try keepValid(data, metadata, measureLength: true)
    return try SkeletonDataset(
      array: kept, metadata: keptMetadata, kind: "npz",
      layout: JointLayout.forData(v),
      classNames: (0..<y.shape[1]).map { "class \($0)" }, skipped: skipped)
  }

  /// The samples of an `[N, C, T, V, M]` array that hold a finite, non-zero sequence, with
  /// their metadata, and a line for each one left out (the rule of every reader: skip and
  /// list). `measureLength` sets each length to its last non-zero frame.
  static func keepValid(
    _ data: Tensor, _ metadata: [SkeletonDataset.Metadata], measureLength: Bool
  ) throws -> (Tensor, [SkeletonDataset.Metadata], [String]) {
    var kept: [SkeletonDataset.Metadata] = []
    var keep: [Int] = []
    var skipped: [String] = []
    for (i, entry) in metadata.enumerated() {
      let sample = try data[.index(i)]
      let finite = sample.withUnsafeBufferPointer { $0.allSatisfy(\.isFinite) }
      var m = entry
      if finite, measureLength { m.length = SkeletonSample.validLength(sample) }
      if !finite || m.length == 0 {
        skipped.append("\(m.source): " + (finite ? "all zero" : "holds NaN or infinite values"))
        continue
      }
      keep.append(i)
      kept.append(m)
    }
    let array = keep.count == metadata.count ? data : try data.indexSelect(axis: 0, indices: keep)
    return (array, kept, skipped)
  }

  /// The AGCN layout (§1.2 item 2): `data` `(n, 3, T, V, M)` `.npy`, labels as the
  /// `(names, labels)` pickle or a plain `.npy`, and optionally `num_frame` `.npy` (clipped to T).
  /// The folder CTR-GCN-style preprocessing writes: `train_data_joint.npy`, `train_label.pkl`
  /// (or `.npy`), `train_num_frame.npy` (optional), and the same with `val_` (or `test_`) for
  /// the test split. Throws naming the folder and the files it looked for.
  public static func agcnFolder(_ folder: String) throws -> (
    train: SkeletonDataset, test: SkeletonDataset
  ) {
    let files = FileManager.default
    func first(_ names: [String]) -> String? {
      names.map { folder + "/" + $0 }.first { files.fileExists(atPath: $0) }
    }
    func split(_ prefixes: [String]) throws -> SkeletonDataset {
      guard let data = first(prefixes.map { $0 + "_data_joint.npy" }) else {
        throw TensorError(
          "dataset",
          "\(folder): no \(prefixes.map { $0 + "_data_joint.npy" }.joined(separator: " or ")) "
            + "(the AGCN folder layout: train_data_joint.npy, train_label.pkl, "
            + "train_num_frame.npy and val_* beside them)")
      }
      let prefix = (data as NSString).lastPathComponent.replacingOccurrences(
        of: "_data_joint.npy", with: "")
      guard let labels = first([prefix + "_label.pkl", prefix + "_label.npy"]) else {
        throw TensorError("dataset", "\(folder): \(prefix)_label.pkl (or .npy) is missing")
      }
      return try agcn(data: data, labels: labels, frames: first([prefix + "_num_frame.npy"]))
    }
    return (try split(["train"]), try split(["val", "test"]))
  }

  public static func agcn(
    data dataPath: String, labels labelPath: String, frames framesPath: String? = nil
  )
    throws -> SkeletonDataset
  {
    let data = try NumPy.readArray(path: dataPath).tensor
    guard data.rank == 5 else {
      throw TensorError(
        "dataset", "\(dataPath): shape \(shapeString(data.shape)), expected (n, C, T, V, M)")
    }
    let n = data.shape[0]
    var labels: [Int]
    var names: [String] = []
    if labelPath.hasSuffix(".pkl") {
      let value = try PickleFile.read(path: labelPath)
      guard case .tuple(let parts) = value, parts.count == 2 else {
        throw TensorError("dataset", "\(labelPath): expected a (names, labels) pair")
      }
      if case .list(let items) = parts[0] {
        names = items.map { item in
          if case .string(let s) = item { return s }
          return ""
        }
      }
      labels = try integers(parts[1], labelPath)
    } else {
      labels = try NumPy.readArray(path: labelPath).tensor.scalars.enumerated().map {
        try Labels.label(Double($0.element), "\(labelPath)[\($0.offset)]")
      }
    }
    guard labels.count == n else {
      throw TensorError("dataset", "\(labelPath): \(labels.count) labels for \(n) clips")
    }
    var lengths = (0..<n).map { _ in data.shape[2] }
    if let framesPath {
      let frames = try NumPy.readArray(path: framesPath).tensor.scalars.enumerated().map {
        try Labels.count(Double($0.element), "\(framesPath)[\($0.offset)] (frame count)")
      }
      guard frames.count == n else {
        throw TensorError("dataset", "\(framesPath): \(frames.count) lengths for \(n) clips")
      }
      lengths = frames.map { min($0, data.shape[2]) }
    }
    var metadata: [SkeletonDataset.Metadata] = []
    for i in 0..<n {
      let fields = names.count == n ? NTUSkeletonReader.nameFields(names[i]) : nil
      var m = SkeletonDataset.Metadata(
        SkeletonSample(
          data: Tensor(0),
          length: framesPath == nil ? SkeletonSample.validLength(try data[.index(i)]) : lengths[i],
          label: labels[i], subject: fields?.performer ?? 0, view: fields?.camera ?? 0,
          setup: fields?.setup ?? 0, replication: fields?.replication ?? 0))
      m.source = names.count == n ? names[i] : "\(dataPath)[\(i)]"
      metadata.append(m)
    }
    let (kept, keptMetadata, skipped) = try keepValid(data, metadata, measureLength: false)
    return try SkeletonDataset(
      array: kept, metadata: keptMetadata, kind: "agcn",
      layout: JointLayout.forData(data.shape[3]),
      classNames: Labels.names(for: labels), skipped: skipped)
  }

  static func integers(_ value: PickleValue, _ path: String) throws -> [Int] {
    func integer(_ item: PickleValue, _ i: Int) throws -> Int {
      switch item {
      case .int(let value): return try Labels.label(value, "\(path): label \(i)")
      case .float(let d): return try Labels.label(d, "\(path): label \(i)")
      default: throw TensorError("dataset", "\(path): label \(i) is not a number")
      }
    }
    switch value {
    case .list(let items), .tuple(let items):
      return try items.enumerated().map { try integer($0.element, $0.offset) }
    case .tensor(let t):
      return try t.scalars.enumerated().map {
        try Labels.label(Double($0.element), "\(path): label \($0.offset)")
      }
    default: throw TensorError("dataset", "\(path): labels are not a list")
    }
  }

  /// PYSKL `*_3danno.pkl` (§1.2 item 3): the annotations named by `split` (e.g. `xsub_train`),
  /// keypoints `(M, T, V, 3)` as `[3, T, V, max(M, 2)]`.
  public static func pyskl(path: String, split: String) throws -> SkeletonDataset {
    let value = try PickleFile.read(path: path)
    guard case .list(let annotations)? = value["annotations"] else {
      throw TensorError("dataset", "\(path): no 'annotations' list")
    }
    guard let splits = value["split"], case .dict(let entries) = splits else {
      throw TensorError("dataset", "\(path): no 'split' dict")
    }
    guard let chosen = splits[split], case .list(let names) = chosen else {
      let available = entries.compactMap { entry -> String? in
        if case .string(let s) = entry.key { return s }
        return nil
      }
      throw TensorError(
        "dataset", "\(path): no split '\(split)' (has \(available.joined(separator: ", ")))")
    }
    let wanted = Set(
      names.compactMap { item -> String? in
        if case .string(let s) = item { return s }
        return nil
      })
    var samples: [SkeletonSample] = []
    var skipped: [String] = []
    for annotation in annotations {
      guard case .string(let name)? = annotation["frame_dir"], wanted.contains(name) else {
        continue
      }
      guard case .tensor(let keypoint)? = annotation["keypoint"], keypoint.rank == 4,
        keypoint.shape[3] == 3
      else { throw TensorError("dataset", "\(path): \(name) has no keypoint (M, T, V, 3) array") }
      guard let labelValue = annotation["label"] else {
        throw TensorError("dataset", "\(path): \(name) has no label")
      }
      let label = try integers(.list([labelValue]), "\(path) (\(name))")[0]
      let (m, t, v) = (keypoint.shape[0], keypoint.shape[1], keypoint.shape[2])
      let bodies = max(m, 2)
      var data = try keypoint.permuted([3, 1, 2, 0]).contiguous()  // [3, T, V, M]
      if m < bodies {
        data = try Tensor.concat([data, Tensor.zeros([3, t, v, bodies - m])], axis: 3)
      }
      let fields = NTUSkeletonReader.nameFields(name)
      let sample = SkeletonSample(
        data: data, length: t, label: label, subject: fields?.performer ?? 0,
        view: fields?.camera ?? 0, setup: fields?.setup ?? 0, replication: fields?.replication ?? 0,
        source: name)
      keep(sample, in: &samples, skipped: &skipped)
    }
    return try SkeletonDataset(
      samples: samples, kind: "pyskl",
      layout: JointLayout.forData(samples.first?.joints ?? 25),
      skipped: skipped)
  }

  /// PKU-MMD skeletons (one frame per line: 2 bodies × 25 joints × xyz) cut into instances by
  /// a label file of `label,start,end,confidence` rows (label 1-based; frames `[start, end)`),
  /// each truncated or padded to `frames` (300), with no centring (§1.3).
  public static func pkummd(skeleton: String, labels: String, frames: Int = 300) throws
    -> [SkeletonSample]
  {
    let sequence = try pkummdSequence(skeleton: skeleton, labels: labels)
    var samples: [SkeletonSample] = []
    guard frames > 0, frames <= 100_000 else {
      throw TensorError("dataset", "pkummd: frames must be in 1...100000, got \(frames)")
    }
    for (label, start, end) in sequence.instances {
      let length = min(end - start, frames)
      var data = try sequence.data.indexSelect(axis: 1, indices: Array(start..<(start + length)))
      if length < frames {
        data = try Tensor.concat([data, Tensor.zeros([3, frames - length, 25, 2])], axis: 1)
      }
      samples.append(
        SkeletonSample(
          data: data, length: length, label: label, view: sequence.view,
          source: "\(skeleton)[\(start), \(end))"))
    }
    return samples
  }

  /// A whole (untrimmed) PKU-MMD sequence `[3, T, 25, 2]` with its instances
  /// `(label 0-based, start, end)` (frames `[start, end)`) and its view (L, M, R = 1, 2, 3).
  public static func pkummdSequence(skeleton: String, labels: String) throws -> (
    data: Tensor, instances: [(label: Int, start: Int, end: Int)], view: Int
  ) {
    var scanner = try TextScanner(path: skeleton)
    var rows: [[Float]] = []
    while !scanner.atEnd {
      let line = scanner.line
      var row: [Float] = []
      for k in 0..<150 {
        row.append(try scanner.float("value \(k + 1) of 150 (frame \(rows.count + 1))"))
        if k < 149, scanner.line != line {
          throw scanner.error("a frame line ended after \(k + 1) of 150 values")
        }
      }
      rows.append(row)
    }
    guard !rows.isEmpty else { throw TensorError("dataset", "\(skeleton): no frames") }
    guard let text = try? String(contentsOfFile: labels, encoding: .utf8) else {
      throw TensorError("dataset", "cannot read '\(labels)' (missing or unreadable)")
    }
    // PKU-MMD names sequences `NNNN-V.txt` with the view V = L, M or R (1, 2, 3: the
    // cross-view split tests on L, view 1).
    let stem = ((skeleton as NSString).lastPathComponent as NSString).deletingPathExtension
    let view = ["L": 1, "M": 2, "R": 3][String(stem.split(separator: "-").last ?? "")] ?? 0
    var instances: [(label: Int, start: Int, end: Int)] = []
    for (number, line) in text.split(whereSeparator: \.isNewline).enumerated() {
      let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
      guard fields.count >= 3, let label = Int(fields[0]), let start = Int(fields[1]),
        let end = Int(fields[2]),
        label >= 1, label <= Labels.maximum, start >= 0, end > start, end <= rows.count
      else {
        throw TensorError(
          "dataset",
          "\(labels):\(number + 1): expected label,start,end[,confidence] with 1 ≤ label ≤ "
            + "\(Labels.maximum) and 0 ≤ start < end ≤ \(rows.count), got '\(line)'"
        )
      }
      instances.append((label - 1, start, end))
    }
    let t = rows.count
    let data = try Tensor(shape: [3, t, 25, 2], op: "pkummd") { out in
      for f in 0..<t {
        let row = rows[f]
        for m in 0..<2 {
          for j in 0..<25 {
            for c in 0..<3 { out[((c * t + f) * 25 + j) * 2 + m] = row[(m * 25 + j) * 3 + c] }
          }
        }
      }
    }
    return (data, instances, view)
  }

  /// Every PKU-MMD sequence of a skeleton folder with the label file of the same name in
  /// `labels`.
  public static func pkummd(skeletonFolder: String, labelFolder: String, frames: Int = 300) throws
    -> SkeletonDataset
  {
    var samples: [SkeletonSample] = []
    var skipped: [String] = []
    for path in try files(in: skeletonFolder, suffix: ".txt") {
      let name = (path as NSString).lastPathComponent
      for sample in try pkummd(skeleton: path, labels: labelFolder + "/" + name, frames: frames) {
        keep(sample, in: &samples, skipped: &skipped)
      }
    }
    return try SkeletonDataset(
      samples: samples, kind: "pkummd", layout: .kinectV2, skipped: skipped)
  }
}
