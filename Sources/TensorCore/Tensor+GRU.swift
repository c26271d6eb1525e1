import Foundation

// One GRU layer as one op, for all its directions. Every frame's input gates are one product
// per direction; then each frame costs one `h·W_hhᵀ` product per direction and vectorised
// passes over the gates. The directions of a layer are independent (both in a true
// bidirectional GRU and in PCM3's stepwise form), so they run concurrently, each with
// single-threaded BLAS: a [B, H]·[H, 3H] product is too small to split across threads, and two
// of them fill two cores.
//
// Memory. For backward the op keeps its input and output (which the layers on either side hold
// anyway) and the reset gate r of every frame: H floats a frame and direction, where r, z, n and
// gh_n would take 4H. The backward first recomputes the rest for all frames at once (every
// frame's previous state is known by then): gh_z and gh_n in one product with the output
// shifted by a frame, gi_z and gi_n in two products with the input, with the same bits as the
// forward's. They go into the input gates' gradient and one [B·T, H] scratch, which the pass
// through time overwrites with the gradients frame by frame. `W_hh`'s gradient is then one
// product of the hidden side's gradients with the output shifted by a frame. Nothing is sliced
// per frame: memory is O(T) in frames. The trade, measured, is in docs/internals.md.

extension Tensor {
  /// One layer of PyTorch's GRU with gates stacked [r; z; n], for each direction d: for each
  /// frame t (in reverse order when `reverse[d]`), `gi = W_ih·x_t + b_ih`,
  /// `gh = W_hh·h + b_hh`, `r = σ(gi_r + gh_r)`, `z = σ(gi_z + gh_z)`,
  /// `n = tanh(gi_n + r ⊙ gh_n)`, `h ← (1 − z) ⊙ n + z ⊙ h`, from h = 0. `x` is `[B, T, I]`;
  /// `weightsIH[d]` `[3H, I]`, `biasesIH[d]` `[3H]`, `weightsHH[d]` `[3H, H]`,
  /// `biasesHH[d]` `[3H]`. Returns every frame's states with the directions side by side,
  /// `[B, T, D·H]`.
  public static func gruLayer(
    _ x: Tensor, weightsIH: [Tensor], biasesIH: [Tensor], weightsHH: [Tensor],
    biasesHH: [Tensor], reverse: [Bool]
  ) throws -> Tensor {
    let directions = weightsHH.count
    guard directions > 0, weightsIH.count == directions, biasesIH.count == directions,
      biasesHH.count == directions, reverse.count == directions, weightsHH[0].rank == 2
    else {
      throw TensorError(
        "gru", "expects the same number (at least 1) of weights, biases and orders")
    }
    let h = weightsHH[0].shape[1]
    guard x.rank == 3, x.shape[1] > 0 else {
      throw TensorError("gru", "expects an input [B, T > 0, I], got \(shapeString(x.shape))")
    }
    let (b, t, inputs) = (x.shape[0], x.shape[1], x.shape[2])
    let g3 = 3 * h
    for d in 0..<directions {
      guard weightsIH[d].shape == [g3, inputs], biasesIH[d].shape == [g3],
        weightsHH[d].shape == [g3, h], biasesHH[d].shape == [g3]
      else {
        throw TensorError(
          "gru",
          "expects weight_ih [3H, \(inputs)], bias_ih [3H], weight_hh [3H, H] and bias_hh [3H] "
            + "alike for every direction, got \(shapeString(weightsIH[d].shape)), "
            + "\(shapeString(biasesIH[d].shape)), \(shapeString(weightsHH[d].shape)) and "
            + "\(shapeString(biasesHH[d].shape))")
      }
    }
    let width = directions * h
    let input = x.detached().contiguous()
    let wIH = weightsIH.map { $0.detached().contiguous() }
    let bIH = biasesIH.map { $0.detached().contiguous() }
    let wHH = weightsHH.map { $0.detached().contiguous() }
    let bHH = biasesHH.map { $0.detached().contiguous() }
    // The input side of every frame: one product per direction.
    let gi = try (0..<directions).map { d in
      try Autograd.noGrad { try linear(input, weight: wIH[d], bias: bIH[d]) }
    }
    // Per direction: r of every frame, [B, T, H], for the backward; without one (inference, a
    // momentum encoder), of the current frame only, [B, H].
    let recording =
      Autograd.isRecording
      && ([x] + weightsIH + biasesIH + weightsHH + biasesHH).contains { $0.requiresGrad }
    let saved = (0..<directions).map { _ in
      Tensor(validShape: recording ? [b, t, h] : [b, h]) { _ in }
    }
    let out = Tensor(validShape: [b, t, width]) { _ in }
    let outBase = SendablePointer(out.storage.base)
    let (giBases, wBases, biasBases) = (gi.map(\.address), wHH.map(\.address), bHH.map(\.address))
    let savedBases = saved.map(\.address)
    let concurrent = directions > 1 && Threading.threadCount > 1
    withExtendedLifetime((gi, wHH, bHH)) {
      Threading.withSingleThreadedBLAS(concurrent) {
        parallelChunks(directions, grain: 1) { range in
          for d in range {
            gruForward(
              b: b, t: t, h: h, width: width, column: d * h, reverse: reverse[d],
              gi: giBases[d].base, w: wBases[d].base, bias: biasBases[d].base,
              out: outBase.base, saved: savedBases[d].base, everyFrame: recording)
          }
        }
      }
    }
    return Autograd.record("gru", out, [x] + weightsIH + biasesIH + weightsHH + biasesHH) {
      grad in
      let dOut = grad.contiguous()
      let dGi = (0..<directions).map { _ in Tensor(validShape: [b, t, g3]) { _ in } }
      let dWHH = (0..<directions).map { _ in Tensor(validShape: [g3, h]) { _ in } }
      let dBHH = (0..<directions).map { _ in Tensor(validShape: [g3]) { _ in } }
      let dBIH = (0..<directions).map { _ in Tensor(validShape: [g3]) { _ in } }
      let dBIHBases = dBIH.map(\.address)
      let (dGiBases, dWBases, dBiasBases) = (
        dGi.map(\.address), dWHH.map(\.address), dBHH.map(\.address)
      )
      let (wBases, biasBases) = (wHH.map(\.address), bHH.map(\.address))
      let (wIHBases, bIHBases) = (wIH.map(\.address), bIH.map(\.address))
      let (dOutBase, inputBase, outBase) = (dOut.address, input.address, out.address)
      let savedBases = saved.map(\.address)
      withExtendedLifetime((dOut, input, wIH, bIH, wHH, bHH, saved, out)) {
        Threading.withSingleThreadedBLAS(concurrent) {
          parallelChunks(directions, grain: 1) { range in
            for d in range {
              gruBackward(
                b: b, t: t, h: h, width: width, column: d * h, reverse: reverse[d],
                dOut: dOutBase.base, wHH: wBases[d].base, bHH: biasBases[d].base,
                x: inputBase.base, inputs: inputs, wIH: wIHBases[d].base, bIH: bIHBases[d].base,
                out: outBase.base, saved: savedBases[d].base, dGi: dGiBases[d].base,
                dW: dWBases[d].base, dBias: dBiasBases[d].base, dBiasIH: dBIHBases[d].base)
            }
          }
        }
      }
      // The rest of the input side, as `linear`'s backward: dx = Σ_d dGi·W_ih, dW_ih = dGiᵀ·x.
      let rows = b * t
      var dx: Tensor?
      if x.requiresGrad {
        let gradient = Tensor(validShape: [b, t, inputs]) { _ in }
        withExtendedLifetime((dGi, wIH)) {
          for d in 0..<directions {
            sgemm(
              transA: false, transB: false, m: rows, n: inputs, k: g3, a: dGi[d].address.base,
              lda: g3, b: wIH[d].address.base, ldb: inputs, c: gradient.address.base, ldc: inputs,
              beta: d == 0 ? 0 : 1)
          }
        }
        dx = gradient
      }
      let dWIH = dGi.map {
        productWeightGradient($0, input: input, rows: rows, outputs: g3, inputs: inputs)
      }
      return [dx] + dWIH + dBIH + dWHH + dBHH
    }
  }
}

