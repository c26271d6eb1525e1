import Foundation
import NN
import Optim
import SkeletonData
import TensorCore

/// A masking strategy as a configuration (the language's `mask(kind, ...)`).
public enum MaskConfig: Sendable, Equatable {
  case random(ratio: Double)
  case motion(ratio: Double, temperature: Double)
  case tube(ratio: Double, length: Int, motion: Double)

  /// The token mask of sequences `x` `[B, T, V, C]`.
  public func make(
    _ x: Tensor, segment: Int, placement: Decoder.Restore, generator g: inout RandomGenerator
  )
    throws -> TokenMask
  {
    switch self {
    case .random(let ratio):
      return try Masking.random(
        batch: x.shape[0], tokens: x.shape[1] / segment * x.shape[2], ratio: ratio, generator: &g)
    case .motion(let ratio, let temperature):
      return try Masking.motionAware(
        x, segment: segment, ratio: ratio, temperature: temperature, generator: &g)
    case .tube(let ratio, let length, let beta):
      return try Masking.tube(
        x, segment: segment, ratio: ratio, length: length, motion: beta, placement: placement,
        generator: &g)
    }
  }

  public var description: String {
    switch self {
    case .random(let r): return "random(ratio \(r))"
    case .motion(let r, let t): return "motion(ratio \(r), temperature \(t))"
    case .tube(let r, let l, let b): return "tube(ratio \(r), length \(l), motion \(b))"
    }
  }
}

/// The optimiser a trainer's recipe uses (methods.md §9.1).
public enum OptimizerKind: Sendable, Equatable {
  /// AdamW, β (0.9, 0.95) (MAMP, Skeleton2vec).
  case adamw
  /// SGD with momentum (PCM3).
  case sgd(momentum: Double)

  public var description: String {
    switch self {
    case .adamw: return "adamw"
    case .sgd(let m): return "sgd (momentum \(m))"
    }
  }
}

/// What `fit` trains: a student (and maybe an EMA teacher) and its loss on a batch.
public protocol Pretrainer: AnyObject {
  var name: String { get }
  /// The encoder that is learned (what evaluations take afterwards).
  var backbone: any SequenceEncoder { get }
  /// Everything the optimiser trains (encoder and decoder, names side by side).
  var student: Module { get }
  /// The EMA teacher, saved in checkpoints under `teacher.`.
  var teacher: Module? { get }
  /// Global-norm gradient clipping, or nil.
  var clipNorm: Float? { get }
  var decayExclusion: DecayExclusion { get }
  /// The loss of a batch `[N, C, T, V, M]`; randomness from `generator`.
  func loss(_ batch: Tensor, generator: inout RandomGenerator) throws -> Tensor
  /// Called after every optimiser step `step` (1-based) of `totalSteps`.
  func afterStep(_ step: Int, of totalSteps: Int) throws
  /// The configuration, shown when the trainer is echoed and written to config.json.
  var configuration: [(String, String)] { get }
  /// Independent views of every sample the loader makes (stacked view-major in a batch);
  /// empty for one view.
  var views: [[Augmentation]] { get }
  /// The optimiser of the recipe.
  var optimizerKind: OptimizerKind { get }
  /// Checks that `data` in batches of `batch` fits the trainer, before any work.
  func validate(_ data: SkeletonDataset, batch: Int) throws
}

extension Pretrainer {
  public var views: [[Augmentation]] { [] }
  public var optimizerKind: OptimizerKind { .adamw }
  public func validate(_ data: SkeletonDataset, batch: Int) throws {
    guard data.layout.count == backbone.joints else {
      throw TensorError(
        name,
        "the data has \(data.layout.count) joints and the encoder \(backbone.joints): build it "
          + "with joints=\(data.layout.count)")
    }
  }
}

/// The transformer trainers (Skeleton2vec, MAMP, MAE).
protocol TransformerPretrainer: Pretrainer {
  var encoder: Encoder { get }
  var mask: MaskConfig { get }
}

