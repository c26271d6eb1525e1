import Foundation

// Reductions over any set of axes, with or without keeping them as size-1 axes.
// Sums accumulate in blocks of float32 lanes combined in double precision, in a fixed order,
// so the result does not depend on the thread count.

extension Kernels {
  /// The sum of `n` contiguous floats: 16-lane float partials per block of 4096, blocks added
  /// in double precision.
  package static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
    var total = 0.0
    var start = 0
    while start < n {
      let end = min(n, start + 4096)
      var lanes = SIMD16<Float>(repeating: 0)
      var i = start
      while i + 16 <= end {
        lanes += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        i += 16
      }
      var tail: Float = 0
      while i < end {
        tail += x[i]
        i += 1
      }
      total += Double(laneSum(lanes)) + Double(tail)
      start = end
    }
    return total
  }

  /// The sum of 16 lanes in lane order from -0: the bits of `SIMD.sum()`, which Swift leaves
  /// as a call (1.5% of the `tiny` encoder's time).
  @inline(__always)
  package static func laneSum(_ lanes: SIMD16<Float>) -> Float {
    var total: Float = -0
    for lane in 0..<16 { total += lanes[lane] }
    return total
  }

  /// The sums of `outerOffsets.count · inner` sequences of `offsets.count` floats read in place:
  /// sequence (o, i) is `x[outerOffsets[o] + offsets[k] + i]` for k in order. Each has the bits of
  /// `sum(_:_:)` over the sequence copied out (16-lane float partials by position k, per block of
  /// 4096, blocks and the tail added in double precision), without the copy: a reduction over
  /// middle axes (a broadcast gradient such as a `[1, T, 1, D]` embedding's) reads whole
  /// contiguous runs of `inner` floats. Outer indices are split across threads.
  package static func sumInPlace(
    _ x: UnsafePointer<Float>, outerOffsets: [Int], inner: Int, offsets: [Int],
    into out: UnsafeMutablePointer<Float>
  ) {
    let n = offsets.count
    let src = SendablePointer(UnsafeMutablePointer(mutating: x))
    let dst = SendablePointer(out)
    parallelChunks(outerOffsets.count, grain: Swift.max(1, 65_536 / Swift.max(n * inner, 1))) {
      range in
      let lanes = UnsafeMutablePointer<Float>.allocate(capacity: 17 * inner)
      let totals = UnsafeMutablePointer<Double>.allocate(capacity: inner)
      defer {
        lanes.deallocate()
        totals.deallocate()
      }
      let tail = lanes + 16 * inner
      for o in range {
        let base = src.base + outerOffsets[o]
        totals.initialize(repeating: 0, count: inner)
        var start = 0
        while start < n {
          let end = Swift.min(n, start + 4096)
          let laneEnd = start + (end - start) / 16 * 16
          lanes.initialize(repeating: 0, count: 17 * inner)
          for k in start..<end {
            let row = base + offsets[k]
            let acc = k < laneEnd ? lanes + ((k - start) & 15) * inner : tail
            for i in 0..<inner { acc[i] += row[i] }
          }
          for i in 0..<inner {
            var total: Float = -0
            for lane in 0..<16 { total += lanes[lane * inner + i] }
            totals[i] += Double(total) + Double(tail[i])
          }
          start = end
        }
        let target = dst.base + o * inner
        for i in 0..<inner { target[i] = Float(totals[i]) }
      }
    }
  }

  /// `out[j] = Σ_r x[r · stride + j]` for `columns` columns, each summed in double in row order
  /// (a bias's gradient). Strips of 32 columns keep their sums in registers through all the rows
  /// (an array of sums was loaded and stored again for every row); the order of the additions,
  /// and so the bits, are the same.
  package static func sumRowsInDouble(
    _ x: UnsafePointer<Float>, rows: Int, stride: Int, columns: Int,
    into out: UnsafeMutablePointer<Float>
  ) {
    var j0 = 0
    while j0 + 32 <= columns {
      var (a0, a1, a2, a3) = (
        SIMD8<Double>(), SIMD8<Double>(), SIMD8<Double>(), SIMD8<Double>()
      )
      var row = UnsafeRawPointer(x + j0)
      for _ in 0..<rows {
        a0 += SIMD8<Double>(row.loadUnaligned(as: SIMD8<Float>.self))
        a1 += SIMD8<Double>(row.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self))
        a2 += SIMD8<Double>(row.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self))
        a3 += SIMD8<Double>(row.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self))
        row += stride * MemoryLayout<Float>.stride
      }
      for (k, sums) in [a0, a1, a2, a3].enumerated() {
        for lane in 0..<8 { out[j0 + 8 * k + lane] = Float(sums[lane]) }
      }
      j0 += 32
    }
    guard j0 < columns else { return }
    var sums = [Double](repeating: 0, count: columns - j0)
    for r in 0..<rows {
      let row = x + r * stride + j0
      for j in 0..<sums.count { sums[j] += Double(row[j]) }
    }
    for j in 0..<sums.count { out[j0 + j] = Float(sums[j]) }
  }

  /// Per-row reduction of a contiguous `[rows, n]` block into `out[rows]`, rows split across
  /// threads.
  package static func reduceRows(
    _ x: UnsafePointer<Float>, rows: Int, n: Int, _ out: UnsafeMutablePointer<Float>,
    _ reduce: @escaping @Sendable (UnsafePointer<Float>, Int) -> Float
  ) {
    let src = SendablePointer(UnsafeMutablePointer(mutating: x))
    let dst = SendablePointer(out)
    parallelChunks(rows, grain: max(1, 16_384 / max(n, 1))) { range in
      for r in range { dst.base[r] = reduce(src.base + r * n, n) }
    }
  }
}

