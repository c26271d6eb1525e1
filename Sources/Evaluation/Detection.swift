import Foundation
import NN
import Optim
import SkeletonData
import TensorCore

/// An untrimmed sequence with a label per frame: 0 background, `action + 1` inside an action.
public struct UntrimmedSequence: Sendable {
  /// `[C, T, V, M]`.
  public var data: Tensor
  public var frameLabels: [Int]
  public var source: String

  public init(data: Tensor, frameLabels: [Int], source: String) {
    self.data = data
    self.frameLabels = frameLabels
    self.source = source
  }

  /// The ground-truth segments `(class, first frame, last frame)` (inclusive).
  public var segments: [(label: Int, start: Int, end: Int)] {
    var result: [(Int, Int, Int)] = []
    var t = 0
    while t < frameLabels.count {
      let label = frameLabels[t]
      var end = t
      while end + 1 < frameLabels.count && frameLabels[end + 1] == label { end += 1 }
      if label > 0 { result.append((label - 1, t, end)) }
      t = end + 1
    }
    return result
  }
}

/// Action detection (methods.md §8.4): a frozen encoder, a linear classifier on the mean-pooled
/// feature of a 16-step window around each frame (resampled to the encoder's frames — the
/// transformer variant, a GUESS of the spec), then per-frame probabilities, a mean filter,
/// segments where 1 − P(background) ≥ 0.4, and VOC average precision at temporal IoUs.
public enum Detection {
  /// Synthetic untrimmed sequences (used when PKU-MMD Part I is absent): `actions` actions of
  /// one subject and view, each its own generated clip, with 30–60 frames of the person
  /// standing (small sway) before, between and after them.
  public static func syntheticSequences(
    _ generator: SyntheticSkeletons, count: Int, actions: Int = 4, seed: UInt64 = 0
  ) throws -> [UntrimmedSequence] {
    var random = RandomGenerator(seed: seed)
    let classes = SyntheticSkeletons.classes.count - SyntheticSkeletons.interactions
    var result: [UntrimmedSequence] = []
    for s in 0..<count {
      let subject = try random.nextInt(below: generator.subjects)
      let view = try random.nextInt(below: generator.views)
      var frames: [Tensor] = []
      var labels: [Int] = []
      func still(_ frame: Tensor) throws {
        let length = 30 + (try random.nextInt(below: 31))
        for _ in 0..<length {
          let sway = try Tensor.randn(frame.shape, generator: &random) * 0.003
          frames.append(try frame + sway * Tensor.less(Tensor(0), frame.abs()))
          labels.append(0)
        }
      }
      var last: Tensor?
      for _ in 0..<actions {
        let label = try random.nextInt(below: classes)
        let repetition = try random.nextInt(below: generator.repetitions)
        let index =
          ((label * generator.subjects + subject) * generator.views + view) * generator.repetitions
          + repetition
        let sample = try generator.sample(index)
        // [C, L, V, M] frame by frame
        let clip: [Tensor] = try (0..<sample.length).map {
          try sample.data.indexSelect(axis: 1, indices: [$0])
        }
        try still(last ?? clip[0])
        frames += clip
        labels += [Int](repeating: label + 1, count: clip.count)
        last = clip.last
      }
      if let last { try still(last) }
      result.append(
        UntrimmedSequence(
          data: try Tensor.concat(frames, axis: 1), frameLabels: labels,
          source: "synthetic-untrimmed:\(seed):\(s)"))
    }
    return result
  }

  /// Training and test sequences for detection without PKU-MMD: actions of the synthetic set's
  /// 4 subjects × 2 views at 48 frames, the two sets drawn with seeds `seed + 1` and `seed + 2`.
  public static func syntheticSplit(train: Int, test: Int, seed: UInt64) throws -> (
    train: [UntrimmedSequence], test: [UntrimmedSequence]
  ) {
    let generator = try SyntheticSkeletons(
      seed: 99, subjects: 4, views: 2, repetitions: 1, frames: 48)
    return (
      try syntheticSequences(generator, count: train, seed: seed &+ 1),
      try syntheticSequences(generator, count: test, seed: seed &+ 2)
    )
  }