extension TransformerPretrainer {
  public var backbone: any SequenceEncoder { encoder }
  /// `[N, C, T, V, M]` -> `[N·M, T, V, C]` (bodies folded into the batch).
  func sequences(_ batch: Tensor) throws -> Tensor {
    guard batch.rank == 5, batch.shape[2] == encoder.frames, batch.shape[3] == encoder.joints else {
      let hint =
        batch.rank == 5 && batch.shape[3] != encoder.joints
        ? "the data has \(batch.shape[3]) joints and the encoder \(encoder.joints): build it with "
          + "encoder(joints=\(batch.shape[3]))"
        : "crop or sample the data to \(encoder.frames) frames"
      throw TensorError(
        name,
        "expects batches [N, C, \(encoder.frames), \(encoder.joints), M], got "
          + "\(shapeString(batch.shape)) (\(hint))")
    }
    let (n, c, t, v, m) = (
      batch.shape[0], batch.shape[1], batch.shape[2], batch.shape[3], batch.shape[4]
    )
    return try batch.permuted([0, 4, 2, 3, 1]).contiguous().reshaped([n * m, t, v, c])
  }

  /// The masks of the whole batch `x` `[N·M, T, V, C]` (drawn as one process draws them), then
  /// the sequences and masks of this rank's samples when a data-parallel step runs.
  func shard(
    _ x: Tensor, bodies: Int, placement: Decoder.Restore, generator: inout RandomGenerator
  ) throws -> (Tensor, TokenMask) {
    let tokens = try mask.make(
      x, segment: encoder.embedding.segment, placement: placement, generator: &generator)
    guard let context = DataParallel.current else { return (x, tokens) }
    let rows = Array((context.share.lowerBound * bodies)..<(context.share.upperBound * bodies))
    return (try x.indexSelect(axis: 0, indices: rows), try tokens.rows(rows))
  }
}

/// A student encoder + decoder whose names sit side by side, as in the checkpoints.
final class StudentModel: Module {
  init(_ encoder: Encoder, _ decoder: Decoder) {
    super.init()
    child("", encoder)
    child("", decoder)
  }
}

/// Skeleton2vec (methods.md §6): an EMA teacher of the whole student sees every token; the
/// average of its top-K instance-normalised block outputs, layer-normalised, is the target of
/// the student's decoder on the hidden tokens of a motion-aware tube mask.
public final class Skeleton2vecTrainer: TransformerPretrainer {
  public let name = "skeleton2vec"
  public let encoder: Encoder
  public let decoder: Decoder
  public let student: Module
  public let teacher: Module?
  let teacherEncoder: Encoder
  public let mask: MaskConfig
  public let topK: Int
  public let perLayer: ContextualTarget.LayerNormalization
  public let placement: Decoder.Restore
  public let schedule: (start: Double, end: Double)
  public let clipNorm: Float?
  public let decayExclusion = DecayExclusion.skeleton2vec

  public init(
    encoder: Encoder, decoderDepth: Int = 1, mask: MaskConfig? = nil, topK: Int? = nil,
    perLayer: ContextualTarget.LayerNormalization = .instanceNorm, tau: Double = 0.9999,
    clipNorm: Float? = 4, placement: Decoder.Restore = .intended
  ) throws {
    self.encoder = encoder
    let tubeLength = [5, 4, 3, 2, 1].first { encoder.segments % $0 == 0 } ?? 1
    self.mask = mask ?? .tube(ratio: 0.9, length: tubeLength, motion: 0.1)
    if case .tube(_, let length, _) = self.mask, encoder.segments % length != 0 {
      throw TensorError(
        "skeleton2vec",
        "tube length \(length) does not divide the encoder's \(encoder.segments) segments")
    }
    self.topK = topK ?? encoder.blocks.count
    guard self.topK >= 1, self.topK <= encoder.blocks.count else {
      throw TensorError(
        "skeleton2vec", "top_k must be in 1...\(encoder.blocks.count), got \(self.topK)")
    }
    self.perLayer = perLayer
    self.placement = placement
    self.schedule = (tau, 1)
    self.clipNorm = clipNorm
    decoder = try Decoder(
      encoderDimension: encoder.dimension, dimension: encoder.dimension, depth: decoderDepth,
      heads: encoder.heads, segments: encoder.segments, joints: encoder.joints,
      head: .features(outputs: encoder.dimension), eps: encoder.norm.eps,
      layerScale: encoder.blocks.first?.gamma1 == nil ? nil : 1e-4, flavor: encoder.flavor)
    student = StudentModel(encoder, decoder)
    // The teacher starts as an exact, frozen copy of the whole student.
    teacherEncoder = try encoder.copy()
    let teacherDecoder = try Decoder(
      encoderDimension: encoder.dimension, dimension: encoder.dimension, depth: decoderDepth,
      heads: encoder.heads, segments: encoder.segments, joints: encoder.joints,
      head: .features(outputs: encoder.dimension), eps: encoder.norm.eps,
      layerScale: encoder.blocks.first?.gamma1 == nil ? nil : 1e-4, flavor: encoder.flavor)
    let teacherModel = StudentModel(teacherEncoder, teacherDecoder)
    try ExponentialMovingAverage.copy(from: student, to: teacherModel)
    teacherModel.setTraining(false)
    teacher = teacherModel
  }

