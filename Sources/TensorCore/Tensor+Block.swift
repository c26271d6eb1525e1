import CBLAS
import Foundation

// A pre-norm transformer block in inference, one sequence at a time.
//
// Composed, a block's forward makes [B, N, ·] buffers of the normalised rows, of q, k and v
// (3·D floats a token), of the attention's output and of the projection, each written to memory
// by one pass and read back by the next. Where no gradient is recorded nothing needs them
// afterwards, so each thread takes whole sequences and runs the block on one sequence at a
// time: its rows, its q, k and v and its attention output stay in the caches between the
// passes. The arithmetic is the composed ops' own (the same row kernels, the same BLAS sums
// row by row, the same attention blocks), so the bits are theirs.

/// The parameters of a pre-norm transformer block (`x + attn(norm1(x))`, then
/// `+ mlp(norm2(·))`), with any LayerScale already folded into the projection's and fc2's
/// weight rows and biases.
package struct BlockParameters {
  package var norm1: (weight: Tensor, bias: Tensor, eps: Float)
  package var qkv: (weight: Tensor, bias: Tensor?)
  package var proj: (weight: Tensor, bias: Tensor?)
  package var norm2: (weight: Tensor, bias: Tensor, eps: Float)
  package var fc1: (weight: Tensor, bias: Tensor?)
  package var fc2: (weight: Tensor, bias: Tensor?)
  package var heads: Int

  package init(
    norm1: (weight: Tensor, bias: Tensor, eps: Float), qkv: (weight: Tensor, bias: Tensor?),
    proj: (weight: Tensor, bias: Tensor?), norm2: (weight: Tensor, bias: Tensor, eps: Float),
    fc1: (weight: Tensor, bias: Tensor?), fc2: (weight: Tensor, bias: Tensor?), heads: Int
  ) {
    (self.norm1, self.qkv, self.proj, self.norm2) = (norm1, qkv, proj, norm2)
    (self.fc1, self.fc2, self.heads) = (fc1, fc2, heads)
  }
}

extension Tensor {
  /// Whether `transformerBlock` is the faster way to run a block over `[batch, tokens, width]`
  /// with `heads` heads, as measured on the 2-core Xeon (2 MiB of L2 a core): it needs
  ///
  /// - a sequence for every thread (with fewer, the composed ops, which split rows and heads,
  ///   keep every core busy);
  /// - at least 256 tokens a sequence (at `tiny`'s 200 its products were too short for BLAS:
  ///   the encoder went 7.00 → 7.30 ms);
  /// - a sequence's normalised rows, q | k | v, attention output and attention scratch within
  ///   the L2 cache (at `paper`, 750 tokens of 256 channels take 3.8 MB and the encoder went
  ///   585 → 619 ms; at `small`, 1.2 MB: 172.2 → 167.9 ms).
  package static func blockBySequences(batch: Int, tokens: Int, width: Int, heads: Int) -> Bool {
    guard batch >= Threading.threadCount, tokens >= 256, heads > 0, width % heads == 0 else {
      return false
    }
    let plan = attentionPlan(n: tokens, width: width / heads)
    let floats =
      tokens * 5 * width + plan.rows * (tokens + 1) + (plan.transposed ? width / heads * tokens : 0)
    return floats * 4 <= level2CacheBytes
  }

  /// The L2 cache of a core, as glibc reports it (0 where it cannot tell).
  private static let level2CacheBytes: Int = {
    #if os(Linux)
      return Swift.max(0, sysconf(Int32(_SC_LEVEL2_CACHE_SIZE)))
    #else
      return 0
    #endif
  }()

