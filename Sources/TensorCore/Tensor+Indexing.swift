// Slicing, gathering and scattering along an axis, and one-hot encoding.

/// One entry of a subscript: an index (drops the axis), a NumPy range with a step, the whole
/// axis, or a new size-1 axis.
public enum TensorIndex: Equatable, Sendable {
  /// A single position; negative counts from the end. The axis is removed.
  case index(Int)
  /// `start:end:step` with NumPy defaults for nil bounds; the step may be negative, not 0.
  case range(Int?, Int?, Int)
  /// The whole axis (`:`).
  case all
  /// A new axis of size 1 (`None` in NumPy).
  case newAxis
}

extension Tensor {
  /// The layout (shape, strides, offset) that `indices` select from a tensor of this layout.
  package static func sliceLayout(
    shape: [Int], strides: [Int], offset: Int, indices: [TensorIndex]
  ) throws -> (shape: [Int], strides: [Int], offset: Int) {
    let consumed = indices.filter { $0 != .newAxis }.count
    guard consumed <= shape.count else {
      throw TensorError(
        "index", "\(consumed) indices for a tensor of shape \(shapeString(shape))")
    }
    var outShape: [Int] = []
    var outStrides: [Int] = []
    var position = offset
    var axis = 0
    for entry in indices + [TensorIndex](repeating: .all, count: shape.count - consumed) {
      switch entry {
      case .newAxis:
        outShape.append(1)
        outStrides.append(0)
        continue
      case .index(let i):
        let n = shape[axis]
        let resolved = i < 0 ? i + n : i
        guard resolved >= 0, resolved < n else {
          throw TensorError(
            "index",
            "index \(i) is out of range for axis \(axis) of size \(n) in "
              + "\(shapeString(shape))")
        }
        position += resolved * strides[axis]
      case .all:
        outShape.append(shape[axis])
        outStrides.append(strides[axis])
      case .range(let start, let end, let step):
        guard step != 0 else { throw TensorError("index", "slice step cannot be 0") }
        let n = shape[axis]
        func resolve(_ v: Int?, _ fallback: Int, _ low: Int, _ high: Int) -> Int {
          guard let v else { return fallback }
          return Swift.min(Swift.max(v < 0 ? v + n : v, low), high)
        }
        let length: Int
        let first: Int
        if step > 0 {
          first = resolve(start, 0, 0, n)
          let stop = resolve(end, n, 0, n)
          length = stop > first ? (stop - first + step - 1) / step : 0
        } else {
          first = resolve(start, n - 1, -1, n - 1)
          let stop = resolve(end, -1, -1, n - 1)
          length = first > stop ? (first - stop - step - 1) / -step : 0
        }
        if length > 0 { position += first * strides[axis] }
        outShape.append(length)
        outStrides.append(strides[axis] * step)
      }
      axis += 1
    }
    return (outShape, outStrides, position)
  }

  /// The elements that `indices` select (a view). Fewer indices than axes leave the rest whole.
  public subscript(_ indices: [TensorIndex]) -> Tensor {
    get throws {
      let layout = try Tensor.sliceLayout(
        shape: shape, strides: strides, offset: offset, indices: indices)
      let out = view(shape: layout.shape, strides: layout.strides, offset: layout.offset)
      let inputShape = shape
      return Autograd.record("slice", out, [self]) { g in
        // Scatter the gradient into zeros at the positions the slice read.
        let base = Shape.contiguousStrides(inputShape)
        let target = try Tensor.sliceLayout(
          shape: inputShape, strides: base, offset: 0, indices: indices)
        let source = g.contiguous()
        let dx = Tensor(validShape: inputShape) { dst in
          dst.initialize(repeating: 0, count: inputShape.reduce(1, *))
          Kernels.assign(
            to: dst, strides: target.strides, offset: target.offset, shape: target.shape,
            from: source.storage.base, strides: Shape.contiguousStrides(target.shape),
            offset: source.offset)
        }
        return [dx]
      }
    }
  }

  /// The elements that `indices` select (a view).
  public subscript(_ indices: TensorIndex...) -> Tensor {
    get throws { try self[indices] }
  }

