import CBLAS
import CSystem
import Foundation

// Fused, blocked multi-head self-attention straight from the packed `qkv` projection.
//
// The composed form (permute q, k, v out of [B, N, 3, H, hd]; q·kᵀ; softmax; ·v; permute
// back) makes several passes over [B, H, N, N] logits, which leave the cache at N = 400.
// Here each (sequence, head) pair runs by blocks of queries: the logits of a block, their
// softmax and the value product stay in cache, and q, k, v are read in place through BLAS
// leading dimensions (no permuted copies). The backward recomputes the probabilities from the
// saved log-sum-exp of each row instead of storing them (FlashAttention's trade: one more
// q·kᵀ product, no [B, H, N, N] tensor). The composed version is the tests' oracle.

extension Tensor {
  /// Queries per block. With the SkylakeX kernels, whole 400-token sequences in one block
  /// (one packing of the keys per head instead of four) made the `small` encoder 4% faster than
  /// blocks of 128 (median of 3 interleaved pairs: 186.9 against 195.2 ms; `paper`, 750 tokens
  /// in blocks of 512 and 238: 587 against 593 ms; the `small` MAMP step unchanged, 351 ms).
  static let attentionBlockRows = 512

  /// Query rows per block, and whether the logits' products read transposed copies of k and v.
  /// Where OpenBLAS takes products of up to 10⁶ multiply-adds unpacked
  /// (`BLASCore.smallProducts`), blocks are cut to that size so that all six products of a
  /// block (q·kᵀ and p·v; in backward q·kᵀ again, pᵀ·dO, dO·vᵀ, ds·k and dsᵀ·q) go that way:
  /// none packs its operands or clears C first, and the transposed products become plain ones
  /// over `[hd, N]` copies of k and v made once per head. Alone on one core of the 2-core
  /// Xeon, at `small`'s shapes (400 tokens, hd 32, blocks of 78 rows): q·kᵀ 76.4 → 68.5 µs,
  /// p·v 81.1 → 70.8, pᵀ·dO (blocks of 64) 83.6 → 58.9. Elsewhere, or when a block would
  /// have fewer than 8 rows, whole sequences up to 512 rows.
  static func attentionPlan(n: Int, width: Int) -> (rows: Int, transposed: Bool) {
    let fit = 1_000_000 / Swift.max(n * width, 1)
    guard BLASCore.smallProducts, fit >= Swift.min(8, n) else {
      return (attentionBlockRows, false)
    }
    return (Swift.max(1, Swift.min(fit, n)), true)
  }

  /// Multi-head self-attention of a packed projection `qkv` `[B, N, 3D]` (q | k | v; head h
  /// owns channels h·hd ..< (h+1)·hd of each): `softmax(q·kᵀ·scale)·v` per head, heads merged
  /// back channel-major, `[B, N, D]`. `scale` defaults to hd^-0.5 and multiplies the logits.
  public static func packedAttention(_ qkv: Tensor, heads: Int, scale: Float? = nil) throws
    -> Tensor
  {
    try packedAttention(qkv, heads: heads, scale: scale, plan: nil)
  }

