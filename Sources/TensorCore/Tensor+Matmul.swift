import CBLAS

// Matrix products through cblas_sgemm. Transposed views are passed to BLAS as CblasTrans
// instead of being copied; a batch of row-major matrices times one matrix is folded into a
// single product.

/// How one operand's last two axes sit in memory, as BLAS wants to hear it.
private struct GemmOperand {
  let tensor: Tensor
  let transposed: Bool
  let leadingDimension: Int

  init(_ t: Tensor) {
    let rows = t.shape[t.rank - 2]
    let cols = t.shape[t.rank - 1]
    let rowStride = t.strides[t.rank - 2]
    let colStride = t.strides[t.rank - 1]
    if (colStride == 1 || cols == 1) && (rows == 1 || rowStride >= Swift.max(cols, 1)) {
      tensor = t
      transposed = false
      leadingDimension = rows == 1 ? Swift.max(cols, 1) : rowStride
    } else if (rowStride == 1 || rows == 1) && (cols == 1 || colStride >= Swift.max(rows, 1)) {
      tensor = t
      transposed = true
      leadingDimension = cols == 1 ? Swift.max(rows, 1) : colStride
    } else {
      tensor = t.detached().contiguous()
      transposed = false
      leadingDimension = Swift.max(cols, 1)
    }
  }
}

extension Tensor {
  /// Matrix product with NumPy semantics: 1-D operands are promoted and the added axis removed,
  /// leading (batch) axes broadcast. `[..., M, K] @ [..., K, N] -> [..., M, N]`.
  public func matmul(_ other: Tensor) throws -> Tensor {
    let a = self
    let b = other
    guard a.rank >= 1, b.rank >= 1 else {
      throw TensorError(
        "matmul", "\(shapeString(a.shape)) @ \(shapeString(b.shape)): operands must have rank ≥ 1")
    }
    let a2 = a.rank == 1 ? try a.unsqueezed(axis: 0) : a
    let b2 = b.rank == 1 ? try b.unsqueezed(axis: 1) : b
    let (m, k) = (a2.shape[a2.rank - 2], a2.shape[a2.rank - 1])
    let (k2, n) = (b2.shape[b2.rank - 2], b2.shape[b2.rank - 1])
    guard k == k2 else {
      throw TensorError(
        "matmul",
        "\(shapeString(a.shape)) @ \(shapeString(b.shape)): inner dimensions \(k) and \(k2) differ")
    }
    let batch = try Shape.broadcast(
      Array(a2.shape.dropLast(2)), Array(b2.shape.dropLast(2)), op: "matmul")
    let out = try Tensor.gemm(a2.detached(), b2.detached(), batch: batch, m: m, n: n, k: k)
    var finalShape = batch
    if a.rank > 1 { finalShape.append(m) }
    if b.rank > 1 { finalShape.append(n) }
    let result = finalShape == out.shape ? out : try out.reshaped(finalShape)
    return Autograd.record("matmul", result, [a, b]) { g in
      let g2 = try g.reshaped(batch + [m, n])
      var gradA: Tensor? = nil
      var gradB: Tensor? = nil
      if a.requiresGrad {
        gradA = try g2.matmul(b2.detached().transposed()).sum(toShape: a2.shape).reshaped(a.shape)
      }
      if b.requiresGrad {
        if b2.rank == 2, a2.rank > 2 {
          // Fold the batch into rows: one product of [K, B·M] by [B·M, N].
          let rowsA = try a2.detached().contiguous().reshaped([-1, k])
          let rowsG = try g2.contiguous().reshaped([-1, n])
          gradB = try rowsA.transposed().matmul(rowsG).reshaped(b.shape)
        } else {
          gradB = try a2.detached().transposed().matmul(g2).sum(toShape: b2.shape).reshaped(b.shape)
        }
      }
      return [gradA, gradB]
    }
  }

