import TensorCore
import Testing

@Suite("Buffer cache", .timed)
struct BufferCacheTests {
  /// A freed buffer serves a later request of its size class or of the class below, not a
  /// smaller one, and the peak counters see the bytes in use. Sizes of 28 MiB and up keep
  /// other tests' tensors out of these classes.
  @Test func aCachedBufferServesItsClassAndTheOneBelow() throws {
    let mebibyte = 1 << 20
    #expect(BufferCache.sizeClass(40 * mebibyte) == 40 * mebibyte)
    #expect(BufferCache.sizeClass(30 * mebibyte) == 32 * mebibyte)
    let (first, bytes) = BufferCache.allocate(floats: 10 * mebibyte)  // 40 MiB
    #expect(bytes == 40 * mebibyte)
    #expect(BufferCache.peakBytes.used >= bytes)
    BufferCache.release(first, bytes: bytes)
    // The class below (32 MiB): the same buffer, still counted at its own size.
    let (second, secondBytes) = BufferCache.allocate(floats: 30 * mebibyte / 4)
    #expect(second == first)
    #expect(secondBytes == bytes)
    BufferCache.release(second, bytes: secondBytes)
    // Two classes below (28 MiB): a buffer of its own.
    let (third, thirdBytes) = BufferCache.allocate(floats: 7 * mebibyte)
    #expect(third != first)
    #expect(thirdBytes == 28 * mebibyte)
    BufferCache.release(third, bytes: thirdBytes)
    let (again, againBytes) = BufferCache.allocate(floats: 10 * mebibyte)
    #expect(again == first)
    BufferCache.release(again, bytes: againBytes)
  }
}
