import CBLAS
import CSystem
import Dispatch
import Foundation
import Synchronization

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

  /// Applies `SKELLAB_THREADS` to BLAS before its first product (cheap after the first call).
  static func prepare() { _ = threadCount }

  /// The number of threads kernels may use.
  public static var threadCount: Int {
    lock.lock()
    defer { lock.unlock() }
    return current
  }

  /// Runs `body` with BLAS on one thread when `single` (while SkelLab's own threads already
  /// fill the cores), then restores the count BLAS had: the user's `OPENBLAS_NUM_THREADS`, or
  /// the one `setThreadCount` chose. The one place that changes BLAS's count temporarily.
  package static func withSingleThreadedBLAS(_ single: Bool, _ body: () -> Void) {
    guard single else { return body() }
    let before = openblas_get_num_threads()
    openblas_set_num_threads(1)
    defer { openblas_set_num_threads(before) }
    body()
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

/// A pointer that may be captured by the concurrent closures of `parallelChunks`.
///
/// Safe to send because of how it is used, not by construction: each chunk of a
/// `parallelChunks` call touches a disjoint range of the memory, and `parallelChunks` returns
/// only after every chunk has finished, so the memory outlives every access and no two
/// threads write the same element.
package struct SendablePointer<T>: @unchecked Sendable {
  package let base: UnsafeMutablePointer<T>
  package init(_ base: UnsafeMutablePointer<T>) { self.base = base }
}

/// Splits `0..<count` into at most `threadCount` contiguous ranges of at least `grain`
/// elements and runs `body` on each, concurrently when there is more than one. Returns when
/// every range is done.
///
/// `body` is an escaping, `@Sendable` closure: the workers hold it through a reference-counted
/// job, so the compiler checks its captures and its lifetime.
package func parallelChunks(
  _ count: Int, grain: Int = 32_768, _ body: @escaping @Sendable (Range<Int>) -> Void
) {
  let threads = Threading.threadCount
  let chunks = min(threads, max(1, count / max(grain, 1)))
  if chunks <= 1 {
    body(0..<count)
    return
  }
  let size = (count + chunks - 1) / chunks
  WorkerPool.shared.run(chunks: chunks) { chunk in
    let start = chunk * size
    let end = min(count, start + size)
    if start < end { body(start..<end) }
  }
}

/// One call of `WorkerPool.run`: its chunks' body and which chunk each worker runs.
private final class PoolJob: Sendable {
  let generation: Int
  let body: @Sendable (Int) -> Void
  /// The chunk of each worker, by worker index (-1 for none).
  let chunkOfWorker: [Int]
  init(generation: Int, body: @escaping @Sendable (Int) -> Void, chunkOfWorker: [Int]) {
    self.generation = generation
    self.body = body
    self.chunkOfWorker = chunkOfWorker
  }
}

/// Persistent worker threads for `parallelChunks`, one pinned to each CPU. The caller runs
/// chunk 0 and hands the others to workers on CPUs other than its own, so that a worker never
/// queues behind the caller on one core while another core idles. After a job a worker spins
/// (yielding the core to any other runnable thread, such as BLAS's) for a short while before
/// sleeping, because waking a sleeping thread on a virtual machine can cost as much as the
/// chunk itself. A call made while the pool is busy (another thread, or a nested call) runs
/// its chunks serially, which gives the same results.
///
/// Every shared field is an atomic, a mutex or immutable, so the type is `Sendable` as the
/// compiler checks it: the job is a reference-counted object published under a mutex before
/// the generation moves, and a worker that holds it longer than its chunk only delays its
/// release.
final class WorkerPool: Sendable {
  static let shared = WorkerPool()

  /// How long an idle worker keeps checking for work before it sleeps.
  private static let spinNanoseconds: UInt64 = 200_000

  private let busy = Atomic<Bool>(false)
  private let generation = Atomic<Int>(0)
  private let job = Mutex<PoolJob?>(nil)
  private let workers: [Worker]

  private init() {
    let cpus = max(1, ProcessInfo.processInfo.activeProcessorCount)
    workers = (0..<cpus).map { Worker(index: $0, cpu: $0) }
    for worker in workers {
      let thread = Thread { [unowned self] in self.workerLoop(worker) }
      thread.stackSize = 1 << 20
      thread.start()
    }
  }

  /// Runs `body(0..<chunks)`, chunk 0 on the calling thread; returns when all are done.
  func run(chunks: Int, _ body: @escaping @Sendable (Int) -> Void) {
    guard chunks > 1,
      busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    else {
      for chunk in 0..<chunks { body(chunk) }
      return
    }
    // Chunks 1... go to the workers off the caller's CPU first, then to the rest.
    let here = Int(skellab_current_cpu())
    var chunkOfWorker = [Int](repeating: -1, count: workers.count)
    var next = 1
    for worker in workers where worker.cpu != here {
      chunkOfWorker[worker.index] = next < chunks ? next : -1
      next += 1
    }
    for worker in workers where worker.cpu == here {
      chunkOfWorker[worker.index] = next < chunks ? next : -1
      next += 1
    }
    let current = generation.load(ordering: .relaxed) &+ 1
    let published = PoolJob(generation: current, body: body, chunkOfWorker: chunkOfWorker)
    job.withLock { $0 = published }
    generation.store(current, ordering: .sequentiallyConsistent)
    for worker in workers where worker.sleeping.exchange(false, ordering: .sequentiallyConsistent) {
      worker.wake.signal()
    }
    body(0)
    // Chunks beyond the workers' (more chunks than CPUs) run here.
    if next < chunks { for chunk in next..<chunks { body(chunk) } }
    // Every worker acknowledges this generation by number: one that is late or early for
    // another generation cannot stand in.
    for worker in workers {
      while worker.finished.load(ordering: .acquiring) != current { sched_yield() }
    }
    job.withLock { $0 = nil }
    busy.store(false, ordering: .releasing)
  }

  private func workerLoop(_ worker: Worker) {
    _ = skellab_pin_current_thread(Int32(worker.cpu))
    var seen = 0
    while true {
      waitForJob(worker, after: seen)
      seen = generation.load(ordering: .acquiring)
      if let current = job.withLock({ $0 }), current.generation == seen {
        let chunk = current.chunkOfWorker[worker.index]
        if chunk > 0 { current.body(chunk) }
      }
      worker.finished.store(seen, ordering: .releasing)
    }
  }

  /// Returns once the generation has moved past `seen`: spinning first, then sleeping.
  private func waitForJob(_ worker: Worker, after seen: Int) {
    let deadline = DispatchTime.now().uptimeNanoseconds + WorkerPool.spinNanoseconds
    var spins = 0
    while generation.load(ordering: .acquiring) == seen {
      sched_yield()
      spins += 1
      if spins % 32 == 0, DispatchTime.now().uptimeNanoseconds > deadline {
        // Sleep, without losing a wake-up: announce it, then check once more.
        worker.sleeping.store(true, ordering: .sequentiallyConsistent)
        if generation.load(ordering: .sequentiallyConsistent) != seen,
          worker.sleeping.exchange(false, ordering: .acquiringAndReleasing)
        {
          return
        }
        worker.wake.wait()  // the caller cleared the flag and signals (or has signalled)
        return
      }
    }
  }
}

/// One worker: its index in the pool, its CPU, its wake-up semaphore, whether it is (about to
/// be) asleep on it, and the last generation it has finished.
private final class Worker: Sendable {
  let index: Int
  let cpu: Int
  let wake = DispatchSemaphore(value: 0)
  let sleeping = Atomic<Bool>(false)
  let finished = Atomic<Int>(0)
  init(index: Int, cpu: Int) {
    self.index = index
    self.cpu = cpu
  }
}