  /// Batched `sgemm`: `[batch..., M, K] × [batch..., K, N]` with broadcast batch axes.
  private static func gemm(_ a: Tensor, _ b: Tensor, batch: [Int], m: Int, n: Int, k: Int) throws
    -> Tensor
  {
    for size in [m, n, k] where size > Int(Int32.max) {
      throw TensorError("matmul", "dimension \(size) is larger than BLAS supports")
    }
    let outShape = batch + [m, n]
    _ = try Shape.elementCount(outShape, op: "matmul")
    if m == 0 || n == 0 { return Tensor(validShape: outShape) { _ in } }
    if k == 0 { return Tensor.zeros(outShape) }
    let batchCount = batch.reduce(1, *)
    // One matrix times a row-major batch: fold the batch into the rows of a single product.
    if b.rank == 2, a.rank > 2, a.isContiguous {
      let opB = GemmOperand(b)
      return Tensor(validShape: outShape) { c in
        sgemm(
          transA: false, transB: opB.transposed, m: batchCount * m, n: n, k: k,
          a: a.storage.base + a.offset, lda: k,
          b: opB.tensor.storage.base + opB.tensor.offset, ldb: opB.leadingDimension,
          c: c, ldc: n)
      }
    }
    let opA = GemmOperand(a)
    let opB = GemmOperand(b)
    let stridesA = Shape.broadcastStrides(
      shape: Array(opA.tensor.shape.dropLast(2)), strides: Array(opA.tensor.strides.dropLast(2)),
      to: batch)
    let stridesB = Shape.broadcastStrides(
      shape: Array(opB.tensor.shape.dropLast(2)), strides: Array(opB.tensor.strides.dropLast(2)),
      to: batch)
    return Tensor(validShape: outShape) { c in
      var index = [Int](repeating: 0, count: batch.count)
      for item in 0..<batchCount {
        var offsetA = opA.tensor.offset
        var offsetB = opB.tensor.offset
        for d in 0..<batch.count {
          offsetA += index[d] * stridesA[d]
          offsetB += index[d] * stridesB[d]
        }
        sgemm(
          transA: opA.transposed, transB: opB.transposed, m: m, n: n, k: k,
          a: opA.tensor.storage.base + offsetA, lda: opA.leadingDimension,
          b: opB.tensor.storage.base + offsetB, ldb: opB.leadingDimension,
          c: c + item * m * n, ldc: n)
        _ = Shape.advance(&index, in: batch)
      }
    }
  }
}

/// `C = op(A) · op(B)` in row-major order with float32 BLAS.
package func sgemm(
  transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
  c: UnsafeMutablePointer<Float>, ldc: Int, beta: Float = 0
) {
  Threading.prepare()
  let threads = Threading.threadCount
  // From a megaflop up, one thread pool for everything: BLAS runs on one thread and SkelLab's
  // workers share the product out by rows of C (or by columns when C has few rows), so BLAS's
  // own threads never spin beside SkelLab's. Products above 2^28 FLOP went to BLAS's threads
  // until the sixth session, when the shared pool measured faster for them too on the 2-core
  // Xeon (`small` s2v 409 → 389 ms, MAMP 261 → 251, encode 125.5 → 122.5; `paper` MAMP 674 →
  // 657, encode 432 → 418). Each element of C is still one BLAS sum over all of k, so the bits
  // do not depend on the split.
  let work = 2 * m * n * k
  let (opA, opB) = (transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans)
  // (Inside a region that already runs BLAS on one thread per worker, such as the two
  // directions of a GRU layer, the product stays whole on the calling thread.)
  guard threads > 1, work >= 1 << 20, Swift.max(m, n) >= 2 * threads,
    openblas_get_num_threads() > 1
  else {
    cblas_sgemm(
      CblasRowMajor, opA, opB, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb),
      beta, c, Int32(ldc))
    return
  }
  let (pa, pb, pc) = (
    SendablePointer(UnsafeMutablePointer(mutating: a)),
    SendablePointer(UnsafeMutablePointer(mutating: b)), SendablePointer(c)
  )
  let byRows = m >= n
  let count = byRows ? m : n
  Threading.withSingleThreadedBLAS(true) {
    parallelChunks(count, grain: Swift.max(1, (count + threads - 1) / threads)) { range in
      let (start, size) = (range.lowerBound, range.count)
      if byRows {
        let aStart = transA ? pa.base + start : pa.base + start * lda
        cblas_sgemm(
          CblasRowMajor, opA, opB, Int32(size), Int32(n), Int32(k), 1, aStart, Int32(lda),
          pb.base, Int32(ldb), beta, pc.base + start * ldc, Int32(ldc))
      } else {
        let bStart = transB ? pb.base + start * ldb : pb.base + start
        cblas_sgemm(
          CblasRowMajor, opA, opB, Int32(m), Int32(size), Int32(k), 1, pa.base, Int32(lda),
          bStart, Int32(ldb), beta, pc.base + start, Int32(ldc))
      }
    }
  }
}