  /// The untrimmed PKU-MMD Part I sequences of a folder (labels in `labelFolder` under the
  /// same names): frame label `action + 1` inside each instance, 0 elsewhere (§8.4).
  public static func pkummdSequences(skeletonFolder: String, labelFolder: String) throws
    -> [UntrimmedSequence]
  {
    let names = try FileManager.default.contentsOfDirectory(atPath: skeletonFolder)
      .filter { $0.hasSuffix(".txt") }.sorted()
    guard !names.isEmpty else {
      throw TensorError("detection", "'\(skeletonFolder)' holds no .txt sequences")
    }
    return try names.map { name in
      let (data, instances, _) = try DatasetReaders.pkummdSequence(
        skeleton: skeletonFolder + "/" + name, labels: labelFolder + "/" + name)
      var labels = [Int](repeating: 0, count: data.shape[1])
      for (label, start, end) in instances { for t in start..<end { labels[t] = label + 1 } }
      return UntrimmedSequence(data: data, frameLabels: labels, source: skeletonFolder + "/" + name)
    }
  }

  /// The frames of the window of 16 steps of `stride` around `centre`, shifted to stay inside
  /// the sequence.
  static func window(centre: Int, stride s: Int, frames t: Int) -> [Int] {
    let span = 16 * s
    var start = centre - span / 2
    start = max(0, min(start, t - span))
    return (0..<16).map { min(max(start + $0 * s, 0), t - 1) }
  }

  /// Window features `[W, D]` of the given centres.
  static func windowFeatures(
    _ encoder: any SequenceEncoder, _ sequence: UntrimmedSequence, centres: [Int], strides: [Int],
    context: EvaluationContext
  ) throws -> Tensor {
    let t = sequence.data.shape[1]
    var windows: [Tensor] = []
    var features: [Tensor] = []
    func flush() throws {
      guard !windows.isEmpty else { return }
      try context.checkStop()
      features.append(try Autograd.noGrad { try encoder.features(Tensor.stack(windows)) })
      windows.removeAll()
    }
    for (centre, s) in zip(centres, strides) {
      let frames = try sequence.data.indexSelect(
        axis: 1, indices: window(centre: centre, stride: s, frames: t))
      // A recurrent encoder reads the 16-frame window as it is (the PCM3 reference); a
      // transformer's window is resized to its frames (methods.md §8.4, GUESS).
      windows.append(
        encoder.acceptsAnyLength
          ? frames
          : try Transforms.centreCropResize(frames, length: 16, window: encoder.frames, ratio: 1))
      if windows.count == 64 { try flush() }
    }
    try flush()
    return try Tensor.concat(features, axis: 0)
  }

  public struct Options: Sendable {
    public var epochs = 60
    public var windowsPerSequence = 64
    public var learningRate = 0.01
    public var seed: UInt64 = 0
    /// A folder for the head's resumable state, as `Protocols.ProbeOptions.run`.
    public var run: String?
    public var resume = true
    public init() {}
  }