  public func loss(_ batch: Tensor, generator: inout RandomGenerator) throws -> Tensor {
    let (x, tokens) = try shard(
      sequences(batch), bodies: batch.shape[4], placement: placement, generator: &generator)
    let target = try Autograd.noGrad {
      try ContextualTarget.build(
        hidden: teacherEncoder.hiddenStates(x, last: topK), topK: topK, perLayer: perLayer)
    }
    let visible = try encoder.tokens(x, keep: tokens.keep)
    return try MotionTarget.maskedLoss(
      decoder(visible, restore: tokens.restore), target, mask: tokens.mask)
  }

  public func afterStep(_ step: Int, of totalSteps: Int) throws {
    guard let teacher else { return }
    let decay = EMADecaySchedule(start: schedule.start, end: schedule.end, annealSteps: totalSteps)
    try ExponentialMovingAverage.update(
      teacher: teacher, student: student, oneMinusDecay: decay.oneMinusDecay(updates: step - 1))
  }

  public var configuration: [(String, String)] {
    [
      ("method", name), ("mask", mask.description), ("top_k", "\(topK)"),
      ("per_layer", perLayer.rawValue),
      ("decoder_depth", "\(decoder.blocks.count)"), ("tau", "\(schedule.start) -> \(schedule.end)"),
      ("clip_norm", clipNorm.map { "\($0)" } ?? "none"), ("restore", placement.rawValue),
    ]
  }
}

/// MAMP (methods.md §5) and its MAE baseline: the decoder regresses each hidden token's
/// normalised motion (MAMP, motion-aware masking) or position (MAE, random masking).
public final class MaskedPredictionTrainer: TransformerPretrainer {
  public let name: String
  public let encoder: Encoder
  public let decoder: Decoder
  public let student: Module
  public let teacher: Module? = nil
  public let mask: MaskConfig
  public let predictsMotion: Bool
  public let clipNorm: Float? = nil
  public let decayExclusion = DecayExclusion.mamp

  /// MAMP with `motion: true` (default mask: motion-aware, ratio 0.9, τ 0.8); MAE with
  /// `motion: false` (default mask: random, ratio 0.9).
  public init(encoder: Encoder, motion: Bool, decoderDepth: Int = 1, mask: MaskConfig? = nil) throws
  {
    self.encoder = encoder
    predictsMotion = motion
    name = motion ? "mamp" : "mae"
    self.mask = mask ?? (motion ? .motion(ratio: 0.9, temperature: 0.8) : .random(ratio: 0.9))
    decoder = try Decoder(
      encoderDimension: encoder.dimension, dimension: encoder.dimension, depth: decoderDepth,
      heads: encoder.heads, segments: encoder.segments, joints: encoder.joints,
      head: .motion(outputs: encoder.embedding.segment * encoder.embedding.channels),
      eps: encoder.norm.eps,
      layerScale: encoder.blocks.first?.gamma1 == nil ? nil : 1e-4, flavor: encoder.flavor)
    student = StudentModel(encoder, decoder)
  }

  public func loss(_ batch: Tensor, generator: inout RandomGenerator) throws -> Tensor {
    let (x, tokens) = try shard(
      sequences(batch), bodies: batch.shape[4], placement: .intended, generator: &generator)
    let target = try Autograd.noGrad {
      try MotionTarget.target(x, segment: encoder.embedding.segment, motion: predictsMotion)
    }
    let visible = try encoder.tokens(x, keep: tokens.keep)
    return try MotionTarget.maskedLoss(
      decoder(visible, restore: tokens.restore), target, mask: tokens.mask)
  }

  public func afterStep(_ step: Int, of totalSteps: Int) throws {}

  public var configuration: [(String, String)] {
    [
      ("method", name), ("mask", mask.description),
      ("target", predictsMotion ? "motion" : "position"),
      ("decoder_depth", "\(decoder.blocks.count)"),
    ]
  }
}
