/// A float32 tensor of any rank, stored row-major.
///
/// `Tensor` is a value: assigning it shares the buffer, and the first write to a shared buffer
/// copies it. Reshapes of contiguous tensors, `permute`, `transpose`, `expand`, `squeeze`,
/// `unsqueeze` and slicing are views that share the buffer. A tensor that requires gradients
/// carries a node of the autograd graph; `backward()` fills the `grad` of its leaves.
///
/// Sendable by use, not by construction: a shared buffer is never written (the first write
/// copies it), so tensors handed to the loader's prefetch thread or to `parallelChunks` are
/// read concurrently but not changed; the autograd node is built and walked by the thread
/// that records and differentiates the graph.
public struct Tensor: @unchecked Sendable {
  package var storage: TensorStorage
  /// The size of each axis, outermost first.
  public private(set) var shape: [Int]
  package private(set) var strides: [Int]
  package private(set) var offset: Int
  package var node: GradNode?

  /// A view of `storage` with the given layout (no checks: callers guarantee bounds).
  package init(storage: TensorStorage, shape: [Int], strides: [Int], offset: Int) {
    self.storage = storage
    self.shape = shape
    self.strides = strides
    self.offset = offset
    self.node = nil
  }

  /// A contiguous tensor over a whole buffer.
  package init(storage: TensorStorage, shape: [Int]) {
    self.init(storage: storage, shape: shape, strides: Shape.contiguousStrides(shape), offset: 0)
  }

  /// Creates a tensor of `shape` from row-major `scalars`; throws when the counts differ.
  public init(shape: [Int], scalars: [Float]) throws {
    let count = try Shape.elementCount(shape, op: "tensor")
    guard count == scalars.count else {
      throw TensorError(
        "tensor", "shape \(shapeString(shape)) needs \(count) values, got \(scalars.count)")
    }
    self.init(storage: scalars.withUnsafeBufferPointer { TensorStorage(copying: $0) }, shape: shape)
  }

  /// A rank-0 tensor holding one value.
  public init(_ value: Float) {
    self.init(storage: TensorStorage(count: 1, repeating: value), shape: [])
  }

  /// A rank-1 tensor holding `values`.
  public init(_ values: [Float]) {
    self.init(
      storage: values.withUnsafeBufferPointer { TensorStorage(copying: $0) }, shape: [values.count])
  }

  /// A tensor filled by `body`, which writes every element of the contiguous buffer.
  package init(
    shape: [Int], op: String, fill body: (UnsafeMutableBufferPointer<Float>) throws -> Void
  ) throws {
    let count = try Shape.elementCount(shape, op: op)
    let storage = TensorStorage(uninitializedCount: count)
    try body(UnsafeMutableBufferPointer(start: storage.base, count: count))
    self.init(storage: storage, shape: shape)
  }

  /// A tensor of a shape already validated (internal kernels), filled by `body`.
  package init(validShape shape: [Int], fill body: (UnsafeMutablePointer<Float>) -> Void) {
    var count = 1
    for size in shape { count &*= size }
    let storage = TensorStorage(uninitializedCount: count)
    body(storage.base)
    self.init(storage: storage, shape: shape)
  }

  /// The number of axes.
  public var rank: Int { shape.count }
  /// The number of elements.
  public var count: Int { shape.reduce(1, &*) }

  /// Whether the elements sit in row-major order with no gaps (a view may not).
  public var isContiguous: Bool {
    var expected = 1
    for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] != 1 {
      if strides[axis] != expected { return false }
      expected &*= shape[axis]
    }
    return true
  }

  /// This tensor's values in a contiguous buffer (itself when already contiguous).
  /// The result keeps the autograd connection: it is an identity for gradients.
  public func contiguous() -> Tensor {
    if isContiguous { return self }
    let out = Tensor(validShape: shape) { dst in
      Kernels.copy(from: storage.base, shape: shape, strides: strides, offset: offset, to: dst)
    }
    return Autograd.record("contiguous", out, [self]) { grad in [grad] }
  }

  /// Calls `body` with the elements in row-major order (copying a non-contiguous view first).
  public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows
    -> R
  {
    let dense = detached().contiguous()
    // A copy (of a strided view) must outlive `body`: an optimised build may otherwise release
    // it once the pointer is taken and let `body`'s own allocations reuse its memory.
    return try withExtendedLifetime(dense) {
      try body(UnsafeBufferPointer(start: dense.storage.base + dense.offset, count: count))
    }
  }

  /// Calls `body` with writable elements in row-major order, copying the buffer first when it is
  /// shared or not contiguous (copy-on-write). Writing cuts a computed tensor from the graph.
  public mutating func withUnsafeMutableBufferPointer<R>(
    _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
  ) rethrows -> R {
    if !isKnownUniquelyReferenced(&storage) || !isContiguous || offset != 0
      || storage.count != count
    {
      let copy = withUnsafeBufferPointer { TensorStorage(copying: $0) }
      storage = copy
      strides = Shape.contiguousStrides(shape)
      offset = 0
    }
    // A leaf keeps its identity (optimisers update parameters in place); a computed value
    // that is overwritten no longer follows from its inputs.
    if !isLeaf { node = nil }
    return try body(UnsafeMutableBufferPointer(start: storage.base, count: count))
  }

  /// The first element's address, for kernels that read a contiguous tensor's values across
  /// threads (valid while the tensor lives).
  package var address: SendablePointer<Float> { SendablePointer(storage.base + offset) }

  /// This tensor's buffer made its own, contiguous and whole (copied first when shared or
  /// strided, as `withUnsafeMutableBufferPointer` does), as a pointer to its first element:
  /// valid while this tensor value lives unchanged. For updates of many tensors in one
  /// parallel pass (an optimiser's step).
  package mutating func ownedBuffer() -> UnsafeMutablePointer<Float> {
    withUnsafeMutableBufferPointer { _ in }
    return storage.base
  }

  /// The elements in row-major order.
  public var scalars: [Float] { withUnsafeBufferPointer { Array($0) } }

  /// The value of a one-element tensor.
  public func item() throws -> Float {
    guard count == 1 else {
      throw TensorError(
        "item", "tensor of shape \(shapeString(shape)) has \(count) elements, not 1")
    }
    return storage.base[offset]
  }

  /// The element at a full multi-index (negative indices count from the end).
  public func element(at index: [Int]) throws -> Float {
    guard index.count == rank else {
      throw TensorError(
        "index", "\(index.count) indices for a tensor of shape \(shapeString(shape))")
    }
    var position = offset
    for (axis, i) in index.enumerated() {
      let resolved = i < 0 ? i + shape[axis] : i
      guard resolved >= 0, resolved < shape[axis] else {
        throw TensorError(
          "index", "index \(i) is out of range for axis \(axis) of size \(shape[axis])")
      }
      position += resolved * strides[axis]
    }
    return storage.base[position]
  }

  /// The same values with a new layout of the same buffer (a view).
  package func view(shape: [Int], strides: [Int], offset: Int) -> Tensor {
    Tensor(storage: storage, shape: shape, strides: strides, offset: offset)
  }
}
