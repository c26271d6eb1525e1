import Foundation

// The recurrence of one GRU layer as one op, for all its directions. The input-side products
// of every frame are matrix products done before (`inputGates`, one per direction); here each
// frame costs one `h·W_hhᵀ` product per direction and vectorised passes over the gates. The
// directions of a layer are independent (both in a true bidirectional GRU and in PCM3's
// stepwise form), so they run concurrently, each with single-threaded BLAS: a [B, H]·[H, 3H]
// product is too small to split across threads, and two of them fill two cores. The backward
// runs through time once per direction, keeping the gates of the forward, and turns the
// per-frame hidden-side products into one product for `W_hh`'s gradient. Nothing is sliced
// per frame, so memory is O(T) in frames, not O(T²).

extension Tensor {
  /// PyTorch's GRU recurrence with gates stacked [r; z; n], for each direction d: for each
  /// frame t (in reverse order when `reverse[d]`), `gh = h·W_hhᵀ + b_hh`,
  /// `r = σ(gi_r + gh_r)`, `z = σ(gi_z + gh_z)`, `n = tanh(gi_n + r ⊙ gh_n)`,
  /// `h ← (1 − z) ⊙ n + z ⊙ h`, from h = 0. `inputGates[d]` is `W_ih·x + b_ih` for every
  /// frame, `[B, T, 3H]`; `weightsHH[d]` `[3H, H]`, `biasesHH[d]` `[3H]`. Returns every frame's
  /// states with the directions side by side, `[B, T, D·H]`.
  public static func gruLayer(
    inputGates: [Tensor], weightsHH: [Tensor], biasesHH: [Tensor], reverse: [Bool]
  ) throws -> Tensor {
    let directions = inputGates.count
    guard directions > 0, weightsHH.count == directions, biasesHH.count == directions,
      reverse.count == directions, weightsHH[0].rank == 2, inputGates[0].rank == 3
    else {
      throw TensorError(
        "gru", "expects the same number (at least 1) of input gates, weights, biases and orders")
    }
    let (b, t, h) = (inputGates[0].shape[0], inputGates[0].shape[1], weightsHH[0].shape[1])
    let g3 = 3 * h
    for d in 0..<directions {
      guard inputGates[d].shape == [b, t, g3], weightsHH[d].shape == [g3, h],
        biasesHH[d].shape == [g3], t > 0
      else {
        throw TensorError(
          "gru",
          "expects input gates [B, T > 0, 3H], weight_hh [3H, H] and bias_hh [3H] alike for "
            + "every direction, got \(shapeString(inputGates[d].shape)), "
            + "\(shapeString(weightsHH[d].shape)) and \(shapeString(biasesHH[d].shape))")
      }
    }
    let width = directions * h
    let gi = inputGates.map { $0.detached().contiguous() }
    let w = weightsHH.map { $0.detached().contiguous() }
    let bias = biasesHH.map { $0.detached().contiguous() }
    // Per direction: r, z, n and gh_n of every frame, [B, T, 4H], for the backward.
    let saved = (0..<directions).map { _ in Tensor(validShape: [b, t, 4 * h]) { _ in } }
    let out = Tensor(validShape: [b, t, width]) { _ in }
    let outBase = SendablePointer(out.storage.base)
    let giBases = gi.map {
      SendablePointer(UnsafeMutablePointer(mutating: $0.storage.base + $0.offset))
    }
    let wBases = w.map {
      SendablePointer(UnsafeMutablePointer(mutating: $0.storage.base + $0.offset))
    }
    let biasBases = bias.map {
      SendablePointer(UnsafeMutablePointer(mutating: $0.storage.base + $0.offset))
    }
    let savedBases = saved.map { SendablePointer($0.storage.base) }
    let concurrent = directions > 1 && Threading.threadCount > 1
    Threading.withSingleThreadedBLAS(concurrent) {
      parallelChunks(directions, grain: 1) { range in
        for d in range {
          gruForward(
            b: b, t: t, h: h, width: width, column: d * h, reverse: reverse[d],
            gi: giBases[d].base, w: wBases[d].base, bias: biasBases[d].base,
            out: outBase.base, saved: savedBases[d].base)
        }
      }
    }
    return Autograd.record("gru", out, inputGates + weightsHH + biasesHH) { grad in
      let dOut = grad.contiguous()
      let dOutBase = SendablePointer(
        UnsafeMutablePointer(mutating: dOut.storage.base + dOut.offset))
      let outBase = SendablePointer(out.storage.base)
      let wBases = w.map {
        SendablePointer(UnsafeMutablePointer(mutating: $0.storage.base + $0.offset))
      }
      let savedBases = saved.map { SendablePointer($0.storage.base) }
      let dGi = (0..<directions).map { _ in Tensor(validShape: [b, t, g3]) { _ in } }
      let dW = (0..<directions).map { _ in Tensor(validShape: [g3, h]) { _ in } }
      let dBias = (0..<directions).map { _ in Tensor(validShape: [g3]) { _ in } }
      let dGiBases = dGi.map { SendablePointer($0.storage.base) }
      let dWBases = dW.map { SendablePointer($0.storage.base) }
      let dBiasBases = dBias.map { SendablePointer($0.storage.base) }
      withExtendedLifetime((dOut, w, saved, out)) {
        Threading.withSingleThreadedBLAS(concurrent) {
          parallelChunks(directions, grain: 1) { range in
            for d in range {
              gruBackward(
                b: b, t: t, h: h, width: width, column: d * h, reverse: reverse[d],
                dOut: dOutBase.base, w: wBases[d].base, out: outBase.base,
                saved: savedBases[d].base, dGi: dGiBases[d].base, dW: dWBases[d].base,
                dBias: dBiasBases[d].base)
            }
          }
        }
      }
      return dGi + dW + dBias
    }
  }