  /// Writes `value` (broadcast to the selected shape) into the positions `indices` select.
  /// Copies the buffer first when it is shared (copy-on-write).
  public mutating func assign(_ value: Tensor, at indices: [TensorIndex]) throws {
    let selected = try Tensor.sliceLayout(
      shape: shape, strides: Shape.contiguousStrides(shape), offset: 0, indices: indices)
    let broadcast = try Shape.broadcast(selected.shape, value.shape, op: "assign")
    guard broadcast == selected.shape else {
      throw TensorError(
        "assign",
        "value of shape \(shapeString(value.shape)) does not fit the selection of shape "
          + "\(shapeString(selected.shape))")
    }
    let valueStrides = Shape.broadcastStrides(
      shape: value.shape, strides: value.strides, to: selected.shape)
    let source = value.storage
    let sourceOffset = value.offset
    withUnsafeMutableBufferPointer { buffer in
      guard let base = buffer.baseAddress else { return }
      Kernels.assign(
        to: base, strides: selected.strides, offset: selected.offset, shape: selected.shape,
        from: source.base, strides: valueStrides, offset: sourceOffset)
    }
  }

  /// Reads integer positions from an index tensor, checking each against `0..<limit`.
  package static func integerIndices(_ index: Tensor, limit: Int, op: String) throws -> [Int] {
    try index.withUnsafeBufferPointer { values in
      try values.map { v in
        guard v == v.rounded(), v >= 0, v < Float(limit) else {
          throw TensorError(op, "index \(v) is not an integer in 0..<\(limit)")
        }
        return Int(v)
      }
    }
  }

  /// Checks the `gather`/`scatter_add` contract: same rank, and every non-`axis` size of the
  /// index equal to the data's (the form masking uses).
  private func checkIndexShape(_ index: Tensor, axis: Int, op: String) throws {
    guard index.rank == rank,
      (0..<rank).allSatisfy({ $0 == axis || index.shape[$0] == shape[$0] })
    else {
      throw TensorError(
        op,
        "index of shape \(shapeString(index.shape)) must match \(shapeString(shape)) on every "
          + "axis except \(axis)")
    }
  }

  /// `out[..., j, ...] = self[..., index[..., j, ...], ...]` along `axis` (PyTorch `gather`);
  /// the index has this tensor's shape except along `axis`.
  public func gather(axis: Int, index: Tensor) throws -> Tensor {
    let a = try Shape.normalizeAxis(axis, rank: rank, op: "gather")
    try checkIndexShape(index, axis: a, op: "gather")
    let positions = try Tensor.integerIndices(index, limit: shape[a], op: "gather")
    let (outer, n, inner) = (shape[..<a].reduce(1, *), shape[a], shape[(a + 1)...].reduce(1, *))
    let k = index.shape[a]
    let source = contiguous()
    let out = Tensor(validShape: index.shape) { dst in
      let src = source.storage.base + source.offset
      for o in 0..<outer {
        for j in 0..<k {
          for i in 0..<inner {
            let flat = (o * k + j) * inner + i
            dst[flat] = src[(o * n + positions[flat]) * inner + i]
          }
        }
      }
    }
    let inputShape = shape
    let detachedIndex = index.detached()
    return Autograd.record("gather", out, [self]) { g in
      [try Tensor.zeros(inputShape).scatterAdd(axis: a, index: detachedIndex, source: g)]
    }
  }

  /// Adds `source[..., j, ...]` into `self[..., index[..., j, ...], ...]` along `axis`
  /// (PyTorch `scatter_add`); index and source share a shape.
  public func scatterAdd(axis: Int, index: Tensor, source: Tensor) throws -> Tensor {
    let a = try Shape.normalizeAxis(axis, rank: rank, op: "scatter_add")
    try checkIndexShape(index, axis: a, op: "scatter_add")
    guard source.shape == index.shape else {
      throw TensorError(
        "scatter_add",
        "source of shape \(shapeString(source.shape)) must match the index shape "
          + "\(shapeString(index.shape))")
    }
    let positions = try Tensor.integerIndices(index, limit: shape[a], op: "scatter_add")
    let (outer, n, inner) = (shape[..<a].reduce(1, *), shape[a], shape[(a + 1)...].reduce(1, *))
    let k = index.shape[a]
    let base = contiguous()
    let values = source.contiguous()
    let out = Tensor(validShape: shape) { dst in
      dst.update(from: base.storage.base + base.offset, count: base.count)
      let src = values.storage.base + values.offset
      for o in 0..<outer {
        for j in 0..<k {
          for i in 0..<inner {
            let flat = (o * k + j) * inner + i
            dst[(o * n + positions[flat]) * inner + i] += src[flat]
          }
        }
      }
    }
    let detachedIndex = index.detached()
    return Autograd.record("scatter_add", out, [self, source]) { g in
      [g, source.requiresGrad ? try g.gather(axis: a, index: detachedIndex) : nil]
    }
  }

