import Distributed
import Foundation
import NN
import SkeletonData
import TensorCore

/// Sequence features of a frozen encoder (methods.md §2.7), streamed in batches: only the
/// `[N, D]` features stay in memory, never a dataset of augmented views.
public enum Features {
  /// The test view of methods.md §1.4: a centre crop of 95% resized to the encoder's frames.
  public static func testView(_ encoder: any SequenceEncoder) -> [Augmentation] {
    [.centreCrop(window: encoder.frames, ratio: 0.95)]
  }

  /// MAMP's training view: a random crop of 50–100% resized to the encoder's frames, then a
  /// random rotation of ±0.3 rad.
  public static func trainView(_ encoder: any SequenceEncoder) -> [Augmentation] {
    [
      .randomCrop(window: encoder.frames, low: 0.5, high: 1, minimum: min(64, encoder.frames)),
      .rotate(theta: 0.3),
    ]
  }

  /// The features `[N, D]` and labels of every sample of `dataset` after `augmentations`
  /// (their randomness keyed by `seed` and `epoch`), with the encoder in inference mode and no
  /// gradients. In an MPI job the ranks take a share of the batches each and every rank gets
  /// all the features (the same batches as one process computes, so the same values).
  public static func extract(
    _ encoder: any SequenceEncoder, _ dataset: SkeletonDataset, augmentations: [Augmentation],
    batch: Int = 64,
    seed: UInt64 = 0, epoch: Int = 0, context: EvaluationContext = .silent
  ) throws -> (features: Tensor, labels: [Int]) {
    let wasTraining = encoder.training
    encoder.setTraining(false)
    defer { encoder.setTraining(wasTraining) }
    let loader = try Loader(
      dataset: dataset, batchSize: batch, shuffle: false, seed: seed, augmentations: augmentations)
    let group = World.current
    let mine = group.share(of: loader.batchesPerEpoch)
    var chunks: [Tensor] = []
    var labels: [Int] = []
    if !mine.isEmpty {
      try loader.resume(epoch: epoch, position: mine.lowerBound)
      let batches = try loader.makeIterator()
      for _ in mine {
        guard let b = try batches.next() else { break }
        try context.checkStop()
        chunks.append(try Autograd.noGrad { try encoder.features(b.x) })
        labels += b.labels
      }
    }
    guard group.size > 1 else { return (try Tensor.concat(chunks, axis: 0), labels) }
    // Each rank's block: its feature width, its features `[n, D]`, then its labels.
    let local = chunks.isEmpty ? nil : try Tensor.concat(chunks, axis: 0)
    let width = local?.shape[1] ?? 0
    let block = [Float(width)] + (local?.contiguous().scalars ?? []) + labels.map(Float.init)
    var features: [Float] = []
    var all: [Int] = []
    var widths = Set<Int>()
    for block in try group.allGather(block) {
      let d = Int(block.first ?? 0)
      guard d > 0 else { continue }
      widths.insert(d)
      let n = (block.count - 1) / (d + 1)
      features += block[1..<(1 + n * d)]
      all += block[(1 + n * d)...].map { Int($0) }
    }
    guard let d = widths.first, widths.count == 1 else {
      throw TensorError("features", "the ranks' features differ in width: \(widths.sorted())")
    }
    return (try Tensor(shape: [all.count, d], scalars: features), all)
  }
}

/// The linear-probe head of methods.md §8.1: BatchNorm without affine, then Linear
/// (truncated-normal 0.01 weights, zero bias); names `0.*` and `1.*` as in the MAE/MAMP script.
public final class ProbeHead: Module {
  public let norm: BatchNorm1d
  public let linear: Linear

  public init(features: Int, classes: Int, eps: Float) throws {
    norm = BatchNorm1d(features, eps: eps, affine: false)
    linear = Linear(features, classes)
    super.init()
    child("0", norm)
    child("1", linear)
    linear.weight.assign(try Initialization.truncatedNormal([classes, features], std: 0.01))
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor { try linear(norm(x)) }
}

/// Top-k accuracy of `logits` `[N, C]` against labels.
public func topK(_ logits: Tensor, labels: [Int], k: Int) throws -> Double {
  let (n, c) = (logits.shape[0], logits.shape[1])
  guard n == labels.count, n > 0 else { return 0 }
  let values = logits.contiguous().scalars
  var hits = 0
  for i in 0..<n {
    let row = values[(i * c)..<((i + 1) * c)]
    let target = row[row.startIndex + labels[i]]
    // The label is in the top k when fewer than k classes score higher (ties count for it).
    let better = row.filter { $0 > target }.count
    if better < k { hits += 1 }
  }
  return Double(hits) / Double(n)
}
