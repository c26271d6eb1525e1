// Reshaping and rearranging: views where the layout allows, copies otherwise.

extension Tensor {
  /// The same elements in a new shape; one size may be -1 and is inferred.
  /// A contiguous tensor is reshaped as a view.
  public func reshaped(_ newShape: [Int]) throws -> Tensor {
    var target = newShape
    let inferred = newShape.indices.filter { newShape[$0] == -1 }
    guard inferred.count <= 1 else {
      throw TensorError("reshape", "only one size can be -1 in \(shapeString(newShape))")
    }
    if let axis = inferred.first {
      var known = newShape
      known[axis] = 1
      let rest = try Shape.elementCount(known, op: "reshape")
      guard rest > 0, count % rest == 0 else {
        throw TensorError(
          "reshape",
          "cannot reshape \(shapeString(shape)) (\(count) elements) into "
            + "\(shapeString(newShape))")
      }
      target[axis] = count / rest
    }
    let total = try Shape.elementCount(target, op: "reshape")
    guard total == count else {
      throw TensorError(
        "reshape",
        "cannot reshape \(shapeString(shape)) (\(count) elements) into "
          + "\(shapeString(newShape)) (\(total) elements)")
    }
    if target == shape { return self }
    let source = contiguous()
    let out = source.view(
      shape: target, strides: Shape.contiguousStrides(target), offset: source.offset)
    let inputShape = shape
    return Autograd.record("reshape", out, [source]) { g in [try g.reshaped(inputShape)] }
  }

  /// Reorders the axes: axis `i` of the result is axis `order[i]` of this tensor (a view).
  public func permuted(_ order: [Int]) throws -> Tensor {
    guard order.count == rank else {
      throw TensorError(
        "permute", "\(order.count) axes given for a tensor of shape \(shapeString(shape))")
    }
    let axes = try order.map { try Shape.normalizeAxis($0, rank: rank, op: "permute") }
    guard Set(axes).count == rank else {
      throw TensorError("permute", "axes \(order) are not a permutation of 0..<\(rank)")
    }
    if axes == Array(0..<rank) { return self }
    let out = view(
      shape: axes.map { shape[$0] }, strides: axes.map { strides[$0] }, offset: offset)
    var inverse = [Int](repeating: 0, count: rank)
    for (i, axis) in axes.enumerated() { inverse[axis] = i }
    return Autograd.record("permute", out, [self]) { g in [try g.permuted(inverse)] }
  }

  /// Swaps two axes (a view); with no arguments, the last two.
  public func transposed(_ first: Int = -2, _ second: Int = -1) throws -> Tensor {
    guard rank >= 2 || (rank == 1 && first == -2 && second == -1) else {
      throw TensorError("transpose", "needs two axes, tensor has shape \(shapeString(shape))")
    }
    if rank < 2 { return self }
    let a = try Shape.normalizeAxis(first, rank: rank, op: "transpose")
    let b = try Shape.normalizeAxis(second, rank: rank, op: "transpose")
    var order = Array(0..<rank)
    order.swapAt(a, b)
    return try permuted(order)
  }

  /// Removes size-1 axes: the given one (which must have size 1), or all of them.
  public func squeezed(axis: Int? = nil) throws -> Tensor {
    var newShape = shape
    if let axis {
      let a = try Shape.normalizeAxis(axis, rank: rank, op: "squeeze")
      guard shape[a] == 1 else {
        throw TensorError(
          "squeeze", "axis \(axis) has size \(shape[a]), not 1, in \(shapeString(shape))")
      }
      newShape.remove(at: a)
    } else {
      newShape.removeAll { $0 == 1 }
    }
    return try reshaped(newShape)
  }

  /// Inserts a size-1 axis at `axis` (in `-(rank+1)...rank`).
  public func unsqueezed(axis: Int) throws -> Tensor {
    let a = try Shape.normalizeAxis(axis, rank: rank + 1, op: "unsqueeze")
    var newShape = shape
    newShape.insert(1, at: a)
    return try reshaped(newShape)
  }

