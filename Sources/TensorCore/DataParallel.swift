import Distributed
import Foundation

/// The data-parallel part of one training step: the process group, and the samples of the
/// global batch this rank computes. While a step runs under `DataParallel.run`, the ops whose
/// result depends on other samples (BatchNorm's batch statistics, a MoCo queue's keys, a mixing
/// partner) read it and combine the ranks' parts, so that N ranks compute what one process
/// computes on the whole batch.
public struct DataParallel: Sendable {
  public let group: any Communicator
  /// This rank's samples within the global batch.
  public let share: Range<Int>
  /// The samples of the global batch.
  public let batch: Int

  public init(group: any Communicator, share: Range<Int>, batch: Int) {
    self.group = group
    self.share = share
    self.batch = batch
  }

  /// This rank's share of a mean over the batch: its samples over the batch's.
  public var weight: Float { Float(share.count) / Float(batch) }

  @TaskLocal static var active: DataParallel?

  /// The step being run data-parallel, or nil (one process, or outside a step).
  public static var current: DataParallel? { active }

  /// Runs `body` as this rank's part of a data-parallel step (nil: as a single process).
  public static func run<R>(_ context: DataParallel?, _ body: () throws -> R) rethrows -> R {
    try $active.withValue(context) { try body() }
  }

  /// Randomness drawn per row of a tensor whose first axis holds this rank's samples (each as
  /// the same number of rows): how many rows the whole batch has, and which are this rank's. A
  /// draw for all of them, of which the rank keeps its rows, is the draw one process makes.
  /// Outside a data-parallel step: all `rows`, all this process's.
  public static func wholeBatch(rows: Int) -> (rows: Int, mine: Range<Int>) {
    guard let context = current, context.share.count > 0, rows % context.share.count == 0 else {
      return (rows, 0..<rows)
    }
    let perSample = rows / context.share.count
    return (
      context.batch * perSample,
      (context.share.lowerBound * perSample)..<(context.share.upperBound * perSample)
    )
  }

  /// This rank's part of a global batch of `batch` samples; throws (naming `op`) when the
  /// batch is smaller than the group: every rank needs a sample.
  public init(group: any Communicator, batch: Int, op: String) throws {
    try Self.checkShareable(batch: batch, by: group, op: op)
    self.init(group: group, share: group.share(of: batch), batch: batch)
  }

  /// Throws (naming `op`) when a batch of `batch` samples is smaller than the group, so that
  /// some rank would have no sample; a run checks this once before its first step.
  public static func checkShareable(batch: Int, by group: any Communicator, op: String) throws {
    guard batch >= group.size else {
      throw TensorError(
        op,
        "a batch of \(batch) samples cannot be shared by \(group.size) processes (each needs at "
          + "least one): use batch ≥ \(group.size) or fewer processes")
    }
  }

  /// Runs `body` on rank 0 alone and gives every rank its result (bytes), or the error it threw
  /// (as the same message on every rank).
  public static func fromRoot(
    _ group: any Communicator, op: String, _ body: () throws -> [UInt8]
  ) throws -> [UInt8] {
    var message: [UInt8] = []
    var failure: Error?
    if group.rank == 0 {
      do {
        message = [0] + (try body())
      } catch {
        failure = error
        message = [1] + Array("\(error)".utf8)
      }
    }
    try group.broadcast(&message, root: 0)
    if let failure { throw failure }
    guard let flag = message.first else { throw TensorError(op, "rank 0 sent nothing") }
    if flag == 1 { throw RootError(text: String(decoding: message.dropFirst(), as: UTF8.self)) }
    return Array(message.dropFirst())
  }

  /// An error rank 0 met, as every rank reports it.
  public struct RootError: Error, CustomStringConvertible {
    public let text: String
    public var description: String { text }
  }
}

extension Tensor {
  /// The element-wise sum of this tensor over the ranks of the running data-parallel step (the
  /// tensor itself outside one). Differentiable: the gradient of each rank's input is the sum of
  /// the ranks' output gradients.
  public func summedOverRanks() throws -> Tensor {
    guard let context = DataParallel.current, context.group.size > 1 else { return self }
    let group = context.group
    var values = contiguous().scalars
    try group.allReduceSum(&values)
    let output = try Tensor(shape: shape, scalars: values)
    return Autograd.record("sum_over_ranks", output, [self]) { grad in
      var g = grad.contiguous().scalars
      try group.allReduceSum(&g)
      return [try Tensor(shape: grad.shape, scalars: g)]
    }
  }
}
