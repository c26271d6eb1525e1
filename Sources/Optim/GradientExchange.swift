import Distributed
import NN
import TensorCore

/// The gradients of one training step, for `fit` and the supervised loop alike.
///
/// In one process (or with no batch to share) the loss is computed and, when finite, back-
/// propagated. In an MPI job each rank computes the loss of its share of the global batch
/// (inside `DataParallel.run`, so that BatchNorm and the methods' cross-sample parts see the
/// whole batch), goes backward with the loss weighted by its share, and the ranks sum their
/// gradients and losses (in rank order, reproducibly). Afterwards every rank holds the
/// gradients of the whole batch's mean loss, as one process computes them, and takes the same
/// optimiser step.
public enum GradientExchange {
  /// Clears the gradients of `parameters` and runs `loss`: for this rank's part of a batch of
  /// `samples` samples when the group has several ranks, else for the whole batch. Returns the
  /// whole batch's loss (a non-finite one leaves the gradients unspecified); `parameters` then
  /// hold the gradients of it.
  public static func step(
    parameters: [Parameter], samples: Int?, group: any Communicator, op: String,
    loss: () throws -> Tensor
  ) throws -> Double {
    for p in parameters { p.grad = nil }
    guard let samples, group.size > 1 else {
      let value = try loss()
      let total = Double(try value.item())
      if total.isFinite { try value.backward() }
      return total
    }
    let context = try DataParallel(group: group, batch: samples, op: op)
    var local = 0.0
    try DataParallel.run(context) {
      let value = try loss()
      local = Double(try value.item())
      // Every rank goes backward (the gradient buffers must line up); a non-finite loss on
      // any rank makes the summed loss non-finite, which stops every rank.
      try (value * context.weight).backward()
    }
    // One buffer: every gradient, then this rank's share of the loss.
    let withGradient = parameters.filter { $0.grad != nil }
    let counts = withGradient.map { $0.value.count }
    var buffer = [Float]()
    buffer.reserveCapacity(counts.reduce(0, +) + 1)
    for p in withGradient { buffer += p.grad!.contiguous().scalars }
    buffer.append(Float(local) * context.weight)
    // Every rank must send the same layout; a rank whose graph reached other parameters would
    // otherwise pair its values with the wrong ones.
    var sizes = [Double(buffer.count), -Double(buffer.count)]
    try group.allReduceMax(&sizes)
    guard sizes[0] == -sizes[1] else {
      throw TensorError(
        op,
        "the ranks' gradients differ in size (\(Int(-sizes[1])) to \(Int(sizes[0])) values): "
          + "the step reached different parameters on different ranks")
    }
    try group.allReduceSum(&buffer)
    var offset = 0
    for (p, count) in zip(withGradient, counts) {
      p.grad = try Tensor(shape: p.value.shape, scalars: Array(buffer[offset..<(offset + count)]))
      offset += count
    }
    return Double(buffer[offset])
  }
}