  /// Broadcasts to a larger shape without copying (size-1 axes repeat with stride 0).
  /// A size of -1 keeps the existing size.
  public func expanded(to target: [Int]) throws -> Tensor {
    guard target.count >= rank else {
      throw TensorError(
        "expand", "cannot expand \(shapeString(shape)) to fewer axes \(shapeString(target))")
    }
    let lead = target.count - rank
    var resolved = target
    for i in 0..<rank {
      if target[lead + i] == -1 { resolved[lead + i] = shape[i] }
      guard shape[i] == resolved[lead + i] || shape[i] == 1 else {
        throw TensorError(
          "expand",
          "cannot expand \(shapeString(shape)) to \(shapeString(target)): "
            + "axis \(i) has size \(shape[i])")
      }
    }
    _ = try Shape.elementCount(resolved, op: "expand")
    if resolved == shape { return self }
    let out = view(
      shape: resolved,
      strides: Shape.broadcastStrides(shape: shape, strides: strides, to: resolved),
      offset: offset)
    let inputShape = shape
    return Autograd.record("expand", out, [self]) { g in [try g.sum(toShape: inputShape)] }
  }

  /// Joins tensors along an existing axis; every other size must match.
  public static func concat(_ tensors: [Tensor], axis: Int = 0) throws -> Tensor {
    guard let first = tensors.first else {
      throw TensorError("concat", "needs at least one tensor")
    }
    let a = try Shape.normalizeAxis(axis, rank: Swift.max(first.rank, 1), op: "concat")
    guard first.rank > 0 else { throw TensorError("concat", "cannot concatenate rank-0 tensors") }
    var total = 0
    for (i, t) in tensors.enumerated() {
      guard t.rank == first.rank,
        (0..<t.rank).allSatisfy({ $0 == a || t.shape[$0] == first.shape[$0] })
      else {
        throw TensorError(
          "concat",
          "tensor \(i) has shape \(shapeString(t.shape)), expected "
            + "\(shapeString(first.shape)) except along axis \(axis)")
      }
      total += t.shape[a]
    }
    var shape = first.shape
    shape[a] = total
    let outer = first.shape[..<a].reduce(1, *)
    let innerSizes = tensors.map { $0.shape[a...].reduce(1, *) }
    let rowSize = innerSizes.reduce(0, +)
    let sources = tensors.map { $0.contiguous() }
    // Rows of the output (one index of the leading axes) split across threads.
    let starts = sources.map(\.address)
    let out = Tensor(validShape: shape) { dst in
      let target = SendablePointer(dst)
      // (The sources must outlive the copies their raw pointers feed.)
      withExtendedLifetime(sources) {
        parallelChunks(outer, grain: Swift.max(1, 32_768 / Swift.max(rowSize, 1))) { rows in
          for o in rows {
            var column = 0
            for (src, inner) in zip(starts, innerSizes) {
              (target.base + o * rowSize + column).update(
                from: src.base + o * inner, count: inner)
              column += inner
            }
          }
        }
      }
    }
    let sizes = tensors.map { $0.shape[a] }
    return Autograd.record("concat", out, tensors) { g in
      try g.split(sizes: sizes, axis: a).map { $0.contiguous() }
    }
  }

  /// Joins tensors of one shape along a new axis.
  public static func stack(_ tensors: [Tensor], axis: Int = 0) throws -> Tensor {
    guard let first = tensors.first else { throw TensorError("stack", "needs at least one tensor") }
    let a = try Shape.normalizeAxis(axis, rank: first.rank + 1, op: "stack")
    for (i, t) in tensors.enumerated() where t.shape != first.shape {
      throw TensorError(
        "stack",
        "tensor \(i) has shape \(shapeString(t.shape)), tensor 0 has "
          + "\(shapeString(first.shape))")
    }
    return try concat(tensors.map { try $0.unsqueezed(axis: a) }, axis: a)
  }

  /// Cuts along `axis` into pieces of the given sizes (views), which must add up to its size.
  public func split(sizes: [Int], axis: Int = 0) throws -> [Tensor] {
    let a = try Shape.normalizeAxis(axis, rank: rank, op: "split")
    guard sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, +) == shape[a] else {
      throw TensorError(
        "split",
        "sizes \(sizes) do not add up to \(shape[a]), the size of axis \(axis) of "
          + "\(shapeString(shape))")
    }
    var start = 0
    return try sizes.map { size in
      defer { start += size }
      var ranges = [TensorIndex](repeating: .all, count: rank)
      ranges[a] = .range(start, start + size, 1)
      return try self[ranges]
    }
  }

  /// Cuts along `axis` into `parts` equal pieces (the size must divide evenly).
  public func split(parts: Int, axis: Int = 0) throws -> [Tensor] {
    let a = try Shape.normalizeAxis(axis, rank: rank, op: "split")
    guard parts > 0, shape[a] % parts == 0 else {
      throw TensorError(
        "split", "axis \(axis) of size \(shape[a]) cannot be split into \(parts) equal parts")
    }
    return try split(sizes: [Int](repeating: shape[a] / parts, count: parts), axis: a)
  }
}
