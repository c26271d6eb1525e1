import CBLAS
import Dispatch
import Foundation

/// The thread count of BLAS and of SkelLab's own element-wise and reduction kernels.
///
/// SkelLab's kernels give the same bits for any thread count (each output element is computed
/// by one thread, and partial sums are combined in a fixed order); OpenBLAS does not, so tests
/// fix the count to 1.
public enum Threading {
  private static let lock = NSLock()
  nonisolated(unsafe) private static var current = defaultCount()

  private static func defaultCount() -> Int {
    if let text = ProcessInfo.processInfo.environment["SKELLAB_THREADS"], let n = Int(text), n > 0 {
      openblas_set_num_threads(Int32(min(n, 256)))
      return min(n, 256)
    }
    return max(1, ProcessInfo.processInfo.activeProcessorCount)
  }

  /// The number of threads kernels may use.
  public static var threadCount: Int {
    lock.lock()
    defer { lock.unlock() }
    return current
  }

  /// Fixes the number of threads for BLAS and SkelLab's kernels (at least 1).
  public static func setThreadCount(_ count: Int) throws {
    guard count >= 1, count <= 256 else {
      throw TensorError("threads", "thread count must be between 1 and 256, got \(count)")
    }
    lock.lock()
    current = count
    lock.unlock()
    openblas_set_num_threads(Int32(count))
  }
}

/// A pointer that may be captured by the concurrent closures of `parallelChunks`; each chunk
/// touches a disjoint range, so no two threads write the same element.
package struct SendablePointer<T>: @unchecked Sendable {
  package let base: UnsafeMutablePointer<T>
  package init(_ base: UnsafeMutablePointer<T>) { self.base = base }
}

/// Splits `0..<count` into at most `threadCount` contiguous ranges of at least `grain`
/// elements and runs `body` on each, concurrently when there is more than one.
package func parallelChunks(
  _ count: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void
) {
  let threads = Threading.threadCount
  let chunks = min(threads, max(1, count / max(grain, 1)))
  if chunks <= 1 {
    body(0..<count)
    return
  }
  let size = (count + chunks - 1) / chunks
  withoutActuallyEscaping(body) { body in
    let box = UncheckedBox(body)
    DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
      let start = chunk * size
      let end = min(count, start + size)
      if start < end { box.value(start..<end) }
    }
  }
}

/// Carries a non-Sendable closure into `concurrentPerform`; the chunks it is called with are
/// disjoint, which is what makes this safe.
package struct UncheckedBox<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}
