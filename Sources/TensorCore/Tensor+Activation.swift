import Foundation

// Softmax, log-softmax, layer norm and dropout: fused row kernels with hand-written backward.
// Their composed versions (exp / sum, mean / var) are the tests' oracle.

extension Kernels {
  /// `y = exp(x - max) / sum` over one contiguous row.
  package static func softmaxRow(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int
  ) {
    let scale = Float(1 / exponentiated(x, into: y, n).total)
    for j in 0..<n { y[j] *= scale }
  }

  /// `y = exp(x − max)` over one contiguous row (`y` may be `x`), softmax's numerators; returns
  /// the maximum subtracted (0 for a row of infinities of one sign) and the sum of `y`: 16-lane
  /// float partials per block of 4096, the last partial chunk padded with zeros, each block's
  /// lanes added pairwise and the blocks in double precision. The pairwise lanes and the padded
  /// chunk replace `sum`'s lane-by-lane reduction and scalar tail, a chain of dependent additions
  /// that took as long as the exponentials on a 200-token row.
  package static func exponentiated(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int
  ) -> (peak: Float, total: Double) {
    var peak = rowMax(x, n)
    if !peak.isFinite { peak = peak.isNaN ? peak : 0 }
    // In place over one pointer: with two, LLVM left the loop scalar (the `tiny` encoder took
    // 12.4 ms instead of 5.5).
    if UnsafePointer(y) != x { y.update(from: x, count: n) }
    var total = 0.0
    var start = 0
    while start < n {
      let (block, count) = (y + start, Swift.min(4096, n &- start))
      for j in 0..<count { block[j] = VectorMath.expNonPositive(block[j] - peak) }
      total += Double(rowSum(block, count))
      start &+= count
    }
    return (peak, total)
  }

  /// The first `count` (< 16) floats at `x`, the other lanes `padding`.
  @inline(__always)
  package static func partialChunk(_ x: UnsafePointer<Float>, _ count: Int, padding: Float)
    -> SIMD16<Float>
  {
    var chunk = SIMD16<Float>(repeating: padding)
    for lane in 0..<count { chunk[lane] = x[lane] }
    return chunk
  }

  /// The sum of 16 lanes as halves added pairwise (8 + 8, 4 + 4, 2 + 2, 1 + 1): four dependent
  /// vector additions instead of `laneSum`'s fifteen scalar ones.
  @inline(__always)
  package static func pairwiseSum(_ lanes: SIMD16<Float>) -> Float {
    let eight = lanes.lowHalf + lanes.highHalf
    let four = eight.lowHalf + eight.highHalf
    let two = four.lowHalf + four.highHalf
    return two[0] + two[1]
  }

