import Foundation

/// Where a training loop is (supervised or pretraining): for progress bars (loss, lr,
/// steps/s, ETA).
public struct BatchProgress: Sendable {
  public var phase: String
  public var epoch: Int
  public var epochs: Int
  public var batch: Int
  public var batches: Int
  public var loss: Double
  /// The learning rate of the step, when the loop has a schedule to show.
  public var lr: Double?

  public init(
    phase: String, epoch: Int, epochs: Int, batch: Int, batches: Int, loss: Double,
    lr: Double? = nil
  ) {
    self.phase = phase
    self.epoch = epoch
    self.epochs = epochs
    self.batch = batch
    self.batches = batches
    self.loss = loss
    self.lr = lr
  }

  /// The step (1-based) among all `epochs * batches`.
  public var step: Int { epoch * batches + batch + 1 }

  /// The fraction of all batches done.
  public var done: Double { Double(step) / Double(max(epochs * batches, 1)) }
}