/// The forward of one direction: states into columns `column ..< column + h` of `out`
/// `[b, t, width]`; r of every frame into `saved` `[b, t, h]` when `everyFrame`, else of the
/// current frame into `saved` `[b, h]`.
private func gruForward(
  b: Int, t: Int, h: Int, width: Int, column: Int, reverse: Bool,
  gi: UnsafeMutablePointer<Float>, w: UnsafeMutablePointer<Float>,
  bias: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
  saved: UnsafeMutablePointer<Float>, everyFrame: Bool
) {
  let g3 = 3 * h
  let gh = UnsafeMutablePointer<Float>.allocate(capacity: b * g3)
  // z and n of the current frame, and the state before the first frame: zero.
  let z = UnsafeMutablePointer<Float>.allocate(capacity: h)
  let n = UnsafeMutablePointer<Float>.allocate(capacity: h)
  let zero = UnsafeMutablePointer<Float>.allocate(capacity: h)
  zero.initialize(repeating: 0, count: h)
  defer {
    gh.deallocate()
    z.deallocate()
    n.deallocate()
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
      // The gates go in passes of at most three pointers each, so that each loop vectorises
      // (one loop with five pointers and four stores stays scalar).
      let r = saved + (everyFrame ? i * t + frame : i) * h
      let (giZ, ghZ) = (giRow + h, ghRow + h)
      let (giN, ghN) = (giRow + 2 * h, ghRow + 2 * h)
      for j in 0..<h { r[j] = giRow[j] + ghRow[j] }
      for j in 0..<h { r[j] = VectorMath.sigmoid(r[j]) }
      for j in 0..<h { z[j] = giZ[j] + ghZ[j] }
      for j in 0..<h { z[j] = VectorMath.sigmoid(z[j]) }
      for j in 0..<h { n[j] = giN[j] + r[j] * ghN[j] }
      for j in 0..<h { n[j] = VectorMath.tanh(n[j]) }
      for j in 0..<h { hRow[j] = (1 - z[j]) * n[j] + z[j] * hp[j] }
    }
  }
}

