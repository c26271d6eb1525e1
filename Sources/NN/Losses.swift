import TensorCore

/// The training objectives (mean reductions, as the references use them).
public enum Loss {
  private static func checkSameShape(_ a: Tensor, _ b: Tensor, _ op: String) throws {
    guard a.shape == b.shape else {
      throw TensorError(
        op,
        "prediction \(shapeString(a.shape)) and target \(shapeString(b.shape)) differ in shape")
    }
  }

  /// Mean squared error over all elements.
  public static func meanSquaredError(_ prediction: Tensor, _ target: Tensor) throws -> Tensor {
    try checkSameShape(prediction, target, "mse")
    let d = try prediction - target
    return try (d * d).mean()
  }

  /// Smooth L1 (Huber / beta): `0.5·d²/β` where `|d| < β`, else `|d| − 0.5·β`; mean.
  public static func smoothL1(_ prediction: Tensor, _ target: Tensor, beta: Float = 1) throws
    -> Tensor
  {
    try checkSameShape(prediction, target, "smooth_l1")
    guard beta >= 0 else { throw TensorError("smooth_l1", "beta must be ≥ 0, got \(beta)") }
    let d = try prediction - target
    let a = d.abs()
    if beta == 0 { return try a.mean() }
    let small = try Tensor.less(a.detached(), Tensor(beta))
    return try Tensor.where(small, d * d * (0.5 / beta), a - 0.5 * beta).mean()
  }

  /// Cross-entropy of `logits` `[N, C]` against integer `labels` `[N]`, with label smoothing ε:
  /// `(1 − ε)·(−log p[label]) + ε·mean_c(−log p[c])`, averaged over the batch.
  public static func crossEntropy(_ logits: Tensor, labels: Tensor, smoothing: Float = 0) throws
    -> Tensor
  {
    guard logits.rank == 2, labels.shape == [logits.shape[0]] else {
      throw TensorError(
        "cross_entropy",
        "expects logits [N, C] and labels [N], got \(shapeString(logits.shape)) and "
          + shapeString(labels.shape))
    }
    guard smoothing >= 0, smoothing <= 1 else {
      throw TensorError("cross_entropy", "label smoothing must be in [0, 1], got \(smoothing)")
    }
    let logProbabilities = try logits.logSoftmax(axis: 1)
    let picked = try logProbabilities.gather(axis: 1, index: labels.reshaped([-1, 1]))
    var loss = try picked.mean() * -(1 - smoothing)
    if smoothing > 0 { loss = try loss - logProbabilities.mean() * smoothing }
    return loss
  }

  /// Rows scaled to unit L2 norm, `x / max(‖x‖, eps)` (`F.normalize`).
  public static func normalized(_ x: Tensor, axis: Int = -1, eps: Float = 1e-12) throws -> Tensor {
    try x / (x * x).sum(axes: [axis], keepDim: true).sqrt().clamp(min: eps)
  }

  /// MoCo's InfoNCE: `logits = [q̂·k̂, q̂·queueᵀ] / T` with the positive at class 0, and the mean
  /// cross-entropy. No gradient flows through `keys` or the queue. `queue` is `[K, D]`.
  public static func infoNCE(query: Tensor, keys: Tensor, queue: Tensor, temperature: Float)
    throws -> (loss: Tensor, logits: Tensor)
  {
    guard query.rank == 2, keys.shape == query.shape, queue.rank == 2,
      queue.shape[1] == query.shape[1]
    else {
      throw TensorError(
        "info_nce",
        "expects q [B, D], k [B, D] and queue [K, D], got \(shapeString(query.shape)), "
          + "\(shapeString(keys.shape)) and \(shapeString(queue.shape))")
    }
    let q = try normalized(query)
    let k = try normalized(keys.detached())
    let positive = try (q * k).sum(axes: [1], keepDim: true)
    let negative = try q.matmul(queue.detached().transposed())
    let logits = try Tensor.concat([positive, negative], axis: 1) * (1 / temperature)
    let labels = Tensor.zeros([query.shape[0]])
    return (try crossEntropy(logits, labels: labels), logits)
  }

  /// KL(teacher ‖ student) between the softmax distributions of two `[N, C]` logit tensors,
  /// summed over classes and averaged over the batch (`kl_div(..., reduction="batchmean")`).
  /// No gradient flows into the teacher.
  public static func klDivergence(teacherLogits: Tensor, studentLogits: Tensor) throws -> Tensor {
    try checkSameShape(studentLogits, teacherLogits, "kl_div")
    guard studentLogits.rank == 2 else {
      throw TensorError("kl_div", "expects [N, C] logits, got \(shapeString(studentLogits.shape))")
    }
    let teacherLog = try teacherLogits.detached().logSoftmax(axis: 1)
    let studentLog = try studentLogits.logSoftmax(axis: 1)
    let pointwise = try teacherLog.exp() * (teacherLog - studentLog)
    return try pointwise.sum() * (1 / Float(studentLogits.shape[0]))
  }
}

/// MoCo's queue of keys, `[K, D]` with one unit key per row, and its write pointer.
public struct KeyQueue: Sendable {
  public private(set) var keys: Tensor
  public private(set) var pointer: Int

  /// A queue of `size` random unit vectors of width `dimension` (MoCo's initialisation).
  public init(size: Int, dimension: Int) throws {
    keys = try Loss.normalized(Tensor.randn([size, dimension]))
    pointer = 0
  }

  /// A queue with given contents and pointer.
  public init(keys: Tensor, pointer: Int = 0) throws {
    guard keys.rank == 2, pointer >= 0, pointer < max(keys.shape[0], 1) else {
      throw TensorError(
        "queue",
        "expects keys [K, D] and a pointer in 0..<K, got \(shapeString(keys.shape)), \(pointer)")
    }
    self.keys = keys.detached().contiguous()
    self.pointer = pointer
  }

  /// Writes the unit-normalised `batch` `[B, D]` at rows `(pointer + i) mod K` and advances
  /// the pointer by B (mod K).
  public mutating func enqueue(_ batch: Tensor) throws {
    let (size, width) = (keys.shape[0], keys.shape[1])
    guard batch.rank == 2, batch.shape[1] == width else {
      throw TensorError(
        "queue", "expects keys [B, \(width)], got \(shapeString(batch.shape))")
    }
    let normal = try Loss.normalized(batch.detached()).contiguous().scalars
    let b = batch.shape[0]
    let start = pointer
    keys.withUnsafeMutableBufferPointer { rows in
      for i in 0..<b {
        let row = (start + i) % size
        for c in 0..<width { rows[row * width + c] = normal[i * width + c] }
      }
    }
    pointer = (pointer + b) % size
  }
}
