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
    WorkerPool.shared.run(chunks: chunks) { chunk in
      let start = chunk * size
      let end = min(count, start + size)
      if start < end { body(start..<end) }
    }
  }
}

/// Persistent worker threads for `parallelChunks`, one pinned to each CPU. The caller runs
/// chunk 0 and hands the others to workers on CPUs other than its own, so that a worker never
/// queues behind the caller on one core while another core idles. After a job a worker spins
/// (yielding the core to any other runnable thread, such as BLAS's) for a short while before
/// sleeping, because waking a sleeping thread on a virtual machine can cost as much as the
/// chunk itself. A call made while the pool is busy (another thread, or a nested call) runs
/// its chunks serially, which gives the same results.
final class WorkerPool: @unchecked Sendable {
  static let shared = WorkerPool()

  /// How long an idle worker keeps checking for work before it sleeps.
  private static let spinNanoseconds: UInt64 = 200_000

  private let busy = Atomic<Bool>(false)
  private let generation = Atomic<Int>(0)
  private var job: ((Int) -> Void)?
  private let workers: [Worker]

  private init() {
    let cpus = max(1, ProcessInfo.processInfo.activeProcessorCount)
    workers = (0..<cpus).map { Worker(cpu: $0) }
    for worker in workers {
      let thread = Thread { [unowned self] in self.workerLoop(worker) }
      thread.stackSize = 1 << 20
      thread.start()
    }
  }

  /// Runs `body(0..<chunks)`, chunk 0 on the calling thread.
  func run(chunks: Int, _ body: @escaping (Int) -> Void) {
    guard chunks > 1,
      busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    else {
      for chunk in 0..<chunks { body(chunk) }
      return
    }
    // Chunks 1... go to the workers off the caller's CPU first, then to the rest.
    let here = Int(skellab_current_cpu())
    var next = 1
    for worker in workers where worker.cpu != here {
      worker.chunk = next < chunks ? next : -1
      next += 1
    }
    for worker in workers where worker.cpu == here {
      worker.chunk = next < chunks ? next : -1
      next += 1
    }
    job = body
    let current = generation.add(1, ordering: .sequentiallyConsistent).newValue
    for worker in workers where worker.sleeping.exchange(false, ordering: .sequentiallyConsistent) {
      worker.wake.signal()
    }
    body(0)
    // Chunks beyond the workers' (more chunks than CPUs) run here.
    if next < chunks { for chunk in next..<chunks { body(chunk) } }
    // Every worker acknowledges this generation by number, after it has dropped its reference
    // to the job: a worker that is late or early for another generation cannot stand in.
    for worker in workers {
      while worker.finished.load(ordering: .acquiring) != current { sched_yield() }
    }
    job = nil
    busy.store(false, ordering: .releasing)
  }

  private func workerLoop(_ worker: Worker) {
    _ = skellab_pin_current_thread(Int32(worker.cpu))
    var seen = 0
    while true {
      waitForJob(worker, after: seen)
      seen = generation.load(ordering: .acquiring)
      if worker.chunk > 0 { runChunk(worker.chunk) }
      worker.finished.store(seen, ordering: .releasing)
    }
  }

  /// Runs one chunk of the current job. The worker's reference to the job must be gone before
  /// it acknowledges the generation, or the caller's closure outlives its
  /// `withoutActuallyEscaping` scope: the reference lives only inside this call.
  ///
  /// Known and unexplained: when two SkelLab processes oversubscribe the cores, the runtime
  /// still prints "closure argument was escaped in withoutActuallyEscaping block" now and then
  /// (with a countdown, and with these per-generation acknowledgements alike). The results do
  /// not change: two runs of one seeded pretraining, warned at different steps, gave the same
  /// accuracies to the last digit.
  @inline(never) private func runChunk(_ chunk: Int) {
    guard let work = job else { return }
    work(chunk)
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

/// One worker: its CPU, its chunk of the current job (-1 for none), its wake-up semaphore and
/// whether it is (about to be) asleep on it.
private final class Worker: @unchecked Sendable {
  let cpu: Int
  var chunk = -1
  let wake = DispatchSemaphore(value: 0)
  let sleeping = Atomic<Bool>(false)
  /// The last generation this worker has finished (its chunk run and the job released).
  let finished = Atomic<Int>(0)
  init(cpu: Int) { self.cpu = cpu }
}