  /// The single-direction form of `gruLayer`: `[B, T, 3H]` input gates -> `[B, T, H]`.
  public static func gruRecurrence(
    inputGates: Tensor, weightHH: Tensor, biasHH: Tensor, reverse: Bool = false
  ) throws -> Tensor {
    try gruLayer(
      inputGates: [inputGates], weightsHH: [weightHH], biasesHH: [biasHH], reverse: [reverse])
  }
}

/// The forward of one direction: states into columns `column ..< column + h` of `out`
/// `[b, t, width]`; r, z, n, gh_n of every frame into `saved` `[b, t, 4h]`.
private func gruForward(
  b: Int, t: Int, h: Int, width: Int, column: Int, reverse: Bool,
  gi: UnsafeMutablePointer<Float>, w: UnsafeMutablePointer<Float>,
  bias: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
  saved: UnsafeMutablePointer<Float>
) {
  let g3 = 3 * h
  let gh = UnsafeMutablePointer<Float>.allocate(capacity: b * g3)
  // The state before the first frame: zero.
  let zero = UnsafeMutablePointer<Float>.allocate(capacity: h)
  zero.initialize(repeating: 0, count: h)
  defer {
    gh.deallocate()
    zero.deallocate()
  }
  for step in 0..<t {
    let frame = reverse ? t - 1 - step : step
    let previous = reverse ? frame + 1 : frame - 1
    for i in 0..<b { (gh + i * g3).update(from: bias, count: g3) }
    if step > 0 {
      sgemm(
        transA: false, transB: true, m: b, n: g3, k: h, a: out + previous * width + column,
        lda: t * width, b: w, ldb: h, c: gh, ldc: g3, beta: 1)
    }
    for i in 0..<b {
      let giRow = gi + (i * t + frame) * g3
      let ghRow = gh + i * g3
      let hRow = out + (i * t + frame) * width + column
      let hp = step > 0 ? out + (i * t + previous) * width + column : zero
      // The gates go in passes of at most three pointers each, over the saved row
      // [r | z | n | gh_n], so that each loop vectorises (one loop with five pointers and
      // four stores stays scalar).
      let s = saved + (i * t + frame) * 4 * h
      let (rz, n, ghn) = (s, s + 2 * h, s + 3 * h)
      for j in 0..<(2 * h) { rz[j] = giRow[j] + ghRow[j] }
      for j in 0..<(2 * h) { rz[j] = VectorMath.sigmoid(rz[j]) }
      ghn.update(from: ghRow + 2 * h, count: h)
      for j in 0..<h { n[j] = giRow[2 * h + j] + rz[j] * ghn[j] }
      for j in 0..<h { n[j] = VectorMath.tanh(n[j]) }
      for j in 0..<h { hRow[j] = (1 - rz[h + j]) * n[j] + rz[h + j] * hp[j] }
    }
  }
}