extension Tensor {
  /// The layout a reduction works in: the tensor permuted so that reduced axes come last, as
  /// contiguous `[rows, n]`, plus the output shape.
  private func reductionLayout(_ axes: [Int]?, keepDim: Bool, op: String) throws -> (
    source: Tensor, rows: Int, n: Int, outShape: [Int], reduced: [Int]
  ) {
    let reduced = try Shape.normalizeAxes(axes, rank: rank, op: op)
    let kept = (0..<rank).filter { !reduced.contains($0) }
    let moved = try detached().permuted(kept + reduced).contiguous()
    let n = reduced.reduce(1) { $0 * shape[$1] }
    let rows = kept.reduce(1) { $0 * shape[$1] }
    let outShape =
      keepDim ? shape.indices.map { reduced.contains($0) ? 1 : shape[$0] } : kept.map { shape[$0] }
    return (moved, rows, n, outShape, reduced)
  }

  /// The shape of a reduction's output with its reduced axes kept as size 1.
  private func keptShape(_ reduced: [Int]) -> [Int] {
    shape.indices.map { reduced.contains($0) ? 1 : shape[$0] }
  }

  /// Sum over `axes` (all when nil).
  public func sum(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
    let reduced = try Shape.normalizeAxes(axes, rank: rank, op: "sum")
    let out: Tensor
    let leading = reduced == Array(0..<reduced.count)
    if isContiguous, leading, !reduced.isEmpty, reduced.count < rank {
      // Leading axes of a contiguous tensor: add rows into a double accumulator (bias grads).
      let rows = reduced.reduce(1) { $0 * shape[$1] }
      let inner = count / Swift.max(rows, 1)
      let src = storage.base + offset
      out = Tensor(validShape: keepDim ? keptShape(reduced) : Array(shape[reduced.count...])) {
        dst in
        let d = SendablePointer(dst)
        let s = SendablePointer(src)
        parallelChunks(inner, grain: 64) { columns in
          Kernels.sumRowsInDouble(
            s.base + columns.lowerBound, rows: rows, stride: inner, columns: columns.count,
            into: d.base + columns.lowerBound)
        }
      }
    } else if isContiguous, let last = reduced.last, last < rank - 1,
      case let inner = shape[(last + 1)...].reduce(1, *), inner >= 16, inner <= 16_384
    {
      // Middle axes: the kept axes before the last reduced one index the output's rows of
      // `inner` floats, and each reduced index adds one contiguous run to a row (no permuted
      // copy; the same bits as the copy and a row sum).
      let strides = Shape.contiguousStrides(shape)
      let dims = shape
      func offsets(_ axes: [Int]) -> [Int] {
        axes.reduce([0]) { partial, axis in
          partial.flatMap { o in (0..<dims[axis]).map { o + $0 * strides[axis] } }
        }
      }
      let runs = offsets(reduced)
      let rows = offsets((0..<last).filter { !reduced.contains($0) })
      let src = storage.base + offset
      let kept = shape.indices.filter { !reduced.contains($0) }.map { shape[$0] }
      out = Tensor(validShape: keepDim ? keptShape(reduced) : kept) { dst in
        Kernels.sumInPlace(src, outerOffsets: rows, inner: inner, offsets: runs, into: dst)
      }
    } else {
      let layout = try reductionLayout(reduced, keepDim: keepDim, op: "sum")
      out = Tensor(validShape: layout.outShape) { dst in
        Kernels.reduceRows(
          layout.source.storage.base + layout.source.offset, rows: layout.rows, n: layout.n, dst
        ) { Float(Kernels.sum($0, $1)) }
      }
    }
    let inputShape = shape
    let kept = keptShape(reduced)
    return Autograd.record("sum", out, [self]) { g in
      [try g.reshaped(kept).expanded(to: inputShape).contiguous()]
    }
  }

