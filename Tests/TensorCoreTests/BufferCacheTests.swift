import TensorCore
import Testing

@Suite("Buffer cache", .timed)
struct BufferCacheTests {
  /// A freed buffer serves a later request of its size class or of a class down to half its
  /// size, not a smaller one, and the peak counters see the bytes in use. Sizes of 37 MiB and
  /// up keep other tests' tensors out of these classes.
  @Test func aCachedBufferServesRequestsUpToTwiceSmaller() throws {
    let floats = 37 << 18  // 37 MiB
    let (first, bytes) = BufferCache.allocate(floats: floats)
    #expect(bytes == BufferCache.sizeClass(floats * 4))
    #expect(BufferCache.peakBytes.used >= bytes)
    BufferCache.release(first, bytes: bytes)
    // Just over half the size: the same buffer, still counted at its own size.
    let (second, secondBytes) = BufferCache.allocate(floats: floats / 2 + 1 << 16)
    #expect(second == first)
    #expect(secondBytes == bytes)
    BufferCache.release(second, bytes: secondBytes)
    // A third of the size: a buffer of its own.
    let (third, thirdBytes) = BufferCache.allocate(floats: floats / 3)
    #expect(third != first)
    #expect(thirdBytes == BufferCache.sizeClass(floats / 3 * 4))
    BufferCache.release(third, bytes: thirdBytes)
    let (again, againBytes) = BufferCache.allocate(floats: floats)
    #expect(again == first)
    BufferCache.release(again, bytes: againBytes)
  }
}