/// The backward of one direction's recurrence: the gradient of its input gates `dGi`
/// `[b, t, 3h]`, of `W_hh` `dW` `[3h, h]`, of `b_hh` `dBias` and of `b_ih` `dBiasIH` `[3h]`,
/// from `dOut` `[b, t, width]` (its columns `column ..< column + h`). `saved` holds r of every frame,
/// `[b, t, h]`; z and n are recomputed from `gi = x·W_ihᵀ + b_ih` (x `[b, t, inputs]`) and
/// `gh = h·W_hhᵀ + b_hh` as in the forward, with the same bits.
private func gruBackward(
  b: Int, t: Int, h: Int, width: Int, column: Int, reverse: Bool,
  dOut: UnsafeMutablePointer<Float>, wHH: UnsafeMutablePointer<Float>,
  bHH: UnsafeMutablePointer<Float>, x: UnsafeMutablePointer<Float>, inputs: Int,
  wIH: UnsafeMutablePointer<Float>, bIH: UnsafeMutablePointer<Float>,
  out: UnsafeMutablePointer<Float>, saved: UnsafeMutablePointer<Float>,
  dGi: UnsafeMutablePointer<Float>, dW: UnsafeMutablePointer<Float>,
  dBias: UnsafeMutablePointer<Float>, dBiasIH: UnsafeMutablePointer<Float>
) {
  let g3 = 3 * h
  let rows = b * t
  // Row ρ = i·t + frame of `out` is that frame's state; the state a frame started from is
  // row ρ − 1 (ρ + 1 in reverse), or zero on each sequence's first frame.
  let shift = reverse ? 1 : -1
  let firstFrame = reverse ? t - 1 : 0
  // Each row of dGi starts as [gi_z | gh_z | gh_n] of its frame, and a row of `nBuffer` as
  // gi_n; each becomes z | · | · and n, then the gradients.
  // gh_z, gh_n = h_prev·W_hzᵀ + b_hz, h_prev·W_hnᵀ + b_hn: the bias, then one product over
  // all rows with the state shifted by a frame, then the bias alone again on each sequence's
  // first frame (whose shifted row belongs to another sample or is outside).
  let ghZN = dGi + h
  for row in 0..<rows { (ghZN + row * g3).update(from: bHH + h, count: 2 * h) }
  if rows > 1 {
    let (target, source) = reverse ? (0, 1) : (1, 0)
    sgemm(
      transA: false, transB: true, m: rows - 1, n: 2 * h, k: h,
      a: out + source * width + column, lda: width, b: wHH + h * h, ldb: h,
      c: ghZN + target * g3, ldc: g3, beta: 1)
  }
  for i in 0..<b { (ghZN + (i * t + firstFrame) * g3).update(from: bHH + h, count: 2 * h) }
  // gi_z and gi_n, as the forward's input product computed them.
  let nBuffer = Tensor(validShape: [rows, h]) { _ in }
  let gin = nBuffer.storage.base
  for row in 0..<rows {
    (dGi + row * g3).update(from: bIH + h, count: h)
    (gin + row * h).update(from: bIH + 2 * h, count: h)
  }
  sgemm(
    transA: false, transB: true, m: rows, n: h, k: inputs, a: x, lda: inputs,
    b: wIH + h * inputs, ldb: inputs, c: dGi, ldc: g3, beta: 1)
  sgemm(
    transA: false, transB: true, m: rows, n: h, k: inputs, a: x, lda: inputs,
    b: wIH + 2 * h * inputs, ldb: inputs, c: gin, ldc: h, beta: 1)
  let zero = UnsafeMutablePointer<Float>.allocate(capacity: h)
  let dh = UnsafeMutablePointer<Float>.allocate(capacity: b * h)
  let firstRows = UnsafeMutablePointer<Float>.allocate(capacity: b * g3)
  defer {
    zero.deallocate()
    dh.deallocate()
    firstRows.deallocate()
  }
  zero.initialize(repeating: 0, count: h)
  dh.initialize(repeating: 0, count: b * h)
  for step in stride(from: t - 1, through: 0, by: -1) {
    let frame = reverse ? t - 1 - step : step
    for i in 0..<b {
      let row = i * t + frame
      let (r, n, dgi) = (saved + row * h, gin + row * h, dGi + row * g3)
      let dhRow = dh + i * h
      let dOutRow = dOut + row * width + column
      let hp = frame == firstFrame ? zero : out + (row + shift) * width + column
      // z = σ(gi_z + gh_z) and n = tanh(gi_n + r ⊙ gh_n), in the forward's passes.
      let (z, ghZ, ghN) = (dgi, dgi + h, dgi + 2 * h)
      for j in 0..<h { z[j] = z[j] + ghZ[j] }
      for j in 0..<h { z[j] = VectorMath.sigmoid(z[j]) }
      for j in 0..<h { n[j] = n[j] + r[j] * ghN[j] }
      for j in 0..<h { n[j] = VectorMath.tanh(n[j]) }
      // dGi's row takes the hidden side's gradients [dr | dz | dn ⊙ r] (for the products
      // below), n's row takes dn (moved into dGi at the end).
      for j in 0..<h {
        let (rj, zj, nj, ghnj) = (r[j], z[j], n[j], ghN[j])
        let d = dhRow[j] + dOutRow[j]
        let dnPre = d * (1 - zj) * (1 - nj * nj)
        let dzPre = d * (hp[j] - nj) * zj * (1 - zj)
        let drPre = dnPre * ghnj * rj * (1 - rj)
        dgi[j] = drPre
        dgi[h + j] = dzPre
        dgi[2 * h + j] = dnPre * rj
        n[j] = dnPre
        dhRow[j] = d * zj  // the direct path; the product below adds dgh·W_hh
      }
    }
    if step > 0 {
      sgemm(
        transA: false, transB: false, m: b, n: h, k: g3, a: dGi + frame * g3, lda: t * g3,
        b: wHH, ldb: h, c: dh, ldc: h, beta: 1)
    }
  }
  // dW_hh = Σ dghᵀ·h_prev: with the first frames' rows (whose h_prev is zero) cleared for the
  // while, one product pairs every other row with the state shifted by a frame.
  for i in 0..<b {
    let row = dGi + (i * t + firstFrame) * g3
    (firstRows + i * g3).update(from: row, count: g3)
    row.update(repeating: 0, count: g3)
  }
  if rows > 1 {
    let (gradient, state) = reverse ? (0, 1) : (1, 0)
    sgemm(
      transA: true, transB: false, m: g3, n: h, k: rows - 1, a: dGi + gradient * g3, lda: g3,
      b: out + state * width + column, ldb: width, c: dW, ldc: h)
  } else {
    dW.initialize(repeating: 0, count: g3 * h)
  }
  for i in 0..<b { (dGi + (i * t + firstFrame) * g3).update(from: firstRows + i * g3, count: g3) }
  // One pass over the rows, each hot once: db_hh = Σ dgh; dGi's n columns take dn; db_ih = Σ dGi
  // (summed in double, as `sum(axes:)` sums a bias's gradient).
  let sumIH = UnsafeMutablePointer<Double>.allocate(capacity: g3)
  defer { sumIH.deallocate() }
  sumIH.initialize(repeating: 0, count: g3)
  dBias.initialize(repeating: 0, count: g3)
  for row in 0..<rows {
    let gradient = dGi + row * g3
    for j in 0..<g3 { dBias[j] += gradient[j] }
    (gradient + 2 * h).update(from: gin + row * h, count: h)
    for j in 0..<g3 { sumIH[j] += Double(gradient[j]) }
  }
  for j in 0..<g3 { dBiasIH[j] = Float(sumIH[j]) }
  withExtendedLifetime(nBuffer) {}
}