extension Tensor {
  /// `x · weightᵀ + bias` on the last axis (`torch.nn.functional.linear`): `[..., in]` with
  /// weight `[out, in]` -> `[..., out]`. One product with the bias preloaded into the output
  /// (beta = 1), so no separate pass adds it; the backward is three products and a column sum.
  public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
    try linear(x, weight: weight, bias: bias, adding: nil)
  }

  /// `residual + x · weightᵀ + bias`: the residual connection of a block folded into the same
  /// product (the output buffer starts as residual + bias, then BLAS adds the product with
  /// beta = 1), saving a pass over the activations.
  public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, adding residual: Tensor?)
    throws -> Tensor
  {
    try linear(x, weight: weight, bias: bias, adding: residual, activated: false)
  }

  /// `residual + gelu(x) · weightᵀ + bias`: an MLP's second product over the GELU of the first
  /// one's output. With a gradient recorded, backward keeps `x` alone, not gelu(x) as well
  /// (the block's widest activation: `ratio·D` floats a token); it recomputes gelu(x) in the
  /// same pass that applies GELU's derivative, which needs the same erf. Forward and backward
  /// give the bits of `linear(x.gelu(), ...)`. Without a gradient, GELU overwrites `x`'s
  /// buffer when `x` holds it alone (a fresh product in inference or in a teacher's pass).
  public static func linear(
    gelu x: consuming Tensor, weight: Tensor, bias: Tensor?, adding residual: Tensor?
  ) throws -> Tensor {
    guard Autograd.isRecording, x.node != nil || weight.node != nil || bias?.node != nil
    else {
      var activation = consume x
      activation.applyGELU()
      return try linear(activation, weight: weight, bias: bias, adding: residual, activated: false)
    }
    return try linear(x, weight: weight, bias: bias, adding: residual, activated: true)
  }

  /// `layerNorm(x) · weightᵀ + bias`: a block's product after its layer norm. With a gradient
  /// recorded, backward keeps `x` alone, not the norm's output as well (`D` floats a token, twice
  /// a block); it recomputes the norm, then takes the product's and the norm's backward. Forward
  /// and backward give the bits of `linear(x.layerNorm(...), ...)`.
  public static func linear(
    normalizing x: Tensor, normWeight: Tensor, normBias: Tensor, eps: Float, weight: Tensor,
    bias: Tensor?
  ) throws -> Tensor {
    let recorded = [x, normWeight, normBias, weight] + (bias.map { [$0] } ?? [])
    let d = try layerNormWidth(x.shape, weight: normWeight, bias: normBias)
    try checkLinear(x.shape, weight: weight, bias: bias)
    // A product narrower than its input (a prediction head) normalises a block of rows at a
    // time: the norm's output, larger than the product's, never takes a whole buffer. (Wider
    // products, whose output is the larger, are faster whole.)
    let out =
      weight.shape[0] < d
      ? narrowNormalizedProduct(
        x.contiguous(), normWeight: normWeight.contiguous(), normBias: normBias.contiguous(),
        eps: eps, weight: weight.contiguous(), bias: bias?.contiguous())
      : try Autograd.noGrad {
        try linear(
          x.layerNorm(weight: normWeight, bias: normBias, eps: eps), weight: weight, bias: bias)
      }
    guard Autograd.isRecording, recorded.contains(where: \.requiresGrad) else { return out }
    // The closure keeps x in a box its backward can take the buffer from.
    let saved = SavedTensor(x.detached().contiguous(), shape: x.shape)
    let (scale, shift) = (normWeight.detached().contiguous(), normBias.detached().contiguous())
    let w = weight.detached().contiguous()
    let wants = recorded.map(\.requiresGrad)
    return Autograd.record("layer_norm_linear", out, recorded) { g in
      let gc = g.contiguous()
      var grads = layerNormLinearGradients(
        gc, argument: saved, normWeight: scale, normBias: shift, eps: eps, weight: w,
        wants: Array(wants.prefix(4)))
      if wants.count == 5 {
        grads.append(
          wants[4] ? try gc.reshaped([gc.count / w.shape[0], w.shape[0]]).sum(axes: [0]) : nil)
      }
      return grads
    }
  }

  /// Rows of `normalizedMLP`'s chunks, for a hidden layer `hidden` floats wide: a chunk's
  /// hidden activations take about 2 MiB, the L2 cache of the Xeons measured.
  package static func mlpChunkRows(hidden: Int) -> Int {
    Swift.max(64, (2 << 20) / (4 * Swift.max(hidden, 1)))
  }

  /// `residual + gelu(layerNorm(x) · weight1ᵀ + bias1) · weight2ᵀ + bias2`: a transformer
  /// block's MLP with its norm and residual connection, computed where no gradient is recorded
  /// (inference, a teacher's pass). Each thread takes a contiguous share of the rows and runs
  /// it through the whole MLP a chunk at a time (`mlpChunkRows`), so that the chunk's
  /// normalised rows and hidden activations stay in cache from the pass that writes them to the
  /// product that reads them. Composed, fc1's output and GELU's are each a `[rows, hidden]`
  /// pass through memory. The bits of the norm, `linear`, `gelu` and `linear` composed: each
  /// row is the same BLAS sum and the same element-wise expressions, whatever the chunk.
  package static func normalizedMLP(
    _ x: Tensor, normWeight: Tensor, normBias: Tensor, eps: Float, weight1: Tensor,
    bias1: Tensor?, weight2: Tensor, bias2: Tensor?, adding residual: Tensor
  ) throws -> Tensor {
    let d = try layerNormWidth(x.shape, weight: normWeight, bias: normBias)
    try checkLinear(x.shape, weight: weight1, bias: bias1)
    let hidden = weight1.shape[0]
    try checkLinear(Array(x.shape.dropLast()) + [hidden], weight: weight2, bias: bias2)
    let outputs = weight2.shape[0]
    let outShape = Array(x.shape.dropLast()) + [outputs]
    guard residual.shape == outShape else {
      throw TensorError(
        "linear",
        "residual \(shapeString(residual.shape)) does not match the output \(shapeString(outShape))"
      )
    }
    let rows = x.count / d
    let (source, skip) = (x.detached().contiguous(), residual.detached().contiguous())
    let (nw, nb) = (normWeight.detached().contiguous(), normBias.detached().contiguous())
    let (w1, w2) = (weight1.detached().contiguous(), weight2.detached().contiguous())
    let (b1, b2) = (bias1?.detached().contiguous(), bias2?.detached().contiguous())
    // Every thread from 64 rows each; chunks no longer than a thread's share.
    let threads = Swift.min(Threading.threadCount, Swift.max(1, rows / 64))
    let chunk = Swift.min(
      mlpChunkRows(hidden: hidden), Swift.max(1, (rows + threads - 1) / threads))
    let mlp = MLPChunk(
      d: d, hidden: hidden, outputs: outputs, eps: eps, normWeight: nw.address,
      normBias: nb.address, weight1: w1.address, bias1: b1?.address, weight2: w2.address,
      bias2: b2?.address)
    let out = Tensor(validShape: outShape) { dst in
      let (px, pr, py) = (source.address, skip.address, SendablePointer(dst))
      Threading.withSingleThreadedBLAS(threads > 1) {
        parallelChunks(rows, grain: Swift.max(1, (rows + threads - 1) / threads)) { range in
          let normed = UnsafeMutablePointer<Float>.allocate(capacity: chunk * (d + hidden))
          defer { normed.deallocate() }
          let even = MLPChunk.evenChunkRows(range.count, atMost: chunk)
          var first = range.lowerBound
          while first < range.upperBound {
            let count = Swift.min(even, range.upperBound - first)
            mlp.run(
              rows: count, x: px.base + first * d, residual: pr.base + first * outputs,
              into: py.base + first * outputs, normalized: normed,
              activation: normed + chunk * d)
            first += count
          }
        }
      }
    }
    withExtendedLifetime((nw, nb, w1, w2, b1, b2)) {}
    return out
  }

  /// The gradients of `layer_norm_linear` (`layerNorm(x) · weightᵀ`) for x, the norm's weight
  /// and bias and the product's weight, as `wants` asks, from the contiguous output gradient
  /// `g` `[rows, out]`. A block of rows at a time: the norm again (rows and their statistics),
  /// its product with g for the weight's gradient, and the norm's backward of g · weight. No
  /// buffer as large as x is made but x's gradient, and that is written over x's own buffer
  /// when the graph will not run again and nothing else holds it. The bits of the norm then
  /// `linear`, except the weight's gradient, which is summed a block of rows at a time.
  private static func layerNormLinearGradients(
    _ g: Tensor, argument saved: SavedTensor, normWeight: Tensor, normBias: Tensor, eps: Float,
    weight w: Tensor, wants: [Bool]
  ) -> [Tensor?] {
    let (d, outputs) = (w.shape[1], w.shape[0])
    let rows = g.count / Swift.max(outputs, 1)
    let (gradient, weights) = (g.storage.base + g.offset, w.storage.base + w.offset)
    let (scale, shift) = (
      normWeight.storage.base + normWeight.offset, normBias.storage.base + normBias.offset
    )
    let (wantsNorm, wantsParameters) = (wants[0] || wants[1] || wants[2], wants[1] || wants[2])
    let reused = wants[0] ? saved.takeBuffer() : nil
    let x = reused.map { Tensor(storage: $0, shape: saved.shape) } ?? saved.value
    let argument = x.storage.base + x.offset
    let dx = reused ?? (wants[0] ? TensorStorage(uninitializedCount: rows * d) : nil)
    // No rows: the weight's gradient is zeros (no block runs to write it).
    let dw = wants[3] ? TensorStorage(count: outputs * d, repeating: 0) : nil
    let partials = TensorStorage(
      uninitializedCount: wantsParameters ? Kernels.layerNormPartialsCount(rows: rows, d) : 0)
    let stats = TensorStorage(uninitializedCount: 2 * rows)  // mean, then 1/std, per row
    let (mean, rstd) = (stats.base, stats.base + rows)
    // Scratches: the norm's output, its gradient, and x's gradient when only the norm's
    // parameters want theirs.
    forEachActivationBlock(
      rows: rows, width: d, buffers: dx == nil ? 3 : 2, multiple: Kernels.layerNormBlockRows
    ) { first, count, scratch in
      let (normalized, normGradient) = (scratch[0], scratch[1])
      let xs = argument + first * d
      let (px, py, pm, ps) = (
        SendablePointer(xs), SendablePointer(normalized), SendablePointer(mean + first),
        SendablePointer(rstd + first)
      )
      let (pw, pb) = (SendablePointer(scale), SendablePointer(shift))
      Kernels.forEachRow(rows: count, n: d) { r in
        (pm.base[r], ps.base[r]) = Kernels.layerNormRow(
          px.base + r * d, into: py.base + r * d, d, weight: pw.base, bias: pb.base, eps: eps)
      }
      let rowsGradient = gradient + first * outputs
      if let dw {
        sgemm(
          transA: true, transB: false, m: outputs, n: d, k: count, a: rowsGradient, lda: outputs,
          b: normalized, ldb: d, c: dw.base, ldc: d, beta: first == 0 ? 0 : 1)
      }
      guard wantsNorm else { return }
      sgemm(
        transA: false, transB: false, m: count, n: d, k: outputs, a: rowsGradient, lda: outputs,
        b: weights, ldb: d, c: normGradient, ldc: d)
      Kernels.layerNormBackwardRows(
        first..<first + count, x: xs, gradient: normGradient,
        into: dx.map { $0.base + first * d } ?? scratch[2], d, mean: mean + first,
        rstd: rstd + first, weight: scale, partials: wantsParameters ? partials.base : nil)
    }
    let (dScale, dShift) =
      wantsParameters
      ? Kernels.layerNormParameterGradients(partials.base, rows: rows, d) : (nil, nil)
    return [
      dx.map { Tensor(storage: $0, shape: saved.shape) }, wants[1] ? dScale : nil,
      wants[2] ? dShift : nil, dw.map { Tensor(storage: $0, shape: [outputs, d]) },
    ]
  }

  /// `layerNorm(x) · weightᵀ + bias` for contiguous operands that fit, the norm a block of rows
  /// at a time into a scratch the block's product reads from cache; the bits of the norm then
  /// `linear`.
  private static func narrowNormalizedProduct(
    _ x: Tensor, normWeight: Tensor, normBias: Tensor, eps: Float, weight w: Tensor,
    bias b: Tensor?
  ) -> Tensor {
    let d = w.shape[1]
    let (pw, pb) = (normWeight.address, normBias.address)
    return product(x, weight: w, bias: b, adding: nil) { source, target, count in
      let (px, py) = (SendablePointer(source), SendablePointer(target))
      Kernels.forEachRow(rows: count, n: d) { r in
        _ = Kernels.layerNormRow(
          px.base + r * d, into: py.base + r * d, d, weight: pw.base, bias: pb.base, eps: eps)
      }
    }
  }

  /// `residual + f(x) · weightᵀ + bias` for contiguous operands that fit (shapes checked by the
  /// caller): the output starts as residual + bias, then BLAS adds the product with beta = 1.
  /// With `blockwise` (f: `blockwise(rows of x, into, row count)`), f(x) is made a block of
  /// rows at a time into a scratch that the block's product reads from cache, so it never takes
  /// a buffer as large as x; without it, f is the identity and the product is one call.
  private static func product(
    _ x: Tensor, weight w: Tensor, bias b: Tensor?, adding r: Tensor?,
    blockwise: ((UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)? = nil
  ) -> Tensor {
    let (inputs, outputs) = (w.shape[1], w.shape[0])
    let rows = x.count / Swift.max(inputs, 1)
    return Tensor(validShape: Array(x.shape.dropLast()) + [outputs]) { dst in
      // C starts as the residual, the bias, or their sum: rows shared between the threads.
      if r != nil || b != nil {
        let target = SendablePointer(dst)
        let residual = r.map(\.address)
        let bias = b.map(\.address)
        parallelChunks(rows, grain: Swift.max(1, 32_768 / Swift.max(outputs, 1))) { range in
          let start = range.lowerBound * outputs
          Kernels.startRows(
            target.base + start, rows: range.count, width: outputs,
            residual: residual.map { UnsafePointer($0.base + start) },
            bias: bias.map { UnsafePointer($0.base) })
        }
      }
      let (source, beta): (UnsafeMutablePointer<Float>, Float) = (
        x.storage.base + x.offset, b == nil && r == nil ? 0 : 1
      )
      let weights = w.storage.base + w.offset
      guard let blockwise else {
        sgemm(
          transA: false, transB: true, m: rows, n: outputs, k: inputs, a: source, lda: inputs,
          b: weights, ldb: inputs, c: dst, ldc: outputs, beta: beta)
        return
      }
      forEachActivationBlock(rows: rows, width: inputs) { first, count, scratch in
        blockwise(source + first * inputs, scratch[0], count)
        sgemm(
          transA: false, transB: true, m: count, n: outputs, k: inputs, a: scratch[0], lda: inputs,
          b: weights, ldb: inputs, c: dst + first * outputs, ldc: outputs, beta: beta)
      }
    }
  }

  /// `g · weight`: the gradient of a product's input, shaped `shape`, from the contiguous
  /// output gradient `g` `[rows, out]` and the contiguous weight `[out, in]`.
  private static func productInputGradient(
    _ g: Tensor, weight w: Tensor, rows: Int, shape: [Int]
  ) -> Tensor {
    let (inputs, outputs) = (w.shape[1], w.shape[0])
    return Tensor(validShape: shape) { dst in
      sgemm(
        transA: false, transB: false, m: rows, n: inputs, k: outputs,
        a: g.storage.base + g.offset, lda: outputs, b: w.storage.base + w.offset, ldb: inputs,
        c: dst, ldc: inputs)
    }
  }

  /// `gᵀ · input`: the gradient of a product's weight `[out, in]`, from the contiguous output
  /// gradient `g` `[rows, out]` and the contiguous input `[rows, in]`.
  static func productWeightGradient(
    _ g: Tensor, input: Tensor, rows: Int, outputs: Int, inputs: Int
  ) -> Tensor {
    Tensor(validShape: [outputs, inputs]) { dst in
      sgemm(
        transA: true, transB: false, m: outputs, n: inputs, k: rows,
        a: g.storage.base + g.offset, lda: outputs, b: input.storage.base + input.offset,
        ldb: inputs, c: dst, ldc: inputs)
    }
  }

  /// Checks that an input of `shape`, `weight` and `bias` fit `[..., in] · [out, in]ᵀ + [out]`.
  private static func checkLinear(_ shape: [Int], weight: Tensor, bias: Tensor?) throws {
    guard let inputs = shape.last, weight.rank == 2, inputs == weight.shape[1],
      bias.map({ $0.shape == [weight.shape[0]] }) ?? true
    else {
      throw TensorError(
        "linear",
        "input \(shapeString(shape)), weight \(shapeString(weight.shape))"
          + (bias.map { " and bias \(shapeString($0.shape))" } ?? "")
          + " do not fit [..., in] · [out, in]ᵀ + [out]")
    }
  }

  /// Runs `body(first, count, scratch)` over consecutive blocks of `rows` rows (each block but
  /// the last a multiple of `multiple` rows), with `buffers` scratches of `count × width`
  /// floats each, about 1 MiB, that stay in cache between the pass writing them and the
  /// product reading them: a GELU'd or normalised operand never takes a buffer as large as the
  /// activation it comes from.
  private static func forEachActivationBlock(
    rows: Int, width: Int, buffers: Int = 1, multiple: Int = 1,
    _ body: (_ first: Int, _ count: Int, _ scratch: [UnsafeMutablePointer<Float>]) -> Void
  ) {
    guard rows > 0, width > 0 else { return }
    let blockRows = Swift.min(rows, Swift.max((1 << 20) / (width * 4), 64))
    let blocks = (rows + blockRows - 1) / blockRows
    let even = Swift.min(rows, ((rows + blocks - 1) / blocks + multiple - 1) / multiple * multiple)
    let storage = TensorStorage(uninitializedCount: buffers * even * width)
    let scratch = (0..<buffers).map { storage.base + $0 * even * width }
    var first = 0
    while first < rows {
      let count = Swift.min(even, rows - first)
      body(first, count, scratch)
      first += count
    }
  }

  /// The gradients of `gelu_linear` (`gelu(x) · weightᵀ`) from the contiguous output gradient
  /// `g` `[rows, out]`: dx = (g · weight) ⊙ gelu'(x) and dweight = gᵀ · gelu(x), a block of
  /// rows at a time, with gelu(x) recomputed in the pass that applies gelu'(x). dx is written
  /// over x's own buffer when the graph will not run again and nothing else holds it, so the
  /// step's widest activation and its gradient never take two buffers.
  private static func geluLinearGradients(
    _ g: Tensor, argument saved: SavedTensor, weight w: Tensor, rows: Int,
    wantsInput: Bool, wantsWeight: Bool
  ) -> (input: Tensor?, weight: Tensor?) {
    let (inputs, outputs) = (w.shape[1], w.shape[0])
    let (gradient, weights) = (g.storage.base + g.offset, w.storage.base + w.offset)
    let reused = wantsInput ? saved.takeBuffer() : nil
    let x = reused.map { Tensor(storage: $0, shape: saved.shape) } ?? saved.value
    let argument = x.storage.base + x.offset
    let dx = reused ?? (wantsInput ? TensorStorage(uninitializedCount: rows * inputs) : nil)
    // No rows: dweight is zeros (no block runs to write it).
    let dw = wantsWeight ? TensorStorage(count: outputs * inputs, repeating: 0) : nil
    forEachActivationBlock(rows: rows, width: inputs) { first, count, scratch in
      let (activation, size) = (scratch[0], count * inputs)
      let xs = argument + first * inputs
      if let dx {
        // g · weight into x's gradient, or, over x's buffer, into the scratch, which then
        // takes gelu(x) as x's rows take their gradient.
        let target = dx.base + first * inputs
        sgemm(
          transA: false, transB: false, m: count, n: inputs, k: outputs,
          a: gradient + first * outputs, lda: outputs, b: weights, ldb: inputs,
          c: reused == nil ? target : activation, ldc: inputs)
        if reused == nil {
          Kernels.geluBackward(xs, gradient: target, activation: activation, count: size)
        } else {
          Kernels.geluBackward(replacing: xs, exchanging: activation, count: size)
        }
      } else {
        Kernels.map(xs, activation, count: size, GeluFunction())
      }
      if let dw {
        sgemm(
          transA: true, transB: false, m: outputs, n: inputs, k: count,
          a: gradient + first * outputs, lda: outputs, b: activation, ldb: inputs,
          c: dw.base, ldc: inputs, beta: first == 0 ? 0 : 1)
      }
    }
    return (
      dx.map { Tensor(storage: $0, shape: saved.shape) },
      dw.map { Tensor(storage: $0, shape: [outputs, inputs]) }
    )
  }

  /// The product of `linear`; with `activated`, the input is GELU's argument (see
  /// `linear(gelu:weight:bias:adding:)`).
  private static func linear(
    _ x: Tensor, weight: Tensor, bias: Tensor?, adding residual: Tensor?, activated: Bool
  ) throws -> Tensor {
    try checkLinear(x.shape, weight: weight, bias: bias)
    let (inputs, outputs) = (weight.shape[1], weight.shape[0])
    let outShape = Array(x.shape.dropLast()) + [outputs]
    if let residual, residual.shape != outShape {
      throw TensorError(
        "linear",
        "residual \(shapeString(residual.shape)) does not match the output \(shapeString(outShape))"
      )
    }
    let rows = x.count / Swift.max(inputs, 1)
    let dense = x.contiguous()
    let w = weight.contiguous()
    // With the activation, gelu(x) a block of rows at a time.
    let out = product(
      dense, weight: w, bias: bias?.contiguous(), adding: residual?.contiguous(),
      blockwise: activated
        ? { source, target, count in
          Kernels.map(source, target, count: count * inputs, GeluFunction())
        } : nil)
    let inputShape = x.shape
    var recorded: [Tensor] = [x, weight]
    if let bias { recorded.append(bias) }
    if let residual { recorded.append(residual) }
    // The closure keeps x in a box its backward can take the buffer from, and flags, not the
    // inputs themselves (a residual captured for its presence would live until backward).
    let saved = SavedTensor(dense, shape: inputShape)
    let (wantsInput, wantsWeight) = (x.requiresGrad, weight.requiresGrad)
    let (wantsBias, hasResidual) = (bias.map(\.requiresGrad), residual != nil)
    return Autograd.record(activated ? "gelu_linear" : "linear", out, recorded) { g in
      let gc = g.contiguous()
      let (dx, dw) =
        activated
        ? geluLinearGradients(
          gc, argument: saved, weight: w, rows: rows, wantsInput: wantsInput,
          wantsWeight: wantsWeight)
        : (
          wantsInput ? productInputGradient(gc, weight: w, rows: rows, shape: inputShape) : nil,
          wantsWeight
            ? productWeightGradient(
              gc, input: saved.value, rows: rows, outputs: outputs, inputs: inputs) : nil
        )
      var grads: [Tensor?] = [dx, dw]
      if let wantsBias {
        grads.append(wantsBias ? try gc.reshaped([rows, outputs]).sum(axes: [0]) : nil)
      }
      if hasResidual { grads.append(gc) }
      return grads
    }
  }
}