  /// The largest of `n` contiguous floats, with 16 float lanes of partial maxima (the last
  /// partial chunk padded with −∞) reduced pairwise; the maximum does not depend on the order.
  /// NaNs are not looked for: a NaN input turns the softmax row NaN through exp and the sum
  /// anyway.
  package static func rowMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    // Four independent maxima over 64 floats at a time, so that no compare waits for the one
    // before (one chain was a compare and a blend of latency per 16 floats).
    var (a, b, c, lanes) = (
      SIMD16<Float>(repeating: -.infinity), SIMD16<Float>(repeating: -.infinity),
      SIMD16<Float>(repeating: -.infinity), SIMD16<Float>(repeating: -.infinity)
    )
    var i = 0
    while i &+ 64 <= n {
      let raw = UnsafeRawPointer(x + i)
      let (u, v) = (
        raw.loadUnaligned(as: SIMD16<Float>.self),
        raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
      )
      let (w, z) = (
        raw.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self),
        raw.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self)
      )
      a.replace(with: u, where: u .> a)
      b.replace(with: v, where: v .> b)
      c.replace(with: w, where: w .> c)
      lanes.replace(with: z, where: z .> lanes)
      i &+= 64
    }
    a.replace(with: b, where: b .> a)
    c.replace(with: a, where: a .> c)
    lanes.replace(with: c, where: c .> lanes)
    while i &+ 16 <= n {
      let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
      lanes.replace(with: v, where: v .> lanes)
      i &+= 16
    }
    if i < n {
      let v = partialChunk(x + i, n &- i, padding: -.infinity)
      lanes.replace(with: v, where: v .> lanes)
    }
    // (`pointwiseMax` and `SIMD.max()` compile to a scalar loop through memory, ten times
    // slower than this compare-and-blend.)
    var eight = lanes.lowHalf
    eight.replace(with: lanes.highHalf, where: lanes.highHalf .> eight)
    var four = eight.lowHalf
    four.replace(with: eight.highHalf, where: eight.highHalf .> four)
    var two = four.lowHalf
    two.replace(with: four.highHalf, where: four.highHalf .> two)
    return two[1] > two[0] ? two[1] : two[0]
  }

  /// The dot product of two contiguous rows: 16 float lanes (the last partial chunk padded with
  /// zeros) added pairwise.
  package static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var lanes = SIMD16<Float>(repeating: 0)
    var i = 0
    while i &+ 16 <= n {
      lanes +=
        UnsafeRawPointer(a + i).loadUnaligned(as: SIMD16<Float>.self)
        * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD16<Float>.self)
      i &+= 16
    }
    if i < n {
      lanes += partialChunk(a + i, n &- i, padding: 0) * partialChunk(b + i, n &- i, padding: 0)
    }
    return pairwiseSum(lanes)
  }

  /// The sum of `n` contiguous floats in 16 float lanes (the last partial chunk padded with
  /// zeros) added pairwise: each block of softmax's numerators, and a layer norm's row, whose
  /// mean through `sum` (double precision, lanes added in order) cost a chain of dependent
  /// additions as long as the row's own work at `tiny`'s 64 channels.
  package static func rowSum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var lanes = SIMD16<Float>(repeating: 0)
    var i = 0
    while i &+ 16 <= n {
      lanes += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
      i &+= 16
    }
    if i < n { lanes += partialChunk(x + i, n &- i, padding: 0) }
    return pairwiseSum(lanes)
  }

  /// Runs `body(row)` for each of `rows` rows of `n` floats, split across threads.
  package static func forEachRow(rows: Int, n: Int, _ body: @escaping @Sendable (Int) -> Void) {
    parallelChunks(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { range in
      for r in range { body(r) }
    }
  }
}

extension Tensor {
  /// Moves `axis` last and makes the tensor contiguous, so row kernels apply; returns the
  /// permutation that puts it back.
  private func rowsAlong(_ axis: Int, op: String) throws -> (rows: Tensor, back: [Int]?) {
    let a = try Shape.normalizeAxis(axis, rank: Swift.max(rank, 1), op: op)
    if rank == 0 { return (try reshaped([1]), nil) }
    if a == rank - 1 { return (contiguous(), nil) }
    var order = Array(0..<rank)
    order.remove(at: a)
    order.append(a)
    var back = [Int](repeating: 0, count: rank)
    for (i, axis) in order.enumerated() { back[axis] = i }
    return (try permuted(order).contiguous(), back)
  }

  private func restoring(_ t: Tensor, _ back: [Int]?, _ original: [Int]) throws -> Tensor {
    if let back { return try t.permuted(back) }
    return t.shape == original ? t : try t.reshaped(original)
  }