  /// Mean over `axes` (all when nil).
  public func mean(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
    let reduced = try Shape.normalizeAxes(axes, rank: rank, op: "mean")
    let n = reduced.reduce(1) { $0 * shape[$1] }
    guard n > 0 else {
      throw TensorError("mean", "mean over an empty axis of \(shapeString(shape))")
    }
    return try sum(axes: reduced, keepDim: keepDim) * (1 / Float(n))
  }

  /// Variance over `axes` (all when nil): biased (divide by n) unless `unbiased`, as NumPy.
  public func variance(axes: [Int]? = nil, keepDim: Bool = false, unbiased: Bool = false) throws
    -> Tensor
  {
    let reduced = try Shape.normalizeAxes(axes, rank: rank, op: "var")
    let n = reduced.reduce(1) { $0 * shape[$1] }
    let divisor = unbiased ? n - 1 : n
    guard divisor > 0 else {
      throw TensorError(
        "var", "variance of \(n) element(s) with unbiased=\(unbiased) divides by \(divisor)")
    }
    let centred = try self - mean(axes: reduced, keepDim: true)
    return try (centred * centred).sum(axes: reduced, keepDim: keepDim) * (1 / Float(divisor))
  }

  /// Standard deviation over `axes`: the square root of `variance`.
  public func standardDeviation(axes: [Int]? = nil, keepDim: Bool = false, unbiased: Bool = false)
    throws -> Tensor
  {
    try variance(axes: axes, keepDim: keepDim, unbiased: unbiased).sqrt()
  }

  /// Largest value over `axes` (all when nil). The gradient is shared equally among ties.
  public func max(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
    try extreme(axes: axes, keepDim: keepDim, op: "max", largest: true)
  }

  /// Smallest value over `axes` (all when nil). The gradient is shared equally among ties.
  public func min(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
    try extreme(axes: axes, keepDim: keepDim, op: "min", largest: false)
  }

