import Foundation

/// Linear warm-up then cosine decay, set every iteration from the fractional epoch
/// (methods.md §9.1): `base·e/W` for `e < W`, then
/// `min + (base − min)·(1 + cos(π·(e − W)/(E − W)))/2`.
public struct CosineSchedule: Sendable, Equatable {
  public var base: Double
  public var minimum: Double
  public var warmupEpochs: Double
  public var epochs: Double

  public init(base: Double, minimum: Double = 0, warmupEpochs: Double = 0, epochs: Double) {
    self.base = base
    self.minimum = minimum
    self.warmupEpochs = warmupEpochs
    self.epochs = epochs
  }

  /// The learning rate at fractional epoch `e`.
  public func learningRate(epoch e: Double) -> Double {
    if e < warmupEpochs { return base * e / warmupEpochs }
    let span = epochs - warmupEpochs
    guard span > 0 else { return minimum }
    let progress = Swift.min((e - warmupEpochs) / span, 1)
    return minimum + (base - minimum) * 0.5 * (1 + cos(Double.pi * progress))
  }

  /// The learning rate at iteration `step` with `stepsPerEpoch` iterations per epoch.
  public func learningRate(step: Int, stepsPerEpoch: Int) -> Double {
    learningRate(epoch: Double(step) / Double(Swift.max(stepsPerEpoch, 1)))
  }
}

/// Step decay: `base·γ^k` after the k-th milestone epoch (PCM3: ×0.1 at 351).
public struct MultiStepSchedule: Sendable, Equatable {
  public var base: Double
  public var milestones: [Double]
  public var gamma: Double

  public init(base: Double, milestones: [Double], gamma: Double = 0.1) {
    self.base = base
    self.milestones = milestones
    self.gamma = gamma
  }

  public func learningRate(epoch e: Double) -> Double {
    base * pow(gamma, Double(milestones.filter { e >= $0 }.count))
  }
}

/// The EMA teacher's decay, annealed linearly from `start` to `end` over `annealSteps`
/// updates (methods.md §6): `d(n) = end − (end − start)·(1 − n/S)` for n < S, then `end`.
public struct EMADecaySchedule: Sendable, Equatable {
  public var start: Double
  public var end: Double
  public var annealSteps: Int

  public init(start: Double, end: Double = 1, annealSteps: Int) {
    self.start = start
    self.end = end
    self.annealSteps = annealSteps
  }

  /// `1 − d(n)`, computed without the cancellation of `1 − d` (the update uses it).
  public func oneMinusDecay(updates n: Int) -> Double {
    guard n < annealSteps, annealSteps > 0 else { return 1 - end }
    return (1 - end) + (end - start) * (1 - Double(n) / Double(annealSteps))
  }

  /// `d(n)`.
  public func decay(updates n: Int) -> Double {
    guard n < annealSteps, annealSteps > 0 else { return end }
    return end - (end - start) * (1 - Double(n) / Double(annealSteps))
  }
}
