import Foundation
import TensorCore

/// One step of an augmentation pipeline (methods.md §1.4–1.8), applied per sample.
public enum Augmentation: Sendable, Equatable {
  /// Random crop of ratio U(low, high) (at least `minimum` frames) resized to `window` (train).
  case randomCrop(window: Int, low: Double, high: Double, minimum: Int)
  /// Centre crop of `ratio` resized to `window` (test).
  case centreCrop(window: Int, ratio: Double)
  /// PYSKL uniform sampling of `clip` frames.
  case uniformSample(clip: Int)
  /// Random rotation with angles in U(−θ, θ).
  case rotate(theta: Double)
  /// Shear with off-diagonals in U(−amount, amount).
  case shear(amount: Double)
  /// Joint corruption with probability `probability`, else shear (PCM3's spatial step).
  case corruptOrShear(probability: Double)
  /// Frame differences instead of positions.
  case motion
  /// MAMP's centring: body 1's centre joint in its first frame becomes the origin (§1.3).
  case centre
  /// The alignment rotations of §1.3 from the first frame: body 1's spine to +z, its shoulders
  /// to +x (removes the camera view, as the AGCN-preprocessed data have it).
  case align
  /// `count` random body parts hidden in every frame (occlusion).
  case occludeParts(count: Int)
  /// A contiguous block of `ratio` of the frames hidden (occlusion).
  case occludeTime(ratio: Double)

  /// Applies the step to a sample.
  public func apply(
    _ sample: SkeletonSample, layout: JointLayout, generator g: inout RandomGenerator
  )
    throws -> SkeletonSample
  {
    var s = sample
    let n = max(s.length, 1)
    switch self {
    case .randomCrop(let window, let low, let high, let minimum):
      s.data = try Transforms.randomCropResize(
        s.data, length: n, window: window, ratio: low...high, minimum: minimum, generator: &g)
      s.length = window
    case .centreCrop(let window, let ratio):
      s.data = try Transforms.centreCropResize(s.data, length: n, window: window, ratio: ratio)
      s.length = window
    case .uniformSample(let clip):
      let indices = try Transforms.uniformSampleIndices(total: n, clip: clip, generator: &g)
      s.data = try Transforms.frames(s.data, at: indices)
      s.length = clip
    case .rotate(let theta):
      s.data = try Transforms.randomRotation(s.data, theta: theta, generator: &g)
    case .shear(let amount): s.data = try Transforms.shear(s.data, amount: amount, generator: &g)
    case .corruptOrShear(let probability):
      s.data =
        g.nextDouble() < probability
        ? try Transforms.jointCorruption(s.data, generator: &g)
        : try Transforms.shear(s.data, generator: &g)
    case .motion: s.data = try Transforms.motion(s.data)
    case .centre: s.data = try Transforms.centreOnFirstFrame(s.data, layout: layout)
    case .align: s.data = try Transforms.align(s.data, frame: 0, layout: layout)
    case .occludeParts(let count):
      s.data = try Transforms.occludeParts(s.data, layout: layout, count: count, generator: &g)
    case .occludeTime(let ratio):
      s.data = try Transforms.occludeTime(s.data, length: n, ratio: ratio, generator: &g)
    }
    return s
  }
}

extension Array where Element == Augmentation {
  /// A sample after every step of the pipeline, in order, drawing from one generator.
  public func apply(
    _ sample: SkeletonSample, layout: JointLayout, generator g: inout RandomGenerator
  ) throws -> SkeletonSample {
    var s = sample
    for step in self { s = try step.apply(s, layout: layout, generator: &g) }
    return s
  }
}

/// Batches of a dataset: seeded shuffling, per-epoch augmentation, a background prefetch thread;
/// the same seed gives the same batches in the same order, also after resuming from `state`.
///
/// Randomness is keyed, not streamed: epoch e's order comes from (seed, e) and sample i's
/// augmentation in epoch e from (seed, e, i), so batches do not depend on which thread made
/// them or on where a run resumed.
/// Sendable by use, not by construction: the prefetch thread reads only `let` properties and
/// the shuffled order it is handed; `epoch` and `position` are read and written by the thread
/// that consumes the batches alone.
public final class Loader: @unchecked Sendable {
  public let dataset: SkeletonDataset
  public let batchSize: Int
  public let shuffle: Bool
  public let seed: UInt64
  public let dropLast: Bool
  public let augmentations: [Augmentation]
  /// Independent views of every sample (PCM3's query, key and masked views): each sample,
  /// after `augmentations`, goes through every pipeline with its own randomness, and a batch
  /// holds the views one after another, `[views·N, C, T, V, M]` (view-major). Empty: one view.
  public let views: [[Augmentation]]
  /// Epoch and batch of the next batch (the state a checkpoint saves).
  public internal(set) var epoch = 0
  public internal(set) var position = 0

