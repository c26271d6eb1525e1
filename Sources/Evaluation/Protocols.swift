import Foundation
import NN
import Optim
import SkeletonData
import TensorCore

/// The evaluation protocols of methods.md §8 and the survey benchmark. Every one takes any
/// encoder (random, pretrained here, or loaded from a PyTorch checkpoint) and leaves it as it
/// was: probes freeze it, fine-tuning works on a copy.
public enum Protocols {
  /// The number of classes of a train/test pair.
  static func classCount(_ train: SkeletonDataset, _ test: SkeletonDataset) -> Int {
    max(train.classNames.count, (train.labels + test.labels).max().map { $0 + 1 } ?? 0)
  }

  // MARK: Linear probe (§8.1)

  /// Options of the linear probe (MAMP/Skeleton2vec recipe: SGD momentum 0.9, no weight decay,
  /// lr 0.1 with cosine to 0, batch 256).
  public struct ProbeOptions: Sendable {
    public var epochs = 100
    public var batch = 256
    public var learningRate = 0.1
    /// Train on MAMP's augmented view (features recomputed every epoch) or on the centre view
    /// (features computed once).
    public var augment = true
    public var seed: UInt64 = 0
    /// A folder for the resumable state (checkpoint.safetensors, config.json, epochs.jsonl);
    /// nil keeps nothing.
    public var run: String?
    /// Continue from the run folder's checkpoint when there is one.
    public var resume = true
    public init() {}
  }

  /// Trains the probe head on frozen features; returns the result (last and best top-1 and
  /// top-5 on `test`) and the trained head.
  public static func linearProbe(
    _ encoder: any SequenceEncoder, train: SkeletonDataset, test: SkeletonDataset,
    options: ProbeOptions = .init(),
    context: EvaluationContext = .silent
  ) throws -> (result: EvaluationResult, head: ProbeHead) {
    let testSet = try Features.extract(
      encoder, test, augmentations: Features.testView(encoder), seed: options.seed, context: context
    )
    let cleanTrain =
      options.augment
      ? nil
      : try Features.extract(
        encoder, train, augmentations: Features.testView(encoder), seed: options.seed,
        context: context)
    return try trainHead(
      classes: classCount(train, test), dimension: encoder.featureDimension,
      eps: encoder.probeEps, test: testSet, options: options, context: context,
      identity: options.run == nil ? [] : [("encoder_weights", encoder.fingerprint())]
    ) { epoch in
      try cleanTrain
        ?? Features.extract(
          encoder, train, augmentations: Features.trainView(encoder), seed: options.seed,
          epoch: epoch, context: context)
    }
  }

  /// The probe's training loop on features: `features(epoch)` gives that epoch's training
  /// features; SGD momentum 0.9, cosine to 0 per iteration; top-1/top-5 on `test` every epoch.
  /// With `options.run`, the head's run resumes from its folder; `identity` adds what makes the
  /// features (the encoder's fingerprint) to what a resume must match.
  public static func trainHead(
    classes: Int, dimension: Int, eps: Float, test: (features: Tensor, labels: [Int]),
    options: ProbeOptions, context: EvaluationContext = .silent,
    identity: [(String, String)] = [],
    features: (Int) throws -> (features: Tensor, labels: [Int])
  ) throws -> (result: EvaluationResult, head: ProbeHead) {
    let head = try Random.withSeed(options.seed) {
      try ProbeHead(features: dimension, classes: classes, eps: eps)
    }
    let optimizer = try SGD(
      groups: ParameterGroup.groups(head, weightDecay: 0, exclusion: .oneDimensional),
      learningRate: options.learningRate, momentum: 0.9)
    let schedule = CosineSchedule(base: options.learningRate, epochs: Double(options.epochs))
    var loop = SupervisedLoop(
      name: "linear probe", epochs: options.epochs, optimizer: optimizer, context: context
    ) {
      schedule.learningRate(step: $0, stepsPerEpoch: $1)
    }
    let initial = try features(0)
    let n = initial.labels.count
    loop.checkpoint = try options.run.map { path in
      SupervisedLoop.Checkpoint(
        folder: try RunFolder(path, op: "linear_probe"), model: head,
        identity: [
          ("protocol", "linear probe"), ("features", "\(dimension)"), ("classes", "\(classes)"),
          ("samples", "\(n)"), ("batch", "\(options.batch)"), ("lr", "\(options.learningRate)"),
          ("augment", "\(options.augment)"), ("seed", "\(options.seed)"),
        ] + identity, resume: options.resume)
    }
    // Batches with at least two samples (BatchNorm needs two).
    let batches = n / options.batch + (n % options.batch > 1 ? 1 : 0)
    var result = try loop.run(batchesPerEpoch: batches) { epoch, done, step in
      let (x, y) = epoch == 0 ? initial : try features(epoch)
      var generator = RandomGenerator(seed: Loader.mix(options.seed, UInt64(epoch), 7))
      let order = try generator.permutation(y.count)
      head.setTraining(true)
      var start = done * options.batch
      while start < order.count {
        let rows = Array(order[start..<min(start + options.batch, order.count)])
        start += options.batch
        guard rows.count > 1 else { continue }  // BatchNorm needs two samples
        try step(nil) {
          try Loss.crossEntropy(
            head(x.indexSelect(axis: 0, indices: rows)), labels: Tensor(rows.map { Float(y[$0]) }))
        }
      }
    } evaluate: { _ in
      head.setTraining(false)
      let logits = try Autograd.noGrad { try head(test.features) }
      return (
        try topK(logits, labels: test.labels, k: 1), try topK(logits, labels: test.labels, k: 5)
      )
    }
    result.metrics.append(("chance", 1 / Double(classes)))
    return (result, head)
  }

