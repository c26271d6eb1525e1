extension Kernels {
  /// One parameter's buffers and factors for `adamW(_:beta1:beta2:root2:epsilon:)`.
  package struct AdamWSlice: @unchecked Sendable {
    let parameter: UnsafeMutablePointer<Float>
    let gradient: UnsafePointer<Float>
    let average: UnsafeMutablePointer<Float>
    let square: UnsafeMutablePointer<Float>
    let count: Int
    let shrink: Float
    let stepSize: Float

    package init(
      parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
      average: UnsafeMutablePointer<Float>, square: UnsafeMutablePointer<Float>, count: Int,
      shrink: Float, stepSize: Float
    ) {
      (self.parameter, self.gradient, self.average, self.square) = (
        parameter, gradient, average, square
      )
      (self.count, self.shrink, self.stepSize) = (count, shrink, stepSize)
    }
  }

  /// AdamW's update of every parameter in place, each element in the order of operations of
  /// the single loop it replaces: `m += (g − m)·(1 − β₁)`, `v = v·β₂ + (1 − β₂)·g·g`,
  /// `p = p·shrink − stepSize·m / (√v / root2 + ε)`, with the same bits. The parameters'
  /// blocks of 2,048 elements are shared between the threads together (a model's many small
  /// tensors, each too small to split, ran one after another on the calling thread); in each
  /// block the three steps are passes of at most three pointers, which vectorise (one loop
  /// over all four pointers stays scalar), over data still in cache.
  package static func adamW(
    _ slices: [AdamWSlice], beta1: Float, beta2: Float, root2: Float, epsilon: Float
  ) {
    let block = 2048
    var blocks: [(slice: Int, start: Int)] = []
    for (k, slice) in slices.enumerated() {
      for start in stride(from: 0, to: slice.count, by: block) { blocks.append((k, start)) }
    }
    let all = blocks
    parallelChunks(all.count, grain: 16) { range in
      for index in range {
        let (k, start) = all[index]
        let slice = slices[k]
        let n = Swift.min(block, slice.count - start)
        let (p, g, m, v) = (
          slice.parameter + start, slice.gradient + start, slice.average + start,
          slice.square + start
        )
        let (shrink, stepSize) = (slice.shrink, slice.stepSize)
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