  /// A batch: `x` `[N, C, T, V, M]`, labels, valid lengths and the dataset positions.
  public struct Batch: Sendable {
    public let x: Tensor
    public let labels: [Int]
    public let lengths: [Int]
    public let indices: [Int]
  }

  public init(
    dataset: SkeletonDataset, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0,
    dropLast: Bool = false, augmentations: [Augmentation] = [], views: [[Augmentation]] = []
  ) throws {
    guard batchSize > 0 else {
      throw TensorError("loader", "batch size must be positive, got \(batchSize)")
    }
    guard dataset.count > 0 else { throw TensorError("loader", "the dataset is empty") }
    self.dataset = dataset
    self.batchSize = batchSize
    self.shuffle = shuffle
    self.seed = seed
    self.dropLast = dropLast
    self.augmentations = augmentations
    self.views = views
  }

  /// Batches per epoch.
  public var batchesPerEpoch: Int {
    dropLast ? max(dataset.count / batchSize, 0) : (dataset.count + batchSize - 1) / batchSize
  }

  /// Mixes keys into one seed (SplitMix-style), so randomness is keyed by (seed, epoch, sample).
  public static func mix(_ keys: UInt64...) -> UInt64 {
    var h: UInt64 = 0x243F_6A88_85A3_08D3
    for k in keys {
      h ^= k &+ 0x9E37_79B9_7F4A_7C15 &+ (h << 6) &+ (h >> 2)
      h = (h ^ (h >> 29)) &* 0xBF58_476D_1CE4_E5B9
    }
    return h
  }

  /// The sample order of an epoch.
  public func order(epoch: Int) throws -> [Int] {
    guard shuffle else { return Array(0..<dataset.count) }
    var g = RandomGenerator(seed: Self.mix(seed, UInt64(epoch)))
    return try g.permutation(dataset.count)
  }

  /// Sample `index` of `dataset` after `augmentations`, their randomness keyed by
  /// (seed, epoch, index): the same whoever asks and whenever.
  public static func augmentedSample(
    _ dataset: SkeletonDataset, _ index: Int, augmentations: [Augmentation], seed: UInt64 = 0,
    epoch: Int = 0
  ) throws -> SkeletonSample {
    var g = RandomGenerator(seed: mix(seed, UInt64(epoch), UInt64(index), 1))
    return try augmentations.apply(dataset.sample(index), layout: dataset.layout, generator: &g)
  }

  /// Batch `b` of epoch `e`, built on the calling thread.
  public func batch(epoch e: Int, index b: Int, order: [Int]) throws -> Batch {
    let start = b * batchSize
    let positions = Array(order[start..<min(start + batchSize, order.count)])
    var samples: [Tensor] = []
    var labels: [Int] = []
    var lengths: [Int] = []
    var viewSamples = [[Tensor]](repeating: [], count: views.count)
    for p in positions {
      let sample = try Self.augmentedSample(
        dataset, p, augmentations: augmentations, seed: seed, epoch: e)
      labels.append(sample.label)
      lengths.append(sample.length)
      guard !views.isEmpty else {
        samples.append(sample.data)
        continue
      }
      for (v, pipeline) in views.enumerated() {
        var g = RandomGenerator(seed: Self.mix(seed, UInt64(e), UInt64(p), 2 + UInt64(v)))
        viewSamples[v].append(
          try pipeline.apply(sample, layout: dataset.layout, generator: &g).data)
      }
    }
    if !views.isEmpty { samples = viewSamples.flatMap { $0 } }
    guard let first = samples.first else { throw TensorError("loader", "an empty batch") }
    for s in samples where s.shape != first.shape {
      throw TensorError(
        "loader",
        "samples of shapes \(shapeString(first.shape)) and \(shapeString(s.shape)) cannot be batched; "
          + "add a crop (randomCrop/centreCrop) so every sample has the same frames")
    }
    return Batch(x: try Tensor.stack(samples), labels: labels, lengths: lengths, indices: positions)
  }