/// The backward of one direction: gradients of its input gates `dGi` `[b, t, 3h]`, of
/// `W_hh` `dW` `[3h, h]` and of `b_hh` `dBias` `[3h]`, from `dOut` `[b, t, width]` (its
/// columns `column ..< column + h`).
private func gruBackward(
  b: Int, t: Int, h: Int, width: Int, column: Int, reverse: Bool,
  dOut: UnsafeMutablePointer<Float>, w: UnsafeMutablePointer<Float>,
  out: UnsafeMutablePointer<Float>, saved: UnsafeMutablePointer<Float>,
  dGi: UnsafeMutablePointer<Float>, dW: UnsafeMutablePointer<Float>,
  dBias: UnsafeMutablePointer<Float>
) {
  let g3 = 3 * h
  // The hidden side's gradients, as dGi except the n rows, which carry r ⊙ dn; and the state
  // each frame started from (zero for the first): [b, t, 3h] and [b, t, h].
  let dGh = UnsafeMutablePointer<Float>.allocate(capacity: b * t * g3)
  let previousStates = UnsafeMutablePointer<Float>.allocate(capacity: b * t * h)
  let dh = UnsafeMutablePointer<Float>.allocate(capacity: b * h)
  defer {
    dGh.deallocate()
    previousStates.deallocate()
    dh.deallocate()
  }
  dh.initialize(repeating: 0, count: b * h)
  for i in 0..<b {
    for frame in 0..<t {
      let previous = reverse ? frame + 1 : frame - 1
      let row = previousStates + (i * t + frame) * h
      if previous < 0 || previous >= t {
        row.initialize(repeating: 0, count: h)
      } else {
        row.initialize(from: out + (i * t + previous) * width + column, count: h)
      }
    }
  }
  for step in stride(from: t - 1, through: 0, by: -1) {
    let frame = reverse ? t - 1 - step : step
    for i in 0..<b {
      let s = saved + (i * t + frame) * 4 * h
      let dhRow = dh + i * h
      let dOutRow = dOut + (i * t + frame) * width + column
      let hp = previousStates + (i * t + frame) * h
      let dgi = dGi + (i * t + frame) * g3
      let dgh = dGh + (i * t + frame) * g3
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
        transA: false, transB: false, m: b, n: h, k: g3, a: dGh + frame * g3, lda: t * g3, b: w,
        ldb: h, c: dh, ldc: h, beta: 1)
    }
  }
  // dW_hh = Σ_t dghᵀ·h_prev: one product over all b·t rows; db_hh = Σ dgh.
  sgemm(
    transA: true, transB: false, m: g3, n: h, k: b * t, a: dGh, lda: g3, b: previousStates,
    ldb: h, c: dW, ldc: h)
  dBias.initialize(repeating: 0, count: g3)
  for row in 0..<(b * t) {
    let source = dGh + row * g3
    for j in 0..<g3 { dBias[j] += source[j] }
  }
}