  // MARK: KNN retrieval (§8.3)

  /// k-nearest-neighbour accuracy with cosine similarity on L2-normalised features of the
  /// centre view; majority vote, ties going to the smallest label (methods.md §8.3).
  public static func knn(
    _ encoder: any SequenceEncoder, train: SkeletonDataset, test: SkeletonDataset, ks: [Int] = [1],
    context: EvaluationContext = .silent
  ) throws -> EvaluationResult {
    guard !ks.isEmpty, ks.allSatisfy({ $0 > 0 && $0 <= train.count }) else {
      throw TensorError("knn", "k must be in 1...\(train.count), got \(ks)")
    }
    let gallery = try Features.extract(
      encoder, train, augmentations: Features.testView(encoder), context: context)
    let queries = try Features.extract(
      encoder, test, augmentations: Features.testView(encoder), context: context)
    let accuracies = try knnAccuracy(
      gallery: gallery.features, galleryLabels: gallery.labels, queries: queries.features,
      queryLabels: queries.labels, ks: ks)
    var result = EvaluationResult(name: "knn", metrics: [("accuracy", accuracies[0])])
    for (k, accuracy) in zip(ks, accuracies) { result.metrics.append(("k\(k)", accuracy)) }
    context.progress(
      "knn: "
        + zip(ks, accuracies).map { String(format: "k=%d %.4f", $0, $1) }.joined(separator: "  "))
    return result
  }