  /// Trains the frame classifier on `train` and reports mAP at tIoU 0.1, 0.3 and 0.5 on `test`.
  public static func run(
    _ encoder: any SequenceEncoder, train: [UntrimmedSequence], test: [UntrimmedSequence],
    classes: Int,
    options: Options = .init(), context: EvaluationContext = .silent
  ) throws -> EvaluationResult {
    let wasTraining = encoder.training
    encoder.setTraining(false)
    defer { encoder.setTraining(wasTraining) }
    var random = RandomGenerator(seed: options.seed)
    var xs: [Tensor] = []
    var ys: [Int] = []
    for sequence in train {
      let t = sequence.data.shape[1]
      let centres = try (0..<options.windowsPerSequence).map { _ in try random.nextInt(below: t) }
      let strides = try centres.map { _ in 3 + (try random.nextInt(below: 3)) }
      xs.append(
        try windowFeatures(encoder, sequence, centres: centres, strides: strides, context: context))
      ys += centres.map { sequence.frameLabels[$0] }
    }
    let x = try Tensor.concat(xs, axis: 0)
    let head = try Random.withSeed(options.seed) {
      try ProbeHead(features: encoder.featureDimension, classes: classes + 1, eps: 1e-5)
    }
    let optimizer = try SGD(
      groups: ParameterGroup.groups(head, weightDecay: 0, exclusion: .oneDimensional),
      learningRate: options.learningRate, momentum: 0.9, nesterov: true)
    let schedule = MultiStepSchedule(
      base: options.learningRate, milestones: [Double(options.epochs) * 2 / 3])
    let batch = 64
    var loop = SupervisedLoop(
      name: "detection", epochs: options.epochs, optimizer: optimizer, context: context
    ) { step, perEpoch in schedule.learningRate(epoch: Double(step / max(perEpoch, 1))) }
    loop.checkpoint = try options.run.map { path in
      SupervisedLoop.Checkpoint(
        folder: try RunFolder(path, op: "detection"), model: head,
        identity: [
          ("protocol", "detection"), ("classes", "\(classes)"), ("windows", "\(ys.count)"),
          ("lr", "\(options.learningRate)"), ("seed", "\(options.seed)"),
          ("encoder_weights", encoder.fingerprint()),
        ], resume: options.resume)
    }
    _ = try loop.run(batchesPerEpoch: ys.count / batch + (ys.count % batch > 1 ? 1 : 0)) {
      epoch, done, step in
      // Each epoch's order is keyed by (seed, epoch), as the probe's.
      var generator = RandomGenerator(seed: Loader.mix(options.seed, UInt64(epoch), 13))
      let order = try generator.permutation(ys.count)
      head.setTraining(true)
      var start = done * batch
      while start < order.count {
        let rows = Array(order[start..<min(start + batch, order.count)])
        start += batch
        guard rows.count > 1 else { continue }
        try step(nil) {
          try Loss.crossEntropy(
            head(x.indexSelect(axis: 0, indices: rows)), labels: Tensor(rows.map { Float(ys[$0]) }))
        }
      }
    } evaluate: { _ in
      nil
    }
    head.setTraining(false)
    var detections: [(video: Int, label: Int, start: Int, end: Int, confidence: Double)] = []
    var truths: [(video: Int, label: Int, start: Int, end: Int)] = []
    for (v, sequence) in test.enumerated() {
      let t = sequence.data.shape[1]
      let f = try windowFeatures(
        encoder, sequence, centres: Array(0..<t), strides: [Int](repeating: 4, count: t),
        context: context)
      let probabilities = try Autograd.noGrad { try head(f).softmax(axis: 1) }
      for d in segments(probabilities: probabilities) {
        detections.append((v, d.label, d.start, d.end, d.confidence))
      }
      truths += sequence.segments.map { (v, $0.label, $0.start, $0.end) }
    }
    var result = EvaluationResult(name: "detection", metrics: [])
    for threshold in [0.1, 0.3, 0.5] {
      let value = meanAveragePrecision(detections: detections, truths: truths, threshold: threshold)
      result.metrics.append((String(format: "mAP@%.1f", threshold), value))
    }
    result.metrics.insert(("accuracy", result["mAP@0.5"] ?? 0), at: 0)
    context.progress(
      result.metrics.dropFirst().map { String(format: "%@ %.4f", $0.name, $0.value) }.joined(
        separator: "  "))
    return result
  }