  /// The slices at `indices` along `axis`, in that order (repeats allowed; negative counts
  /// from the end).
  public func indexSelect(axis: Int, indices: [Int]) throws -> Tensor {
    let a = try Shape.normalizeAxis(axis, rank: rank, op: "index_select")
    let n = shape[a]
    let resolved = try indices.map { i in
      let r = i < 0 ? i + n : i
      guard r >= 0, r < n else {
        throw TensorError(
          "index_select", "index \(i) is out of range for axis \(axis) of size \(n)")
      }
      return r
    }
    let (outer, inner) = (shape[..<a].reduce(1, *), shape[(a + 1)...].reduce(1, *))
    var outShape = shape
    outShape[a] = resolved.count
    let source = contiguous()
    let count = resolved.count
    // Rows of the output, split across threads: each is one row of the input.
    let grain = Swift.max(1, 32_768 / Swift.max(inner, 1))
    let out = Tensor(validShape: outShape) { dst in
      let (src, target) = (
        source.address, SendablePointer(dst)
      )
      parallelChunks(outer * count, grain: grain) { rows in
        for row in rows {
          let (o, j) = row.quotientAndRemainder(dividingBy: count)
          (target.base + row * inner).update(
            from: src.base + (o * n + resolved[j]) * inner, count: inner)
        }
      }
    }
    let inputShape = shape
    return Autograd.record("index_select", out, [self]) { g in
      // Whether no index repeats: then each input row takes at most one output row's
      // gradient, and the rows can be written in any order, on any thread.
      var picked = [Int](repeating: -1, count: n)
      var distinct = true
      for (j, r) in resolved.enumerated() {
        if picked[r] >= 0 { distinct = false }
        picked[r] = j
      }
      let pickedBy = picked
      let gc = g.contiguous()
      let dx = Tensor(validShape: inputShape) { dst in
        let (from, target) = (gc.address, SendablePointer(dst))
        guard distinct else {
          dst.initialize(repeating: 0, count: outer * n * inner)
          for o in 0..<outer {
            for (j, r) in resolved.enumerated() {
              let gradient = from.base + (o * count + j) * inner
              let to = dst + (o * n + r) * inner
              for i in 0..<inner { to[i] += gradient[i] }
            }
          }
          return
        }
        // Each input row: 0 + its gradient row (0 + −0 is +0, as the addition into zeros
        // gives), or 0 where no index names it.
        parallelChunks(outer * n, grain: grain) { rows in
          for row in rows {
            let (o, r) = row.quotientAndRemainder(dividingBy: n)
            let to = target.base + row * inner
            let j = pickedBy[r]
            if j < 0 {
              to.initialize(repeating: 0, count: inner)
            } else {
              let gradient = from.base + (o * count + j) * inner
              for i in 0..<inner { to[i] = 0 + gradient[i] }
            }
          }
        }
      }
      return [dx]
    }
  }

  /// One-hot rows: a tensor of this shape plus a last axis of `classes`, 1 at each index.
  public func oneHot(classes: Int) throws -> Tensor {
    guard classes > 0 else {
      throw TensorError("one_hot", "classes must be positive, got \(classes)")
    }
    let labels = try Tensor.integerIndices(self, limit: classes, op: "one_hot")
    return try Tensor(shape: shape + [classes], op: "one_hot") { dst in
      for i in dst.indices { dst[i] = 0 }
      for (row, label) in labels.enumerated() { dst[row * classes + label] = 1 }
    }
  }
}

extension Kernels {
  /// `dst[layout] = src[layout]` element by element over `shape` (both strided).
  package static func assign(
    to dst: UnsafeMutablePointer<Float>, strides dstStrides: [Int], offset dstOffset: Int,
    shape: [Int], from src: UnsafeMutablePointer<Float>, strides srcStrides: [Int],
    offset srcOffset: Int
  ) {
    forEachRun(shape: shape, strides: [dstStrides, srcStrides], offsets: [dstOffset, srcOffset]) {
      offsets, steps, n in
      let d = dst + offsets[0]
      let s = src + offsets[1]
      let (u, v) = (steps[0], steps[1])
      if u == 1 && v == 1 {
        d.update(from: s, count: n)
      } else {
        for j in 0..<n { d[j * u] = s[j * v] }
      }
    }
  }
}