  /// KNN accuracy for each k, on given features.
  public static func knnAccuracy(
    gallery: Tensor, galleryLabels: [Int], queries: Tensor, queryLabels: [Int], ks: [Int]
  ) throws -> [Double] {
    let g = try Loss.normalized(gallery)
    let q = try Loss.normalized(queries)
    let similarity = try q.matmul(g.transposed()).contiguous().scalars  // [Q, G]
    let (nq, ng) = (queries.shape[0], gallery.shape[0])
    var hits = [Int](repeating: 0, count: ks.count)
    for i in 0..<nq {
      let row = Array(similarity[(i * ng)..<((i + 1) * ng)])
      let ranked = (0..<ng).sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }
      for (slot, k) in ks.enumerated() {
        var votes: [Int: Int] = [:]
        for j in ranked.prefix(k) { votes[galleryLabels[j], default: 0] += 1 }
        let most = votes.values.max() ?? 0
        let predicted = votes.filter { $0.value == most }.keys.min() ?? -1
        if predicted == queryLabels[i] { hits[slot] += 1 }
      }
    }
    return hits.map { Double($0) / Double(max(nq, 1)) }
  }

  // MARK: Fine-tuning (§8.2, §9.1)

  public struct FinetuneOptions: Sendable {
    public var epochs = 100
    public var batch = 48
    public var learningRate = 3e-4
    public var minimumLearningRate = 1e-5
    public var warmupEpochs = 5.0
    public var weightDecay: Float = 0.05
    public var layerDecay: Float = 0.8
    public var dropPath: Float = 0.3
    public var smoothing: Float = 0.1
    public var hidden = 2048
    public var seed: UInt64 = 0
    /// A folder for the resumable state, as `ProbeOptions.run`.
    public var run: String?
    public var resume = true
    public init() {}
  }

  /// Fine-tunes a copy of the encoder with the §8.2 head: AdamW (0.9, 0.999), layer-wise lr
  /// decay, drop path, label smoothing, per-iteration warm-up + cosine; evaluates the centre
  /// view every epoch (last and best top-1/top-5).
  public static func finetune(
    _ encoder: any SequenceEncoder, train: SkeletonDataset, test: SkeletonDataset,
    options: FinetuneOptions = .init(),
    context: EvaluationContext = .silent
  ) throws -> EvaluationResult {
    let classes = classCount(train, test)
    let model = try Random.withSeed(options.seed) {
      try Classifier(
        encoder: try encoder.tuningCopy(dropPath: options.dropPath), classes: classes,
        head: .finetune,
        hidden: options.hidden)
    }
    let optimizer = try AdamW(
      groups: ParameterGroup.groups(
        model, weightDecay: options.weightDecay,
        exclusion: encoder.tuningGroups.flavor == .mamp ? .mamp : .skeleton2vec,
        layerDecay: encoder.tuningGroups.depth.map {
          LayerDecay(factor: options.layerDecay, depth: $0, flavor: encoder.tuningGroups.flavor)
        }),
      learningRate: options.learningRate)
    let loader = try Loader(
      dataset: train, batchSize: options.batch, seed: options.seed,
      dropLast: train.count > options.batch,
      augmentations: Features.trainView(model.encoder))
    let testLoader = try Loader(
      dataset: test, batchSize: 64, shuffle: false, augmentations: Features.testView(model.encoder))
    let schedule = CosineSchedule(
      base: options.learningRate, minimum: options.minimumLearningRate,
      warmupEpochs: min(options.warmupEpochs, Double(options.epochs) / 2),
      epochs: Double(options.epochs))
    var loop = SupervisedLoop(
      name: "finetune", epochs: options.epochs, optimizer: optimizer, context: context
    ) {
      schedule.learningRate(step: $0, stepsPerEpoch: $1)
    }
    loop.checkpoint = try options.run.map { path in
      SupervisedLoop.Checkpoint(
        folder: try RunFolder(path, op: "finetune"), model: model,
        identity: [
          ("protocol", "finetune"),
          ("encoder", encoder.runIdentity),
          ("classes", "\(classes)"), ("samples", "\(train.count)"), ("batch", "\(options.batch)"),
          ("lr", "\(options.learningRate)"), ("min_lr", "\(options.minimumLearningRate)"),
          ("warmup", "\(options.warmupEpochs)"), ("weight_decay", "\(options.weightDecay)"),
          ("layer_decay", "\(options.layerDecay)"), ("drop_path", "\(options.dropPath)"),
          ("smoothing", "\(options.smoothing)"), ("hidden", "\(options.hidden)"),
          ("seed", "\(options.seed)"), ("encoder_weights", encoder.fingerprint()),
        ], resume: options.resume)
    }
    var result = try loop.run(batchesPerEpoch: loader.batchesPerEpoch) { epoch, done, step in
      model.setTraining(true)
      try Random.withSeed(Loader.mix(options.seed, UInt64(epoch), 11)) {
        try loader.resume(epoch: epoch, position: done)
        let batches = try loader.makeIterator()
        while let b = try batches.next() {
          guard b.x.shape[0] > 1 else { continue }
          // In an MPI job each rank computes its share of the batch (`step` shares it out).
          try step(b.x.shape[0]) {
            let rows = DataParallel.current.map { Array($0.share) }
            let x = try rows.map { try b.x.indexSelect(axis: 0, indices: $0) } ?? b.x
            let labels = rows.map { $0.map { b.labels[$0] } } ?? b.labels
            return try Loss.crossEntropy(
              model(x), labels: Tensor(labels.map(Float.init)), smoothing: options.smoothing)
          }
        }
      }
    } evaluate: { _ in
      model.setTraining(false)
      var logits: [Tensor] = []
      var labels: [Int] = []
      try testLoader.resume(epoch: 0, position: 0)
      let batches = try testLoader.makeIterator()
      while let b = try batches.next() {
        try context.checkStop()
        logits.append(try Autograd.noGrad { try model(b.x) })
        labels += b.labels
      }
      let all = try Tensor.concat(logits, axis: 0)
      return (try topK(all, labels: labels, k: 1), try topK(all, labels: labels, k: 5))
    }
    result.metrics.append(("chance", 1 / Double(classes)))
    return result
  }

  /// Fine-tuning on seeded class-balanced subsets (`fraction` of each class), one per repeat;
  /// accuracy is the mean, with the standard deviation over repeats.
  public static func semiSupervised(
    _ encoder: any SequenceEncoder, train: SkeletonDataset, test: SkeletonDataset, fraction: Double,
    repeats: Int = 1,
    options: FinetuneOptions = .init(), context: EvaluationContext = .silent
  ) throws -> EvaluationResult {
    guard repeats > 0 else { throw TensorError("semi_supervised", "repeats must be positive") }
    var accuracies: [Double] = []
    for r in 0..<repeats {
      let subset = try train.fraction(fraction, perClass: true, seed: options.seed &+ UInt64(r))
      context.progress(
        "semi-supervised repeat \(r + 1)/\(repeats): \(subset.count) labelled samples")
      var o = options
      o.seed = options.seed &+ UInt64(r)
      o.run = options.run.map { $0 + "/repeat-\(r + 1)" }
      accuracies.append(
        try finetune(encoder, train: subset, test: test, options: o, context: context)["accuracy"]
          ?? 0)
    }
    let mean = accuracies.reduce(0, +) / Double(repeats)
    let variance =
      accuracies.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(max(repeats - 1, 1))
    return EvaluationResult(
      name: "semi-supervised \(fraction)",
      metrics: [
        ("accuracy", mean), ("std", variance.squareRoot()), ("fraction", fraction),
        ("repeats", Double(repeats)),
      ])
  }

  // MARK: Few-shot (§8.5, GUESS)

  /// N-way K-shot episodes from `classes` (held out from pretraining): a logistic-regression
  /// classifier (full-batch gradient descent on L2-normalised support features, 100 steps) per
  /// episode, tested on `queries` other samples per class. Accuracy is the mean over episodes
  /// for the first `shots`, with a 95% interval (1.96·std/√episodes).
  public static func fewShot(
    _ encoder: any SequenceEncoder, data: SkeletonDataset, classes: [Int], ways: Int = 5,
    shots: [Int] = [1, 5],
    queries: Int = 5, episodes: Int = 100, seed: UInt64 = 0, context: EvaluationContext = .silent
  ) throws -> EvaluationResult {
    guard ways >= 2, ways <= classes.count, let firstShots = shots.first else {
      throw TensorError("few_shot", "needs 2 ≤ ways ≤ \(classes.count) held-out classes and shots")
    }
    let pool = try data.classes(Set(classes))
    let features = try Features.extract(
      encoder, pool, augmentations: Features.testView(encoder), context: context)
    let normal = try Loss.normalized(features.features).contiguous()
    var byClass: [Int: [Int]] = [:]
    for (i, label) in features.labels.enumerated() { byClass[label, default: []].append(i) }
    var result = EvaluationResult(name: "few-shot \(ways)-way", metrics: [])
    var generator = RandomGenerator(seed: seed)
    for k in shots {
      let eligible = byClass.filter { $0.value.count >= k + queries }.keys.sorted()
      guard eligible.count >= ways else {
        throw TensorError(
          "few_shot",
          "only \(eligible.count) classes have \(k + queries) samples for \(ways)-way \(k)-shot")
      }
      var accuracies: [Double] = []
      for _ in 0..<episodes {
        try context.checkStop()
        let chosen = try generator.sample(ways, from: eligible.count).map { eligible[$0] }
        var support: [Int] = []
        var supportLabels: [Int] = []
        var query: [Int] = []
        var queryLabels: [Int] = []
        for (way, label) in chosen.enumerated() {
          let members = byClass[label] ?? []
          let picks = try generator.sample(k + queries, from: members.count).map { members[$0] }
          support += picks.prefix(k)
          supportLabels += [Int](repeating: way, count: k)
          query += picks.dropFirst(k)
          queryLabels += [Int](repeating: way, count: queries)
        }
        accuracies.append(
          try episodeAccuracy(
            support: normal.indexSelect(axis: 0, indices: support), supportLabels: supportLabels,
            query: normal.indexSelect(axis: 0, indices: query), queryLabels: queryLabels, ways: ways
          ))
      }
      let mean = accuracies.reduce(0, +) / Double(episodes)
      let std =
        (accuracies.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(max(episodes - 1, 1)))
        .squareRoot()
      let interval = 1.96 * std / Double(episodes).squareRoot()
      if k == firstShots { result.metrics.append(("accuracy", mean)) }
      result.metrics += [("\(k)shot", mean), ("\(k)shot_ci95", interval)]
      context.progress(
        String(format: "few-shot %d-way %d-shot: %.4f ± %.4f", ways, k, mean, interval))
    }
    result.metrics.append(("chance", 1 / Double(ways)))
    return result
  }

  /// One episode: logistic regression fitted on the support features, accuracy on the query.
  public static func episodeAccuracy(
    support: Tensor, supportLabels: [Int], query: Tensor, queryLabels: [Int], ways: Int
  ) throws -> Double {
    let w = try logisticRegression(support, labels: supportLabels, classes: ways)
    return try topK(query.matmul(w), labels: queryLabels, k: 1)
  }

  /// A multinomial logistic regression `[D, C]` without bias (the features are unit vectors)
  /// by full-batch gradient descent with a little weight decay.
  static func logisticRegression(_ x: Tensor, labels: [Int], classes: Int, steps: Int = 100) throws
    -> Tensor
  {
    var w = Tensor.zeros([x.shape[1], classes])
    let y = Tensor(labels.map(Float.init))
    for _ in 0..<steps {
      let leaf = w.requiringGrad()
      let loss = try Loss.crossEntropy(x.matmul(leaf), labels: y) + (leaf * leaf).sum() * 1e-4
      try loss.backward()
      guard let g = leaf.grad else { break }
      w = try Autograd.noGrad { try w - g * 10 }
    }
    return w
  }

  // MARK: Transfer

  /// Features learned elsewhere evaluated on another dataset: a linear probe or fine-tuning on
  /// `train`/`test`, after converting their joint layout to the encoder's when they differ
  /// (MSR Action3D's 20 joints to Kinect v2's 25).
  public static func transfer(
    _ encoder: any SequenceEncoder, train: SkeletonDataset, test: SkeletonDataset, finetuning: Bool,
    probe: ProbeOptions = .init(), finetune options: FinetuneOptions = .init(),
    context: EvaluationContext = .silent
  ) throws -> EvaluationResult {
    var (source, target) = (train, test)
    if train.layout.count != encoder.joints {
      guard let layout = JointLayout.forJointCount(encoder.joints) else {
        throw TensorError(
          "transfer", "the encoder's " + JointLayout.describeMessage(encoder.joints))
      }
      source = try train.converted(to: layout, bodies: 2)
      target = try test.converted(to: layout, bodies: 2)
      context.progress("transfer: \(train.layout.name) converted to \(layout.name)")
    }
    var result =
      finetuning
      ? try finetune(encoder, train: source, test: target, options: options, context: context)
      : try linearProbe(encoder, train: source, test: target, options: probe, context: context)
        .result
    result.name = "transfer (" + (finetuning ? "finetune" : "linear") + ")"
    return result
  }

  // MARK: Occluded recognition (§8.5, GUESS)

  /// A linear probe trained on clean data, tested with `parts` random body parts hidden (one
  /// row per count) and with a hidden temporal block of each ratio. The occlusions are keyed by
  /// the sample index and `seed`, so every method sees the same masks.
  public static func occluded(
    _ encoder: any SequenceEncoder, train: SkeletonDataset, test: SkeletonDataset,
    parts: [Int] = [1, 2],
    ratios: [Double] = [0.3, 0.5, 0.7], options: ProbeOptions = .init(),
    context: EvaluationContext = .silent
  ) throws -> EvaluationResult {
    let (clean, head) = try linearProbe(
      encoder, train: train, test: test, options: options, context: context)
    head.setTraining(false)
    var result = EvaluationResult(name: "occluded", metrics: [("clean", clean["accuracy"] ?? 0)])
    var accuracies: [Double] = []
    func evaluate(_ occlusion: Augmentation, _ name: String) throws {
      let view = Features.testView(encoder) + [occlusion]
      let f = try Features.extract(
        encoder, test, augmentations: view, seed: options.seed &+ 1000, context: context)
      let accuracy = try topK(try Autograd.noGrad { try head(f.features) }, labels: f.labels, k: 1)
      result.metrics.append((name, accuracy))
      accuracies.append(accuracy)
      context.progress(String(format: "occluded %@: %.4f", name, accuracy))
    }
    for count in parts { try evaluate(.occludeParts(count: count), "parts\(count)") }
    for ratio in ratios {
      try evaluate(.occludeTime(ratio: ratio), String(format: "temporal%.1f", ratio))
    }
    result.metrics.insert(
      ("accuracy", accuracies.reduce(0, +) / Double(max(accuracies.count, 1))), at: 0)
    return result
  }
}