  /// `packedAttention` with the blocks and products given (`attentionPlan`'s when nil): the
  /// tests run every plan on every machine.
  package static func packedAttention(
    _ qkv: Tensor, heads: Int, scale: Float?, plan given: (rows: Int, transposed: Bool)?
  ) throws -> Tensor {
    guard qkv.rank == 3, heads > 0, qkv.shape[2] % (3 * heads) == 0 else {
      throw TensorError(
        "attention",
        "expects packed qkv [B, N, 3·D] with D divisible by \(heads) heads, got "
          + shapeString(qkv.shape))
    }
    let (b, n, d) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
    let hd = d / heads
    let alpha = scale ?? Float(1 / Double(hd).squareRoot())
    let packed = qkv.contiguous()
    let plan: (rows: Int, transposed: Bool) =
      given.map { (Swift.max(1, $0.rows), $0.transposed) } ?? attentionPlan(n: n, width: hd)
    // Each row's log-sum-exp, for the backward: only when one will run.
    let keepLogSumExp = Autograd.isRecording && qkv.requiresGrad
    var logSumExp = [Float](repeating: 0, count: Swift.max(keepLogSumExp ? b * heads * n : 0, 1))
    let out = logSumExp.withUnsafeMutableBufferPointer { lse in
      let lsePointer = SendablePointer(lse.baseAddress!)
      return Tensor(validShape: [b, n, d]) { dst in
        let source = packed.address
        let target = SendablePointer(dst)
        forEachHead(
          b * heads, columns: n, blockRows: plan.rows, extra: plan.rows,
          transposed: plan.transposed ? hd : 0
        ) {
          pair, scratch, transposed in
          let (s, h) = (pair / heads, pair % heads)
          attentionHead(
            source.base + s * n * 3 * d + h * hd, into: target.base + s * n * d + h * hd, n: n,
            d: d, hd: hd, alpha: alpha, plan: plan, scratch: scratch, transposed: transposed,
            logSumExp: keepLogSumExp ? lsePointer.base + pair * n : nil)
        }
      }
    }
    let saved = out
    return Autograd.record("attention", out, [qkv]) { gradOut in
      let g = gradOut.contiguous()
      // Every element is written: q's rows block by block, k's and v's by the first block's
      // products (beta 0), which later blocks add to.
      let dqkv = Tensor(validShape: [b, n, 3 * d]) { dst in
        let source = packed.address
        let outputs = saved.address
        let gradients = g.address
        let target = SendablePointer(dst)
        logSumExp.withUnsafeBufferPointer { lse in
          let lsePointer = SendablePointer(
            UnsafeMutablePointer(mutating: lse.baseAddress ?? UnsafePointer(target.base)))
          forEachHead(
            b * heads, columns: n, blockRows: plan.rows, scratchRows: 2, extra: plan.rows,
            transposed: plan.transposed ? 2 * hd : 0
          ) {
            pair, scratch, transposed in
            let (s, h) = (pair / heads, pair % heads)
            let q = source.base + s * n * 3 * d + h * hd
            let o = outputs.base + s * n * d + h * hd
            let dO = gradients.base + s * n * d + h * hd
            let dq = target.base + s * n * 3 * d + h * hd
            var (r0, kWritten, vWritten) = (0, false, false)
            while r0 < n {
              let rows = Swift.min(plan.rows, n - r0)
              let p = scratch
              let dp = scratch + plan.rows * n
              // dp = dO · vᵀ, then the probabilities again: p = alpha · q[r0..] · kᵀ
              productTransposed(
                rows: rows, n: n, width: hd, alpha: 1, dO + r0 * d, Int32(d), q + 2 * d,
                Int32(3 * d), into: dp, transposedB: plan.transposed ? transposed + hd * n : nil,
                written: &vWritten)
              productTransposed(
                rows: rows, n: n, width: hd, alpha: alpha, q + r0 * 3 * d, Int32(3 * d),
                q + d, Int32(3 * d), into: p, transposedB: plan.transposed ? transposed : nil,
                written: &kWritten)
              // δ = rowsum(dO ⊙ o) for the block's rows first, in one sweep down the rows (d
              // floats apart), not one short dot product between two rows of exponentials.
              let deltas = dp + plan.rows * n
              for r in 0..<rows {
                deltas[r] = Kernels.dot(dO + (r0 + r) * d, o + (r0 + r) * d, hd)
              }
              // p = exp(logits − log-sum-exp) and dlogits = p ⊙ (dp − δ) · alpha in place of dp,
              // in one pass over the block.
              for r in 0..<rows {
                Kernels.attentionGradientRow(
                  p + r * n, dp + r * n, n, shift: lsePointer.base[pair * n + r0 + r],
                  delta: deltas[r], alpha: alpha)
              }
              // dv (+)= pᵀ · dO
              let accumulate: Float = r0 == 0 ? 0 : 1
              cblas_sgemm(
                CblasRowMajor, CblasTrans, CblasNoTrans, Int32(n), Int32(hd), Int32(rows), 1, p,
                Int32(n), dO + r0 * d, Int32(d), accumulate, dq + 2 * d, Int32(3 * d))
              // dq[r0..] = dlogits · k;  dk (+)= dlogitsᵀ · q[r0..]
              cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(hd), Int32(n), 1,
                dp, Int32(n), q + d, Int32(3 * d), 0, dq + r0 * 3 * d, Int32(3 * d))
              cblas_sgemm(
                CblasRowMajor, CblasTrans, CblasNoTrans, Int32(n), Int32(hd), Int32(rows), 1, dp,
                Int32(n), q + r0 * 3 * d, Int32(3 * d), accumulate, dq + d, Int32(3 * d))
              r0 += rows
            }
          }
        }
      }
      return [dqkv]
    }
  }

  /// One head of one sequence: `o = softmax(alpha · q·kᵀ) · v` by blocks of `plan.rows`
  /// queries, q, k and v read in place from the packed projection (`q` points at the head's
  /// first query: rows `3d` floats apart, k `d` and v `2d` floats after), the output written
  /// at `o` (rows `d` apart). `scratch` holds a block of logits and one float a row;
  /// `transposed` (`[hd, n]`) the copy of k the plan asks for. With `logSumExp`, each row's
  /// log-sum-exp for the backward.
  static func attentionHead(
    _ q: UnsafeMutablePointer<Float>, into o: UnsafeMutablePointer<Float>, n: Int, d: Int,
    hd: Int, alpha: Float, plan: (rows: Int, transposed: Bool),
    scratch: UnsafeMutablePointer<Float>, transposed: UnsafeMutablePointer<Float>,
    logSumExp: UnsafeMutablePointer<Float>?
  ) {
    var (r0, kWritten) = (0, false)
    while r0 < n {
      let rows = Swift.min(plan.rows, n - r0)
      let logits = scratch
      // logits[rows, N] = alpha · q[r0..] · kᵀ
      productTransposed(
        rows: rows, n: n, width: hd, alpha: alpha, q + r0 * 3 * d, Int32(3 * d), q + d,
        Int32(3 * d), into: logits, transposedB: plan.transposed ? transposed : nil,
        written: &kWritten)
      // Unnormalised probabilities; each output row is divided by its sum afterwards (hd
      // values instead of N).
      let inverse = scratch + plan.rows * n
      for r in 0..<rows {
        let row = logits + r * n
        let (peak, total) = Kernels.exponentiated(row, into: row, n)
        inverse[r] = Float(1 / total)
        if let logSumExp { logSumExp[r0 + r] = peak + Float(Foundation.log(total)) }
      }
      // out[r0.., head h] = p · v
      cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(hd), Int32(n), 1, logits,
        Int32(n), q + 2 * d, Int32(3 * d), 0, o + r0 * d, Int32(d))
      for r in 0..<rows {
        let row = o + (r0 + r) * d
        for j in 0..<hd { row[j] *= inverse[r] }
      }
      r0 += rows
    }
  }

  /// `c[rows, n] = alpha · a[rows, width] · bᵀ`, `b` being `n` rows of `width` floats `ldb`
  /// apart. With `transposedB` (`[width, n]`, filled from `b` unless `written`) as a plain
  /// product: OpenBLAS 0.3's small-matrix kernels take the transposed form only while C has at
  /// most 1,200 elements, and otherwise it packs both operands and clears C before it adds to
  /// it. Without, to BLAS as it is.
  private static func productTransposed(
    rows: Int, n: Int, width: Int, alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int32,
    _ b: UnsafePointer<Float>, _ ldb: Int32, into c: UnsafeMutablePointer<Float>,
    transposedB: UnsafeMutablePointer<Float>?, written: inout Bool
  ) {
    guard let transposedB else {
      cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(n), Int32(width), alpha, a,
        lda, b, ldb, 0, c, Int32(n))
      return
    }
    if !written {
      written = true
      // Row by row: contiguous loads, stores `n` apart (pointer steps: no overflow checks in
      // the loop, which kept it scalar with a check per element).
      var row = b
      for j in 0..<n {
        // The rows are `ldb` floats apart in a buffer far larger than the caches: ask for the
        // rows 8 ahead now, so that their loads do not stall the loop.
        if j + 8 < n {
          let ahead = row + 8 * Int(ldb)
          skellab_prefetch(ahead)
          skellab_prefetch(ahead + width - 1)
        }
        var target = transposedB + j
        for column in 0..<width {
          target.pointee = row[column]
          target += n
        }
        row += Int(ldb)
      }
    }
    cblas_sgemm(
      CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(n), Int32(width), alpha, a,
      lda, transposedB, Int32(n), 0, c, Int32(n))
  }

  /// Runs `body(pair, scratch, transposed)` for each (sequence, head) pair, split across
  /// threads, each thread with a scratch buffer of `scratchRows` blocks of `blockRows` rows of
  /// logits then `extra` floats, and one of `transposed` rows of `columns` (for
  /// `productTransposed`). While the pairs run in parallel, BLAS runs single-threaded inside
  /// each (the pairs already fill the cores).
  private static func forEachHead(
    _ pairs: Int, columns: Int, blockRows: Int, scratchRows: Int = 1, extra: Int = 0,
    transposed: Int,
    _ body:
      @escaping @Sendable (Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) ->
      Void
  ) {
    let threads = Swift.min(Threading.threadCount, pairs)
    let logits = scratchRows * blockRows * columns + extra
    Threading.withSingleThreadedBLAS(threads > 1) {
      parallelChunks(pairs, grain: 1) { range in
        var scratch: UnsafeMutablePointer<Float>?
        defer { scratch?.deallocate() }
        for pair in range {
          if scratch == nil {
            scratch = UnsafeMutablePointer<Float>.allocate(
              capacity: logits + transposed * columns)
          }
          if let scratch { body(pair, scratch, scratch + logits) }
        }
      }
    }
  }
}

extension Kernels {
  /// One row of attention's backward over a block: `p[j] = exp(p[j] − shift)` (the probability
  /// from its scaled logit and the row's log-sum-exp) and `dp[j] = p[j] · (dp[j] − delta) ·
  /// alpha` (the logit's gradient from the probability's, δ being rowsum(dO ⊙ o)).
  @inline(__always)
  static func attentionGradientRow(
    _ p: UnsafeMutablePointer<Float>, _ dp: UnsafeMutablePointer<Float>, _ n: Int,
    shift: Float, delta: Float, alpha: Float
  ) {
    for j in 0..<n {
      let probability = VectorMath.expNonPositive(p[j] - shift)
      p[j] = probability
      dp[j] = probability * (dp[j] - delta) * alpha
    }
  }
}