  private func extreme(axes: [Int]?, keepDim: Bool, op: String, largest: Bool) throws -> Tensor {
    let layout = try reductionLayout(axes, keepDim: keepDim, op: op)
    guard layout.n > 0 else {
      throw TensorError(op, "\(op) over an empty axis of \(shapeString(shape))")
    }
    let out = Tensor(validShape: layout.outShape) { dst in
      Kernels.reduceRows(
        layout.source.storage.base + layout.source.offset, rows: layout.rows, n: layout.n, dst
      ) { x, n in
        var best = x[0]
        for i in 1..<n {
          let v = x[i]
          // NaN wins, as in NumPy and PyTorch.
          if v.isNaN || (largest ? v > best : v < best) { best = v }
          if best.isNaN { break }
        }
        return best
      }
    }
    let kept = keptShape(layout.reduced)
    let (x, values) = (detached(), out)
    return Autograd.record(op, out, [self]) { g in
      let hits = try Tensor.equal(x, values.reshaped(kept))
      let share = try hits / hits.sum(axes: layout.reduced, keepDim: true)
      return [try share * g.reshaped(kept)]
    }
  }

  /// Largest values along one axis and their positions (first on ties); the gradient goes to
  /// those positions.
  public func max(axis: Int, keepDim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
    try extremeWithIndex(axis: axis, keepDim: keepDim, op: "max", largest: true)
  }

  /// Smallest values along one axis and their positions (first on ties).
  public func min(axis: Int, keepDim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
    try extremeWithIndex(axis: axis, keepDim: keepDim, op: "min", largest: false)
  }

  /// Positions of the largest values along `axis`, or of the largest element of the flattened
  /// tensor when `axis` is nil (first on ties).
  public func argmax(axis: Int? = nil, keepDim: Bool = false) throws -> Tensor {
    try position(axis, keepDim: keepDim, op: "argmax", largest: true)
  }

  /// Positions of the smallest values along `axis` (flattened when nil).
  public func argmin(axis: Int? = nil, keepDim: Bool = false) throws -> Tensor {
    try position(axis, keepDim: keepDim, op: "argmin", largest: false)
  }

  private func position(_ axis: Int?, keepDim: Bool, op: String, largest: Bool) throws -> Tensor {
    guard let axis else {
      return try reshaped([-1]).extremeWithIndex(axis: 0, keepDim: false, op: op, largest: largest)
        .indices
    }
    return try extremeWithIndex(axis: axis, keepDim: keepDim, op: op, largest: largest).indices
  }

  private func extremeWithIndex(axis: Int, keepDim: Bool, op: String, largest: Bool) throws -> (
    values: Tensor, indices: Tensor
  ) {
    let a = try Shape.normalizeAxis(axis, rank: rank, op: op)
    let layout = try reductionLayout([a], keepDim: keepDim, op: op)
    guard layout.n > 0 else {
      throw TensorError(op, "\(op) over an empty axis of \(shapeString(shape))")
    }
    let positions = TensorStorage(uninitializedCount: layout.rows)
    let values = Tensor(validShape: layout.outShape) { dst in
      let src = layout.source.storage.base + layout.source.offset
      for r in 0..<layout.rows {
        let x = src + r * layout.n
        var best = x[0]
        var where_ = 0
        for i in 1..<layout.n where !best.isNaN {
          let v = x[i]
          if v.isNaN || (largest ? v > best : v < best) {
            best = v
            where_ = i
          }
        }
        dst[r] = best
        positions.base[r] = Float(where_)
      }
    }
    let indices = Tensor(storage: positions, shape: layout.outShape)
    let keptIndex = try indices.reshaped(keptShape([a]))
    let inputShape = shape
    let result = Autograd.record(op, values, [self]) { g in
      [
        try Tensor.zeros(inputShape).scatterAdd(
          axis: a, index: keptIndex, source: g.reshaped(keptIndex.shape))
      ]
    }
    return (result, indices)
  }

