import Foundation
import Optim
import TensorCore

/// The one supervised training loop of the probe, fine-tuning and detection: per batch it sets
/// the scheduled learning rate, stops with a clear error on a non-finite loss, steps the
/// optimiser and reports progress; between batches it honours Ctrl-C; after each epoch it
/// evaluates (top-1, top-5), keeps the last and best, and logs the epoch (about ten lines
/// for a long run).
public struct SupervisedLoop {
  public let name: String
  public let epochs: Int
  public let optimizer: Optimizer
  /// The learning rate of a global step, given the steps per epoch.
  public let schedule: (Int, Int) -> Double
  public let context: EvaluationContext

  public init(
    name: String, epochs: Int, optimizer: Optimizer, context: EvaluationContext,
    schedule: @escaping (Int, Int) -> Double
  ) {
    self.name = name
    self.epochs = epochs
    self.optimizer = optimizer
    self.schedule = schedule
    self.context = context
  }

  /// Runs the epochs. `train(epoch, step)` calls `step(loss)` once per batch of that epoch
  /// (`batchesPerEpoch` of them); `evaluate(epoch)` gives (top-1, top-5), or nil to skip.
  public func run(
    batchesPerEpoch: Int, train: (Int, (Tensor) throws -> Void) throws -> Void,
    evaluate: (Int) throws -> (top1: Double, top5: Double)?
  ) throws -> EvaluationResult {
    var result = EvaluationResult(name: name, metrics: [])
    var best = (top1: 0.0, top5: 0.0, epoch: 0)
    var last: (top1: Double, top5: Double)?
    var step = 0
    for epoch in 0..<epochs {
      var total = 0.0
      var count = 0
      try train(epoch) { loss in
        try context.checkStop()
        optimizer.learningRate = schedule(step, max(batchesPerEpoch, 1))
        step += 1
        let value = Double(try loss.item())
        guard value.isFinite else {
          throw TensorError(
            name,
            "the loss became \(value) at epoch \(epoch + 1), batch \(count + 1): lower the "
              + "learning rate or check the data for NaN/inf")
        }
        total += value
        count += 1
        optimizer.zeroGrad()
        try loss.backward()
        try optimizer.step()
        context.batch(
          BatchProgress(
            phase: name, epoch: epoch, epochs: epochs, batch: count - 1, batches: batchesPerEpoch,
            loss: value))
      }
      let meanLoss = total / Double(max(count, 1))
      var row: [(name: String, value: Double)] = [("epoch", Double(epoch + 1)), ("loss", meanLoss)]
      var line = String(format: "%@ epoch %d/%d  loss %.4f", name, epoch + 1, epochs, meanLoss)
      if let scores = try evaluate(epoch) {
        last = scores
        if scores.top1 > best.top1 { best = (scores.top1, scores.top5, epoch + 1) }
        row += [("top1", scores.top1), ("top5", scores.top5)]
        line += String(format: "  top1 %.4f  top5 %.4f", scores.top1, scores.top5)
      }
      result.epochs.append(row)
      // Every epoch's line up to 20 epochs; beyond, about ten of them and the last (a 200-epoch
      // probe would otherwise print 200 lines). Every epoch is in the result's `epochs`.
      let every = epochs <= 20 ? 1 : epochs / 10
      if (epoch + 1) % every == 0 || epoch == 0 || epoch == epochs - 1 { context.progress(line) }
    }
    if let last {
      result.metrics = [
        ("accuracy", last.top1), ("top5", last.top5), ("best_accuracy", best.top1),
        ("best_top5", best.top5), ("best_epoch", Double(best.epoch)),
      ]
    }
    return result
  }
}
