import Foundation

/// The float32 buffer behind one or more tensors (views share it; writes copy it first).
///
/// Buffers are 64-byte aligned. Large buffers come from `BufferCache`, so that a training
/// step's hundreds of temporaries reuse memory instead of page-faulting fresh pages each time.
///
/// Sendable by use: the buffer is filled before the storage is shared, and written afterwards
/// only by a tensor that holds it uniquely (copy-on-write), or by kernels writing disjoint
/// ranges under `parallelChunks`.
public final class TensorStorage: @unchecked Sendable {
  /// Number of floats in the buffer.
  public let count: Int
  /// The first float of the buffer; valid for `count` elements while this object lives.
  public let base: UnsafeMutablePointer<Float>
  private let byteCount: Int

  /// Allocates `count` floats; the contents are undefined until written.
  package init(uninitializedCount count: Int) {
    self.count = count
    let (raw, bytes) = BufferCache.allocate(floats: count)
    byteCount = bytes
    base = raw.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
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

  deinit { BufferCache.release(UnsafeMutableRawPointer(base), bytes: byteCount) }
}

/// A cache of large freed buffers by size class (four classes per power of two, so at most
/// 25% is wasted). A request takes a cached buffer of its class, else of the next class up
/// (at most a third larger): the steps of a training run free and ask for many sizes, and this
/// lowered the `small` MAMP and Skeleton2vec peaks by 5 MB (up to twice the size lowered them
/// by 18 MB but raised the `paper` PCM3 peak by 69 MB). Small buffers go straight to malloc,
/// which already reuses them well.
/// The cache holds at most `limit` bytes (an eighth of physical memory and at most 4 GiB, or
/// `SKELLAB_CACHE_MB`); `fit` and the evaluation protocols empty it when they end.
public enum BufferCache {
  private static let lock = NSLock()
  nonisolated(unsafe) private static var free: [Int: [UnsafeMutableRawPointer]] = [:]
  nonisolated(unsafe) private static var cachedBytes = 0
  /// Bytes of large buffers in use by tensors, and the most that were in use plus cached.
  nonisolated(unsafe) private static var usedBytes = 0
  nonisolated(unsafe) private static var peak = (used: 0, usedAndCached: 0)
  private static let smallest = 1 << 18  // 256 KiB: below this, malloc is fast enough
  private static let limit: Int = {
    if let text = ProcessInfo.processInfo.environment["SKELLAB_CACHE_MB"], let mb = Int(text),
      mb >= 0
    {
      return mb << 20
    }
    return Int(min(ProcessInfo.processInfo.physicalMemory / 8, 4 << 30))
  }()

  /// The byte size a request is rounded up to.
  package static func sizeClass(_ bytes: Int) -> Int {
    if bytes < smallest { return Swift.max(bytes, 64) }
    let top = Int.bitWidth - 1 - bytes.leadingZeroBitCount  // floor(log2)
    let step = 1 << (top - 2)
    return (bytes + step - 1) / step * step
  }

  package static func allocate(floats: Int) -> (UnsafeMutableRawPointer, Int) {
    let bytes = sizeClass(Swift.max(floats, 1) * MemoryLayout<Float>.stride)
    if bytes >= smallest {
      lock.lock()
      // The same size class, else the next one up.
      var cached: (UnsafeMutableRawPointer, Int)?
      var size = bytes
      while cached == nil, size <= bytes + bytes / 3 {
        cached = free[size]?.popLast().map { ($0, size) }
        size = sizeClass(size + 1)
      }
      if let (_, size) = cached { cachedBytes -= size }
      usedBytes += cached?.1 ?? bytes
      peak.used = Swift.max(peak.used, usedBytes)
      peak.usedAndCached = Swift.max(peak.usedAndCached, usedBytes + cachedBytes)
      lock.unlock()
      if let cached { return cached }
    }
    return (UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64), bytes)
  }

  package static func release(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
    if bytes >= smallest {
      lock.lock()
      usedBytes -= bytes
      if cachedBytes + bytes <= limit {
        free[bytes, default: []].append(pointer)
        cachedBytes += bytes
        lock.unlock()
        return
      }
      lock.unlock()
    }
    pointer.deallocate()
  }

  /// Bytes currently held for reuse.
  public static var heldBytes: Int {
    lock.lock()
    defer { lock.unlock() }
    return cachedBytes
  }

  /// The most bytes of large buffers (256 KiB and up) that tensors used at once, and that
  /// they used plus the cache held, since the last `resetPeak()`: the memory a computation's
  /// tensors need, and what the cache added to it.
  public static var peakBytes: (used: Int, usedAndCached: Int) {
    lock.lock()
    defer { lock.unlock() }
    return peak
  }

  /// Starts a new `peakBytes` measurement from the bytes in use and cached now.
  public static func resetPeak() {
    lock.lock()
    peak = (usedBytes, usedBytes + cachedBytes)
    lock.unlock()
  }

  /// Returns every cached buffer to the system (after a large computation).
  public static func empty() {
    lock.lock()
    let all = free.values.flatMap { $0 }
    free = [:]
    cachedBytes = 0
    lock.unlock()
    for pointer in all { pointer.deallocate() }
  }
}