  /// A row-wise op along `axis`: `forward(x, y, n)` fills one output row from one input row,
  /// and `backward(y, g, dx, n)` one gradient row from the output and upstream rows.
  private func rowwise(
    _ op: String, axis: Int,
    forward: @escaping @Sendable (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
    backward:
      @escaping @Sendable (
        UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int
      ) -> Void
  ) throws -> Tensor {
    let (x, back) = try rowsAlong(axis, op: op)
    let n = x.shape.last ?? 1
    let rows = x.count / Swift.max(n, 1)
    let out = Tensor(validShape: x.shape) { dst in
      let (src, d) = (x.address, SendablePointer(dst))
      Kernels.forEachRow(rows: rows, n: n) { r in forward(src.base + r * n, d.base + r * n, n) }
    }
    let y = out
    let recorded = Autograd.record(op, out, [x]) { g in
      let gc = g.contiguous()
      let dx = Tensor(validShape: y.shape) { dst in
        let (py, pg, d) = (
          SendablePointer(y.storage.base), gc.address,
          SendablePointer(dst)
        )
        Kernels.forEachRow(rows: rows, n: n) { r in
          backward(py.base + r * n, pg.base + r * n, d.base + r * n, n)
        }
      }
      return [dx]
    }
    return try restoring(recorded, back, shape)
  }

  /// Softmax along `axis` (default last), after subtracting each row's maximum.
  public func softmax(axis: Int = -1) throws -> Tensor {
    try rowwise(
      "softmax", axis: axis, forward: Kernels.softmaxRow,
      backward: { y, g, dx, n in
        // dx = y · (g − Σ g·y)
        let inner = Kernels.dot(y, g, n)
        for j in 0..<n { dx[j] = y[j] * (g[j] - inner) }
      })
  }

  /// Log-softmax along `axis` (default last): `x - max - log(sum(exp(x - max)))`.
  public func logSoftmax(axis: Int = -1) throws -> Tensor {
    try rowwise(
      "log_softmax", axis: axis,
      forward: { x, y, n in
        let (peak, total) = Kernels.exponentiated(x, into: y, n)
        let shift = peak + Float(Foundation.log(total))
        for j in 0..<n { y[j] = x[j] - shift }
      },
      backward: { y, g, dx, n in
        // dx = g − softmax · Σ g
        let total = Float(Kernels.sum(g, n))
        for j in 0..<n { dx[j] = g[j] - VectorMath.expNonPositive(y[j]) * total }
      })
  }

  /// Layer normalisation over the last axis: `(x - mean) / sqrt(var + eps) · weight + bias`
  /// with the biased variance; weight and bias (`[D]`) are optional. One fused pass forward,
  /// one backward.
  public func layerNorm(weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5) throws
    -> Tensor
  {
    let d = try Tensor.layerNormWidth(shape, weight: weight, bias: bias)
    let x = detached().contiguous()
    let rows = count / d
    let w = weight?.detached().contiguous()
    let b = bias?.detached().contiguous()
    let stats = TensorStorage(uninitializedCount: 2 * rows)  // mean, then 1/std, per row
    let out = Tensor(validShape: shape) { dst in
      let (px, py, ps) = (
        x.address, SendablePointer(dst),
        SendablePointer(stats.base)
      )
      let pw = w.map(\.address)
      let pb = b.map(\.address)
      Kernels.forEachRow(rows: rows, n: d) { r in
        (ps.base[r], ps.base[rows + r]) = Kernels.layerNormRow(
          px.base + r * d, into: py.base + r * d, d, weight: pw?.base, bias: pb?.base, eps: eps)
      }
    }
    var inputs = [self]
    if let weight { inputs.append(weight) }
    if let bias { inputs.append(bias) }
    return Autograd.record("layer_norm", out, inputs) { g in
      let gc = g.contiguous()
      let (px, pg, ps) = (
        x.address, gc.address,
        SendablePointer(stats.base)
      )
      let pw = w.map(\.address)
      let wantParameters = weight?.requiresGrad == true || bias?.requiresGrad == true
      // Rows go in fixed blocks; each block leaves its partial weight and bias gradients in
      // `partials`, added up afterwards in block order, so no result depends on the threads.
      let partials = TensorStorage(
        uninitializedCount: wantParameters ? Kernels.layerNormPartialsCount(rows: rows, d) : 0)
      let pp = wantParameters ? SendablePointer(partials.base) : nil
      let dx = Tensor(validShape: x.shape) { dst in
        Kernels.layerNormBackwardRows(
          0..<rows, x: px.base, gradient: pg.base, into: dst, d, mean: ps.base,
          rstd: ps.base + rows, weight: pw?.base, partials: pp?.base)
      }
      let (dWeight, dBias) =
        wantParameters
        ? Kernels.layerNormParameterGradients(partials.base, rows: rows, d) : (nil, nil)
      var grads: [Tensor?] = [dx]
      if weight != nil { grads.append(dWeight) }
      if bias != nil { grads.append(dBias) }
      return grads
    }
  }

  /// Zeroes each element with probability `p` and scales the rest by 1/(1-p) when `training`;
  /// the identity otherwise. Draws from `generator`.
  public func dropout(
    probability p: Float, training: Bool = true, generator: inout RandomGenerator
  ) throws -> Tensor {
    guard p >= 0, p <= 1 else {
      throw TensorError("dropout", "probability must be in [0, 1], got \(p)")
    }
    if !training || p == 0 { return self }
    if p == 1 { return try self * Tensor.zeros(shape) }
    // In a data-parallel step, the whole batch's draws (one process's), of which this rank's
    // rows are kept.
    let whole: (rows: Int, mine: Range<Int>) =
      rank > 0 ? DataParallel.wholeBatch(rows: shape[0]) : (1, 0..<1)
    let perRow = rank > 0 && shape[0] > 0 ? count / shape[0] : count
    let skipped = whole.mine.lowerBound * perRow
    let after = (whole.rows - whole.mine.upperBound) * perRow
    let scale = 1 / (1 - p)
    for _ in 0..<skipped { _ = generator.nextFloat() }
    let keep = try Tensor(shape: shape, op: "dropout") { mask in
      for i in mask.indices { mask[i] = generator.nextFloat() < p ? 0 : scale }
    }
    for _ in 0..<after { _ = generator.nextFloat() }
    return try self * keep
  }

  /// Dropout drawing from the global generator (`Random.seed` makes it reproducible).
  public func dropout(probability p: Float, training: Bool = true) throws -> Tensor {
    try Random.withGenerator { try dropout(probability: p, training: training, generator: &$0) }
  }
}

extension Tensor {
  /// The width a layer norm over `shape` normalises (its last axis), after checking that it is
  /// not empty and that the weight and bias fit it.
  package static func layerNormWidth(_ shape: [Int], weight: Tensor?, bias: Tensor?) throws -> Int {
    guard let d = shape.last, d > 0 else {
      throw TensorError("layer_norm", "needs a non-empty last axis, got \(shapeString(shape))")
    }
    for (name, p) in [("weight", weight), ("bias", bias)] {
      if let p, p.shape != [d] {
        throw TensorError(
          "layer_norm",
          "\(name) of shape \(shapeString(p.shape)) for input \(shapeString(shape)); "
            + "expected [\(d)]")
      }
    }
    return d
  }
}

/// Layer norm's row kernels, shared by `layerNorm` and the products that recompute it
/// (`Tensor.linear(normalizing:...)`), so that both give the same bits.
extension Kernels {
  /// Rows per block of the weight and bias gradients' partial sums: the partials are added up
  /// in block order, so no result depends on the threads or on how a caller splits the rows
  /// (at multiples of this).
  package static let layerNormBlockRows = 64