  /// Restores the position written by `state` (epoch, next batch).
  public func resume(epoch: Int, position: Int) throws {
    guard epoch >= 0, position >= 0, position <= batchesPerEpoch else {
      throw TensorError("loader", "cannot resume at epoch \(epoch), batch \(position)")
    }
    self.epoch = epoch
    self.position = position
  }

  /// The remaining batches of the current epoch, made by a background thread ahead of the
  /// consumer (`prefetch` batches queued); the loader moves to the next epoch after the last.
  /// `body` returns false to stop early (the loader then resumes after the last batch it
  /// delivered).
  public func forEachBatch(prefetch: Int = 2, _ body: (Batch) throws -> Bool) throws {
    let batches = try makeIterator(prefetch: prefetch)
    while let batch = try batches.next() {
      guard try body(batch) else { return }
    }
  }

  /// A pull-based iterator over the rest of the current epoch with a prefetch thread; dropping
  /// it stops the thread.
  public func makeIterator(prefetch: Int = 2) throws -> EpochIterator {
    try EpochIterator(self, prefetch: prefetch)
  }

  /// The batches of one epoch, produced one or more ahead by a background thread.
  ///
  /// Sendable by use: the producer thread captures the queue, the loader and the order, never
  /// the iterator; `delivered` and `done` change on the consuming thread alone.
  public final class EpochIterator: @unchecked Sendable {
    let loader: Loader
    let queue: BatchQueue
    let epoch: Int
    var delivered: Int
    var done = false

    init(_ loader: Loader, prefetch: Int) throws {
      self.loader = loader
      epoch = loader.epoch
      delivered = loader.position
      queue = BatchQueue(capacity: max(prefetch, 1))
      let order = try loader.order(epoch: epoch)
      let (first, total, e, queue) = (loader.position, loader.batchesPerEpoch, epoch, queue)
      let producer = Thread {
        if first < total {
          for b in first..<total {
            if queue.isCancelled { break }
            let result = Result { try loader.batch(epoch: e, index: b, order: order) }
            queue.put(result)
            if case .failure = result { break }
          }
        }
        queue.finish()
      }
      producer.start()
    }

    deinit { queue.cancel() }

    /// The next batch, or nil at the end of the epoch (the loader then points at the next one).
    public func next() throws -> Batch? {
      guard !done else { return nil }
      guard let result = queue.take() else {
        done = true
        loader.epoch = epoch + 1
        loader.position = 0
        return nil
      }
      let batch = try result.get()
      delivered += 1
      loader.position = delivered
      return batch
    }
  }
}

/// A bounded queue between the prefetch thread and the consumer. Every mutable field is read
/// and written under `condition`, which is what makes it safe to share.
final class BatchQueue: @unchecked Sendable {
  private let condition = NSCondition()
  private var items: [Result<Loader.Batch, Error>] = []
  private var finished = false
  private var cancelled = false
  private let capacity: Int

  init(capacity: Int) { self.capacity = capacity }

  var isCancelled: Bool {
    condition.lock()
    defer { condition.unlock() }
    return cancelled
  }

  func put(_ item: Result<Loader.Batch, Error>) {
    condition.lock()
    while items.count >= capacity && !cancelled { condition.wait() }
    if !cancelled { items.append(item) }
    condition.broadcast()
    condition.unlock()
  }

  func take() -> Result<Loader.Batch, Error>? {
    condition.lock()
    defer { condition.unlock() }
    while items.isEmpty && !finished { condition.wait() }
    guard !items.isEmpty else { return nil }
    let item = items.removeFirst()
    condition.broadcast()
    return item
  }

  func finish() {
    condition.lock()
    finished = true
    condition.broadcast()
    condition.unlock()
  }

  func cancel() {
    condition.lock()
    cancelled = true
    items.removeAll()
    condition.broadcast()
    condition.unlock()
  }
}