/// A transformer MLP with its norm and residual connection over raw rows, a chunk of rows at a
/// time (`Tensor.normalizedMLP`, `Tensor.transformerBlock`): `out = residual + fc2(gelu(fc1(
/// norm(x))))` with the biases, where `out` may be `residual` itself.
struct MLPChunk: Sendable {
  let d: Int
  let hidden: Int
  let outputs: Int
  let eps: Float
  let normWeight: SendablePointer<Float>
  let normBias: SendablePointer<Float>
  let weight1: SendablePointer<Float>
  let bias1: SendablePointer<Float>?
  let weight2: SendablePointer<Float>
  let bias2: SendablePointer<Float>?

  /// Rows of chunks of even size, at most `limit`, over `rows` rows: a short last chunk could
  /// fall under OpenBLAS's small-matrix limit, whose kernels may round differently from the
  /// packed ones the whole product takes.
  static func evenChunkRows(_ rows: Int, atMost limit: Int) -> Int {
    let chunks = Swift.max(1, (rows + Swift.max(limit, 1) - 1) / Swift.max(limit, 1))
    return Swift.max(1, (rows + chunks - 1) / chunks)
  }

  /// `rows` rows: x's (`d` floats apart) normalised into `normalized`, fc1 into `activation`
  /// (which starts as fc1's bias), GELU in place, and fc2 added to the output rows (`outputs`
  /// floats apart), which start as the residual plus fc2's bias. Each row is normalised before
  /// its output is written, so `out` may be the rows of `x` when x is the residual.
  func run(
    rows count: Int, x: UnsafePointer<Float>, residual: UnsafePointer<Float>,
    into out: UnsafeMutablePointer<Float>, normalized: UnsafeMutablePointer<Float>,
    activation: UnsafeMutablePointer<Float>
  ) {
    for r in 0..<count {
      _ = Kernels.layerNormRow(
        x + r * d, into: normalized + r * d, d, weight: normWeight.base, bias: normBias.base,
        eps: eps)
    }
    Kernels.startRows(
      activation, rows: count, width: hidden, residual: nil,
      bias: bias1.map { UnsafePointer($0.base) })
    sgemm(
      transA: false, transB: true, m: count, n: hidden, k: d, a: normalized, lda: d,
      b: weight1.base, ldb: d, c: activation, ldc: hidden, beta: bias1 == nil ? 0 : 1)
    Kernels.applySerially(activation, count: count * hidden, GeluFunction())
    Kernels.startRows(
      out, rows: count, width: outputs, residual: residual,
      bias: bias2.map { UnsafePointer($0.base) })
    sgemm(
      transA: false, transB: true, m: count, n: outputs, k: hidden, a: activation,
      lda: hidden, b: weight2.base, ldb: hidden, c: out, ldc: outputs, beta: 1)
  }
}