  /// Floats of partial sums for the weight and bias gradients of `rows` rows of `d`.
  package static func layerNormPartialsCount(rows: Int, _ d: Int) -> Int {
    2 * ((rows + layerNormBlockRows - 1) / layerNormBlockRows) * d
  }

  /// Layer norm of one row of `d` floats, `x` into `y`, with the optional affine weight and
  /// bias; returns the row's mean and 1/std.
  @inline(__always) package static func layerNormRow(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ d: Int,
    weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, eps: Float
  ) -> (mean: Float, rstd: Float) {
    let mean = rowSum(x, d) / Float(d)
    for j in 0..<d { y[j] = x[j] - mean }
    let variance = dot(y, y, d) / Float(d)
    let rstd = 1 / (variance + eps).squareRoot()
    switch (weight, bias) {
    case (let w?, let b?): for j in 0..<d { y[j] = y[j] * rstd * w[j] + b[j] }
    case (let w?, nil): for j in 0..<d { y[j] = y[j] * rstd * w[j] }
    case (nil, let b?): for j in 0..<d { y[j] = y[j] * rstd + b[j] }
    case (nil, nil): for j in 0..<d { y[j] *= rstd }
    }
    return (mean, rstd)
  }

  /// Layer norm's backward for `rows` (starting at a multiple of `layerNormBlockRows`): from
  /// each row's input `x`, its output gradient `gradient`, mean and 1/std, writes the input
  /// gradient into `dx`, which may be `x` itself (each row's x̂ is taken first). Those five
  /// point at the range's first row. With `partials` (for every row, not only the range's),
  /// also each block's weight and bias gradient sums, at the block's index (see
  /// `layerNormParameterGradients`). Threads take whole blocks.
  package static func layerNormBackwardRows(
    _ rows: Range<Int>, x: UnsafePointer<Float>, gradient: UnsafePointer<Float>,
    into dx: UnsafeMutablePointer<Float>, _ d: Int, mean: UnsafePointer<Float>,
    rstd: UnsafePointer<Float>, weight: UnsafePointer<Float>?,
    partials: UnsafeMutablePointer<Float>?
  ) {
    let blockRows = layerNormBlockRows
    let (firstBlock, blocks) = (
      rows.lowerBound / blockRows, (rows.count + blockRows - 1) / blockRows
    )
    let (px, pg, pd) = (
      SendablePointer(UnsafeMutablePointer(mutating: x)),
      SendablePointer(UnsafeMutablePointer(mutating: gradient)), SendablePointer(dx)
    )
    let (pm, ps) = (
      SendablePointer(UnsafeMutablePointer(mutating: mean)),
      SendablePointer(UnsafeMutablePointer(mutating: rstd))
    )
    let pw = weight.map { SendablePointer(UnsafeMutablePointer(mutating: $0)) }
    let pp = partials.map { SendablePointer($0) }
    parallelChunks(blocks, grain: Swift.max(1, 8192 / (blockRows * d))) { range in
      // Scratch for x̂ of one row.
      let xhat = UnsafeMutablePointer<Float>.allocate(capacity: d)
      defer { xhat.deallocate() }
      for block in range.lowerBound + firstBlock..<range.upperBound + firstBlock {
        let partW = pp.map { $0.base + 2 * block * d }
        let partB = partW.map { $0 + d }
        partW?.initialize(repeating: 0, count: d)
        partB?.initialize(repeating: 0, count: d)
        for row in Swift.max(
          rows.lowerBound, block * blockRows)..<Swift.min(
            rows.upperBound, (block + 1) * blockRows)
        {
          let r = row - rows.lowerBound
          let (xr, gr, dr) = (px.base + r * d, pg.base + r * d, pd.base + r * d)
          let (m, s) = (pm.base[r], ps.base[r])
          for j in 0..<d { xhat[j] = (xr[j] - m) * s }
          if let partW, let partB {
            for j in 0..<d {
              partW[j] += gr[j] * xhat[j]
              partB[j] += gr[j]
            }
          }
          // dr holds g·w first, then the gradient:
          // dx = rstd · (g·w − mean(g·w) − x̂ · mean(g·w·x̂)).
          if let pw {
            for j in 0..<d { dr[j] = gr[j] * pw.base[j] }
          } else {
            dr.update(from: gr, count: d)
          }
          let a = rowSum(dr, d) / Float(d)
          let c = dot(dr, xhat, d) / Float(d)
          for j in 0..<d { dr[j] = s * (dr[j] - a - xhat[j] * c) }
        }
      }
    }
  }

  /// The weight and bias gradients from the partial sums of every block of `rows` rows, added
  /// in block order in double precision.
  package static func layerNormParameterGradients(
    _ partials: UnsafePointer<Float>, rows: Int, _ d: Int
  ) -> (weight: Tensor, bias: Tensor) {
    var sumW = [Double](repeating: 0, count: d)
    var sumB = [Double](repeating: 0, count: d)
    for block in 0..<(rows + layerNormBlockRows - 1) / layerNormBlockRows {
      let partW = partials + 2 * block * d
      for j in 0..<d {
        sumW[j] += Double(partW[j])
        sumB[j] += Double(partW[d + j])
      }
    }
    return (
      Tensor(validShape: [d]) { for j in 0..<d { $0[j] = Float(sumW[j]) } },
      Tensor(validShape: [d]) { for j in 0..<d { $0[j] = Float(sumB[j]) } }
    )
  }
}