  /// `log(sum(exp(x)))` over `axes`, computed after subtracting the maximum.
  public func logSumExp(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
    let reduced = try Shape.normalizeAxes(axes, rank: rank, op: "logsumexp")
    // An all -inf (or inf) slice would give inf - inf; shift by 0 there instead.
    let peak = try detached().max(axes: reduced, keepDim: true).map { $0.isFinite ? $0 : 0 }
    let total = try (self - peak).exp().sum(axes: reduced, keepDim: true).log() + peak
    return keepDim
      ? total
      : try total.reshaped(
        total.shape.enumerated().filter {
          !reduced.contains($0.offset)
        }.map(\.element))
  }
}

extension Tensor {
  /// How `meanOfStandardized` standardises each tensor before averaging.
  public enum StandardizeAxis: Sendable {
    /// Per sequence and channel, over the L tokens (instance norm).
    case tokens
    /// Per token, over the D channels (layer norm).
    case channels
  }

  /// The mean of `layers` (each `[B, L, D]`, one shape), each standardised first with the
  /// biased variance and no affine map: `mean_k((x_k − μ_k)/√(σ²_k + eps))`, with μ and σ²
  /// taken over `axis`: Skeleton2vec's per-layer target normalisation (methods.md §6). Over the
  /// tokens it makes three passes over each layer while one sequence stays in cache, instead of
  /// the composed ops' separate passes and permuted copies; over the channels it is the fused
  /// `layerNorm` of each. The result is a constant: no gradient flows back.
  public static func meanOfStandardized(
    _ layers: [Tensor], over axis: StandardizeAxis, eps: Float
  ) throws -> Tensor {
    guard let shape = layers.first?.shape else {
      throw TensorError("standardize", "needs at least one tensor")
    }
    guard shape.count == 3, shape.allSatisfy({ $0 > 0 }), layers.allSatisfy({ $0.shape == shape })
    else {
      throw TensorError(
        "standardize",
        "expects non-empty [B, L, D] tensors of one shape, got "
          + layers.map { shapeString($0.shape) }.joined(separator: ", "))
    }
    let sources = layers.map { $0.detached().contiguous() }
    let share = 1 / Float(layers.count)
    if axis == .channels {
      // Per token: the fused layer norm already standardises each row in one pass.
      var total = try sources[0].layerNorm(eps: eps)
      for x in sources.dropFirst() { total = try total + x.layerNorm(eps: eps) }
      return total * share
    }
    let (b, l, d) = (shape[0], shape[1], shape[2])
    return Tensor(validShape: shape) { dst in
      let target = SendablePointer(dst)
      let pointers = sources.map(\.address)
      parallelChunks(b, grain: 1) { range in
        let sum = UnsafeMutablePointer<Double>.allocate(capacity: d)
        // The mean, then share/std, of each channel: the average's 1/K folds into the scale.
        let scale = UnsafeMutablePointer<Float>.allocate(capacity: 2 * d)
        defer {
          sum.deallocate()
          scale.deallocate()
        }
        for s in range {
          let out = target.base + s * l * d
          out.initialize(repeating: 0, count: l * d)
          for source in pointers {
            let x = source.base + s * l * d
            sum.initialize(repeating: 0, count: d)
            for t in 0..<l {
              let row = x + t * d
              for c in 0..<d { sum[c] += Double(row[c]) }
            }
            for c in 0..<d { scale[c] = Float(sum[c]) * (1 / Float(l)) }
            sum.initialize(repeating: 0, count: d)
            for t in 0..<l {
              let row = x + t * d
              for c in 0..<d {
                let centred = row[c] - scale[c]
                sum[c] += Double(centred * centred)
              }
            }
            for c in 0..<d {
              scale[d + c] = share / (Float(sum[c]) * (1 / Float(l)) + eps).squareRoot()
            }
            for t in 0..<l {
              let (row, o) = (x + t * d, out + t * d)
              for c in 0..<d { o[c] += (row[c] - scale[c]) * scale[d + c] }
            }
          }
        }
      }
    }
  }
}
