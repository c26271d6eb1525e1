extension Kernels {
  /// AdamW's update of one parameter in place, each element in the order of operations of the
  /// single loop it replaces: `m += (g − m)·(1 − β₁)`, `v = v·β₂ + (1 − β₂)·g·g`,
  /// `p = p·shrink − stepSize·m / (√v / root2 + ε)`, with the same bits. Blocks of elements are
  /// shared between the threads; in each block the three steps are passes of at most three
  /// pointers, which vectorise (one loop over all four pointers stays scalar), over data still
  /// in cache.
  package static func adamW(
    parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
    average: UnsafeMutablePointer<Float>, square: UnsafeMutablePointer<Float>, count: Int,
    beta1: Float, beta2: Float, shrink: Float, stepSize: Float, root2: Float, epsilon: Float
  ) {
    let (pp, pg, pm, pv) = (
      SendablePointer(parameter), SendablePointer(UnsafeMutablePointer(mutating: gradient)),
      SendablePointer(average), SendablePointer(square)
    )
    let block = 2048
    parallelChunks((count + block - 1) / block, grain: 16) { blocks in
      let end = Swift.min(blocks.upperBound * block, count)
      for start in stride(from: blocks.lowerBound * block, to: end, by: block) {
        let n = Swift.min(block, end - start)
        let (p, g, m, v) = (pp.base + start, pg.base + start, pm.base + start, pv.base + start)
        for i in 0..<n { m[i] += (g[i] - m[i]) * (1 - beta1) }
        for i in 0..<n { v[i] = v[i] * beta2 + (1 - beta2) * g[i] * g[i] }
        for i in 0..<n {
          // v ≥ 0, so |v| is v (and √(−0) = −0 and √0 = 0 give the same denominator, ε); with
          // the sign known, LLVM drops `squareRoot`'s call to libm for negative inputs, which
          // kept the loop scalar, and uses vector square roots (correctly rounded, as sqrtf).
          let denominator = Swift.abs(v[i]).squareRoot() / root2 + epsilon
          p[i] = p[i] * shrink - stepSize * m[i] / denominator
        }
      }
    }
  }
}

extension Kernels {
  /// SGD's update of one parameter in place, as PyTorch's: `d = g + wd·p`; with momentum μ,
  /// `b = d` on the first step and `μ·b + d` after, then `d = d + μ·b` (Nesterov) or `b`;
  /// `p −= lr·d`. Shared between the threads.
  package static func sgd(
    parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
    buffer: UnsafeMutablePointer<Float>, count: Int, learningRate lr: Float,
    weightDecay wd: Float, momentum mu: Float, first: Bool, nesterov: Bool
  ) {
    let (pp, pg, pb) = (
      SendablePointer(parameter), SendablePointer(UnsafeMutablePointer(mutating: gradient)),
      SendablePointer(buffer)
    )
    parallelChunks(count) { range in
      let (p, g, b) = (pp.base, pg.base, pb.base)
      if mu == 0 {
        for i in range { p[i] -= lr * (g[i] + wd * p[i]) }
        return
      }
      for i in range {
        let d = g[i] + wd * p[i]
        let m = first ? d : mu * b[i] + d
        b[i] = m
        p[i] -= lr * (nesterov ? d + mu * m : m)
      }
    }
  }

  /// An EMA teacher's update in place: `t += w·(s − t)`. Shared between the threads.
  package static func movingAverage(
    _ teacher: UnsafeMutablePointer<Float>, toward student: UnsafePointer<Float>, count: Int,
    weight w: Float
  ) {
    let (pt, ps) = (
      SendablePointer(teacher), SendablePointer(UnsafeMutablePointer(mutating: student))
    )
    parallelChunks(count) { range in
      let (t, s) = (pt.base, ps.base)
      for i in range { t[i] += w * (s[i] - t[i]) }
    }
  }
}

extension Kernels {
  /// A momentum encoder's update in place, as MoCo writes it: `k = k·keep + q·take` (each
  /// product rounded, then their sum). Shared between the threads.
  package static func momentumBlend(
    _ key: UnsafeMutablePointer<Float>, with query: UnsafePointer<Float>, count: Int,
    keep: Float, take: Float
  ) {
    let (pk, pq) = (SendablePointer(key), SendablePointer(UnsafeMutablePointer(mutating: query)))
    parallelChunks(count) { range in
      let (k, q) = (pk.base, pq.base)
      for i in range { k[i] = k[i] * keep + q[i] * take }
    }
  }
}
