import Foundation

// The recurrence of one GRU layer and direction as one op. The input-side products of every
// frame are one matrix product done before (`inputGates`); here each frame costs one
// `h·W_hhᵀ` product and one fused pass over the gates. The backward runs through time once,
// keeping the gates of the forward, and turns the per-frame hidden-side products into one
// product for `W_hh`'s gradient (the gradients of all frames side by side). Nothing is
// sliced per frame, so memory is O(T) in frames, not O(T²).

extension Tensor {
  /// PyTorch's GRU recurrence with gates stacked [r; z; n]: for each frame t (in reverse order
  /// when `reverse`), `gh = h·W_hhᵀ + b_hh`, `r = σ(gi_r + gh_r)`, `z = σ(gi_z + gh_z)`,
  /// `n = tanh(gi_n + r ⊙ gh_n)`, `h ← (1 − z) ⊙ n + z ⊙ h`, from h = 0. `inputGates` is
  /// `W_ih·x + b_ih` for every frame, `[B, T, 3H]`; `weightHH` `[3H, H]`, `biasHH` `[3H]`.
  /// Returns every frame's state `[B, T, H]`.
  public static func gruRecurrence(
    inputGates: Tensor, weightHH: Tensor, biasHH: Tensor, reverse: Bool = false
  ) throws -> Tensor {
    guard inputGates.rank == 3, weightHH.rank == 2, weightHH.shape[0] == 3 * weightHH.shape[1],
      inputGates.shape[2] == weightHH.shape[0], biasHH.shape == [weightHH.shape[0]],
      inputGates.shape[1] > 0
    else {
      throw TensorError(
        "gru",
        "expects input gates [B, T, 3H], weight_hh [3H, H] and bias_hh [3H] with T > 0, got "
          + "\(shapeString(inputGates.shape)), \(shapeString(weightHH.shape)) and "
          + shapeString(biasHH.shape))
    }
    let (b, t, h) = (inputGates.shape[0], inputGates.shape[1], weightHH.shape[1])
    let g3 = 3 * h
    let gi = inputGates.detached().contiguous()
    let w = weightHH.detached().contiguous()
    let bias = biasHH.detached().contiguous()
    // r, z, n and gh_n of every frame, [B, T, 4H], for the backward.
    let saved = Tensor(validShape: [b, t, 4 * h]) { _ in }
    let out = Tensor(validShape: [b, t, h]) { _ in }
    let giBase = gi.storage.base + gi.offset
    let wBase = w.storage.base + w.offset
    let biasBase = bias.storage.base + bias.offset
    let outBase = out.storage.base
    let savedBase = saved.storage.base
    var gh = [Float](repeating: 0, count: b * g3)
    gh.withUnsafeMutableBufferPointer { ghp in
      let ghBase = ghp.baseAddress!
      for step in 0..<t {
        let frame = reverse ? t - 1 - step : step
        let previous = reverse ? frame + 1 : frame - 1
        for i in 0..<b { (ghBase + i * g3).update(from: biasBase, count: g3) }
        if step > 0 {
          sgemm(
            transA: false, transB: true, m: b, n: g3, k: h, a: outBase + previous * h,
            lda: t * h, b: wBase, ldb: h, c: ghBase, ldc: g3, beta: 1)
        }
        for i in 0..<b {
          let giRow = giBase + (i * t + frame) * g3
          let ghRow = ghBase + i * g3
          let hRow = outBase + (i * t + frame) * h
          let hPrevious = step > 0 ? outBase + (i * t + previous) * h : nil
          let s = savedBase + (i * t + frame) * 4 * h
          for j in 0..<h {
            let r = 1 / (1 + Foundation.exp(-(giRow[j] + ghRow[j])))
            let z = 1 / (1 + Foundation.exp(-(giRow[h + j] + ghRow[h + j])))
            let ghn = ghRow[2 * h + j]
            let n = Foundation.tanh(giRow[2 * h + j] + r * ghn)
            let hp = hPrevious?[j] ?? 0
            hRow[j] = (1 - z) * n + z * hp
            s[j] = r
            s[h + j] = z
            s[2 * h + j] = n
            s[3 * h + j] = ghn
          }
        }
      }
    }
    return Autograd.record("gru", out, [inputGates, weightHH, biasHH]) { grad in
      // Bases of the captured tensors (the closure keeps them alive).
      let wBase = w.storage.base + w.offset
      let outBase = out.storage.base
      let savedBase = saved.storage.base
      let dOut = grad.contiguous()
      let dOutBase = dOut.storage.base + dOut.offset
      // Gradients of the gate pre-activations: input side [B, T, 3H]; hidden side the same
      // except the n rows, which carry r ⊙ dn.
      let dGi = Tensor(validShape: [b, t, g3]) { _ in }
      let dGh = Tensor(validShape: [b, t, g3]) { _ in }
      // The state each frame started from, side by side: [B, T, H] (zero for the first).
      let previousStates = Tensor(validShape: [b, t, h]) { p in
        for i in 0..<b {
          for frame in 0..<t {
            let previous = reverse ? frame + 1 : frame - 1
            let row = p + (i * t + frame) * h
            if previous < 0 || previous >= t {
              row.update(repeating: 0, count: h)
            } else {
              row.update(from: outBase + (i * t + previous) * h, count: h)
            }
          }
        }
      }
      let dGiBase = dGi.storage.base
      let dGhBase = dGh.storage.base
      let previousBase = previousStates.storage.base
      var dh = [Float](repeating: 0, count: b * h)
      dh.withUnsafeMutableBufferPointer { dhp in
        let dhBase = dhp.baseAddress!
        for step in stride(from: t - 1, through: 0, by: -1) {
          let frame = reverse ? t - 1 - step : step
          for i in 0..<b {
            let s = savedBase + (i * t + frame) * 4 * h
            let dhRow = dhBase + i * h
            let dOutRow = dOutBase + (i * t + frame) * h
            let hp = previousBase + (i * t + frame) * h
            let dgi = dGiBase + (i * t + frame) * g3
            let dgh = dGhBase + (i * t + frame) * g3
            for j in 0..<h {
              let (r, z, n, ghn) = (s[j], s[h + j], s[2 * h + j], s[3 * h + j])
              let d = dhRow[j] + dOutRow[j]
              let dnPre = d * (1 - z) * (1 - n * n)
              let dzPre = d * (hp[j] - n) * z * (1 - z)
              let drPre = dnPre * ghn * r * (1 - r)
              dgi[j] = drPre
              dgi[h + j] = dzPre
              dgi[2 * h + j] = dnPre
              dgh[j] = drPre
              dgh[h + j] = dzPre
              dgh[2 * h + j] = dnPre * r
              dhRow[j] = d * z  // the direct path; the product below adds dgh·W_hh
            }
          }
          if step > 0 {
            sgemm(
              transA: false, transB: false, m: b, n: h, k: g3, a: dGhBase + frame * g3,
              lda: t * g3, b: wBase, ldb: h, c: dhBase, ldc: h, beta: 1)
          }
        }
      }
      // dW_hh = Σ_t dghᵀ·h_prev: one product over all B·T rows; db_hh = Σ dgh.
      let dW = Tensor(validShape: [g3, h]) { p in
        sgemm(
          transA: true, transB: false, m: g3, n: h, k: b * t, a: dGhBase, lda: g3,
          b: previousBase, ldb: h, c: p, ldc: h)
      }
      let dBias = Tensor(validShape: [g3]) { p in
        p.update(repeating: 0, count: g3)
        for row in 0..<(b * t) {
          let source = dGhBase + row * g3
          for j in 0..<g3 { p[j] += source[j] }
        }
      }
      return [dGi, dW, dBias]
    }
  }
}