  /// A pre-norm transformer block over `x` `[B, N, D]` where no gradient is recorded:
  /// `h = x + proj(attention(qkv(norm1(x))))`, then `h + fc2(gelu(fc1(norm2(h))))`, the
  /// attention softmax(q·kᵀ·hd^-0.5)·v per head. Each thread takes whole sequences and runs the
  /// block on one at a time (see the top of this file); the MLP goes a chunk of rows at a time
  /// as in `normalizedMLP`. The bits of the composed ops.
  package static func transformerBlock(_ x: Tensor, _ p: BlockParameters) throws -> Tensor {
    guard x.rank == 3, p.heads > 0, x.shape[2] % p.heads == 0 else {
      throw TensorError(
        "block",
        "expects [B, N, D] with D divisible by \(p.heads) heads, got \(shapeString(x.shape))")
    }
    let (b, n, d) = (x.shape[0], x.shape[1], x.shape[2])
    _ = try layerNormWidth(x.shape, weight: p.norm1.weight, bias: p.norm1.bias)
    _ = try layerNormWidth(x.shape, weight: p.norm2.weight, bias: p.norm2.bias)
    let hidden = p.fc1.weight.rank == 2 ? p.fc1.weight.shape[0] : 0
    for (name, layer, inputs, outputs) in [
      ("qkv", p.qkv, d, 3 * d), ("proj", p.proj, d, d), ("fc1", p.fc1, d, hidden),
      ("fc2", p.fc2, hidden, d),
    ] {
      guard layer.weight.shape == [outputs, inputs],
        layer.bias.map({ $0.shape == [outputs] }) ?? true
      else {
        throw TensorError(
          "block",
          "\(name) weight \(shapeString(layer.weight.shape))"
            + (layer.bias.map { " and bias \(shapeString($0.shape))" } ?? "")
            + " do not fit [\(outputs), \(inputs)] for input \(shapeString(x.shape))")
      }
    }
    let hd = d / p.heads
    let alpha = Float(1 / Double(hd).squareRoot())
    let plan = attentionPlan(n: n, width: hd)
    let chunk = MLPChunk.evenChunkRows(n, atMost: mlpChunkRows(hidden: hidden))
    func pointers(_ layer: (Tensor, Tensor?)) -> (SendablePointer<Float>, SendablePointer<Float>?) {
      (layer.0.address, layer.1?.address)
    }
    // Contiguous (copies where the tensors are not), and kept alive through the closure.
    let kept = [p.norm1.weight, p.norm1.bias, p.norm2.weight, p.norm2.bias].map {
      $0.detached().contiguous()
    }
    let layers = [p.qkv, p.proj, p.fc1, p.fc2].map {
      ($0.weight.detached().contiguous(), $0.bias?.detached().contiguous())
    }
    let ((wQKV, bQKV), (wProj, bProj)) = (pointers(layers[0]), pointers(layers[1]))
    let ((w1, b1), (w2, b2)) = (pointers(layers[2]), pointers(layers[3]))
    let (n1w, n1b) = (kept[0].address, kept[1].address)
    let (eps1, heads) = (p.norm1.eps, p.heads)
    let mlp = MLPChunk(
      d: d, hidden: hidden, outputs: d, eps: p.norm2.eps, normWeight: kept[2].address,
      normBias: kept[3].address, weight1: w1, bias1: b1, weight2: w2, bias2: b2)
    let source = x.detached().contiguous()
    let threads = Swift.min(Threading.threadCount, b)
    // Per thread: the normalised rows, q | k | v, the attention's output, a block of logits and
    // a float a row, k's transposed copy, and the MLP's hidden rows.
    let logits = plan.rows * n + plan.rows
    let (normalizedSize, qkvSize, outSize) = (n * d, n * 3 * d, n * d)
    let scratchSize =
      normalizedSize + qkvSize + outSize + logits + (plan.transposed ? hd * n : 0) + chunk * hidden
    let out = Tensor(validShape: [b, n, d]) { dst in
      let (px, py) = (source.address, SendablePointer(dst))
      Threading.withSingleThreadedBLAS(threads > 1) {
        parallelChunks(b, grain: Swift.max(1, (b + threads - 1) / threads)) { range in
          let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchSize)
          defer { scratch.deallocate() }
          let normalized = scratch
          let qkv = normalized + normalizedSize
          let attention = qkv + qkvSize
          let logitsBlock = attention + outSize
          let transposed = logitsBlock + logits
          let activation = transposed + (plan.transposed ? hd * n : 0)
          for sequence in range {
            let (xs, ys) = (px.base + sequence * n * d, py.base + sequence * n * d)
            // q | k | v = norm1(x) · qkvᵀ + bias
            for r in 0..<n {
              _ = Kernels.layerNormRow(
                xs + r * d, into: normalized + r * d, d, weight: n1w.base, bias: n1b.base,
                eps: eps1)
            }
            Kernels.startRows(
              qkv, rows: n, width: 3 * d, residual: nil, bias: bQKV.map { UnsafePointer($0.base) })
            sgemm(
              transA: false, transB: true, m: n, n: 3 * d, k: d, a: normalized, lda: d,
              b: wQKV.base, ldb: d, c: qkv, ldc: 3 * d, beta: bQKV == nil ? 0 : 1)
            for h in 0..<heads {
              attentionHead(
                qkv + h * hd, into: attention + h * hd, n: n, d: d, hd: hd, alpha: alpha,
                plan: plan, scratch: logitsBlock, transposed: transposed, logSumExp: nil)
            }
            // h = x + attention · projᵀ + bias
            Kernels.startRows(
              ys, rows: n, width: d, residual: xs, bias: bProj.map { UnsafePointer($0.base) })
            sgemm(
              transA: false, transB: true, m: n, n: d, k: d, a: attention, lda: d,
              b: wProj.base, ldb: d, c: ys, ldc: d, beta: 1)
            // h + fc2(gelu(fc1(norm2(h)))), over h's own rows, a chunk at a time.
            var first = 0
            while first < n {
              let count = Swift.min(chunk, n - first)
              let rows = ys + first * d
              mlp.run(
                rows: count, x: rows, residual: rows, into: rows, normalized: normalized,
                activation: activation)
              first += count
            }
          }
        }
      }
    }
    withExtendedLifetime((kept, layers, source)) {}
    return out
  }
}
