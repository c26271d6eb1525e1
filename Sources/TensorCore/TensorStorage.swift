/// The float32 buffer behind one or more tensors (views share it; writes copy it first).
///
/// Buffers are 64-byte aligned so that AVX-512 loads never split a cache line.
public final class TensorStorage: @unchecked Sendable {
  /// Number of floats in the buffer.
  public let count: Int
  /// The first float of the buffer; valid for `count` elements while this object lives.
  public let base: UnsafeMutablePointer<Float>

  /// Allocates `count` floats; the contents are undefined until written.
  package init(uninitializedCount count: Int) {
    self.count = count
    let raw = UnsafeMutableRawPointer.allocate(
      byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
    base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
  }

  /// Allocates `count` floats set to `value`.
  package convenience init(count: Int, repeating value: Float) {
    self.init(uninitializedCount: count)
    base.initialize(repeating: value, count: count)
  }

  /// Allocates a buffer holding a copy of `values`.
  package convenience init(copying values: UnsafeBufferPointer<Float>) {
    self.init(uninitializedCount: values.count)
    if let source = values.baseAddress { base.initialize(from: source, count: values.count) }
  }

  deinit { UnsafeMutableRawPointer(base).deallocate() }
}