  /// Segments from per-frame probabilities `[T, 1 + classes]` (§8.4): a mean filter over
  /// `[t − 10, t + 10)`, maximal runs with `1 − P(background) ≥ 0.4`, each labelled by the
  /// argmax of its mean non-background probability, confidence = that mean.
  public static func segments(probabilities: Tensor) -> [(
    label: Int, start: Int, end: Int, confidence: Double
  )] {
    let (t, c) = (probabilities.shape[0], probabilities.shape[1])
    let p = probabilities.contiguous().scalars
    var smooth = [Double](repeating: 0, count: t * c)
    for frame in 0..<t {
      let low = max(0, frame - 10)
      let high = min(t, frame + 10)
      for k in 0..<c {
        var sum = 0.0
        for u in low..<high { sum += Double(p[u * c + k]) }
        smooth[frame * c + k] = sum / Double(high - low)
      }
    }
    var result: [(Int, Int, Int, Double)] = []
    var frame = 0
    while frame < t {
      guard 1 - smooth[frame * c] >= 0.4 else {
        frame += 1
        continue
      }
      var end = frame
      while end + 1 < t && 1 - smooth[(end + 1) * c] >= 0.4 { end += 1 }
      var means = [Double](repeating: 0, count: c)
      for u in frame...end { for k in 1..<c { means[k] += smooth[u * c + k] } }
      let count = Double(end - frame + 1)
      let best = (1..<c).max { means[$0] < means[$1] } ?? 1
      result.append((best - 1, frame, end, means[best] / count))
      frame = end + 1
    }
    return result
  }

  /// Inclusive-frame interval IoU.
  public static func intervalIoU(_ a: (Int, Int), _ b: (Int, Int)) -> Double {
    let overlap = min(a.1, b.1) - max(a.0, b.0) + 1
    guard overlap > 0 else { return 0 }
    return Double(overlap) / Double((a.1 - a.0 + 1) + (b.1 - b.0 + 1) - overlap)
  }

  /// VOC average precision (all points) per class, averaged over the classes present in the
  /// ground truth (§8.4).
  public static func meanAveragePrecision(
    detections: [(video: Int, label: Int, start: Int, end: Int, confidence: Double)],
    truths: [(video: Int, label: Int, start: Int, end: Int)], threshold: Double
  ) -> Double {
    let classes = Set(truths.map(\.label)).sorted()
    guard !classes.isEmpty else { return 0 }
    var total = 0.0
    for label in classes {
      let gt = truths.enumerated().filter { $0.element.label == label }
      let ranked = detections.filter { $0.label == label }.sorted { $0.confidence > $1.confidence }
      var claimed = Set<Int>()
      var tp: [Double] = []
      for d in ranked {
        // The same-video ground truth of highest IoU.
        var best = (index: -1, iou: 0.0)
        for (i, g) in gt where g.video == d.video {
          let iou = intervalIoU((d.start, d.end), (g.start, g.end))
          if iou > best.iou { best = (i, iou) }
        }
        if best.index >= 0, best.iou >= threshold, !claimed.contains(best.index) {
          claimed.insert(best.index)
          tp.append(1)
        } else {
          tp.append(0)
        }
      }
      total += averagePrecision(truePositives: tp, positives: gt.count)
    }
    return total / Double(classes.count)
  }

  /// Area under the monotone precision envelope of ranked detections (1 = true positive).
  public static func averagePrecision(truePositives tp: [Double], positives: Int) -> Double {
    guard positives > 0 else { return 0 }
    var precision: [Double] = []
    var recall: [Double] = []
    var hits = 0.0
    for (i, t) in tp.enumerated() {
      hits += t
      precision.append(hits / Double(i + 1))
      recall.append(hits / Double(positives))
    }
    let r = [0.0] + recall + [1.0]
    var p = [0.0] + precision + [0.0]
    for i in stride(from: p.count - 2, through: 0, by: -1) { p[i] = max(p[i], p[i + 1]) }
    var area = 0.0
    for i in 1..<r.count where r[i] != r[i - 1] { area += (r[i] - r[i - 1]) * p[i] }
    return area
  }
}
