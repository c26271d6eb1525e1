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
    _ = BLASCore.selection  // OpenBLAS's kernels are settled before its first product
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

/// One call of `WorkerPool.run`: its body, its chunk count, the next chunk to claim and how
/// many are done. Threads claim chunks one at a time, so a chunk runs exactly once, on
/// whichever thread claims it; a worker that reaches the job late finds nothing left and
/// touches nothing. The caller waits for `done` to reach `chunks`: every chunk's writes happen
/// before that (each increment releases, the caller's load acquires).
private final class PoolJob: Sendable {
  let body: @Sendable (Int) -> Void
  let chunks: Int
  /// The CPU the caller ran on when it published the job.
  let callerCPU: Int
  private let next = Atomic<Int>(0)
  let done = Atomic<Int>(0)

  init(chunks: Int, callerCPU: Int, body: @escaping @Sendable (Int) -> Void) {
    self.chunks = chunks
    self.callerCPU = callerCPU
    self.body = body
  }

  /// Claims and runs chunks until none is left.
  func work() {
    while true {
      let chunk = next.wrappingAdd(1, ordering: .relaxed).oldValue
      guard chunk < chunks else { return }
      body(chunk)
      done.wrappingAdd(1, ordering: .acquiringAndReleasing)
    }
  }

  var finished: Bool { done.load(ordering: .acquiring) >= chunks }

  /// Whether the worker pinned to `cpu` stays out of this job: it is on the caller's CPU and
  /// the other `workers - 1` can take every chunk but the caller's, so it would only queue
  /// behind the caller on one core.
  func leavesOut(_ cpu: Int, of workers: Int) -> Bool {
    cpu == callerCPU && chunks <= workers
  }
}

/// Persistent worker threads for `parallelChunks`, one pinned to each CPU. The caller and the
/// workers on the other CPUs claim a job's chunks one at a time, so a busy or sleeping worker
/// never holds the caller up: the caller runs what nobody has claimed. After a job a worker spins (yielding
/// the core to any other runnable thread, such as BLAS's) for a short while before sleeping,
/// because waking a sleeping thread on a virtual machine can cost as much as the chunk itself.
/// A call made while the pool is busy (another thread, or a nested call) runs its chunks
/// serially, which gives the same results: a chunk's result never depends on its thread.
///
/// Every shared field is an atomic, a locked slot or immutable, so the type is `Sendable` as
/// the compiler checks it: the job is a reference-counted object published under a lock before
/// the generation moves, and a worker that holds it after the call returned finds no chunk to
/// run.
final class WorkerPool: Sendable {
  static let shared = WorkerPool()

  /// How long an idle worker keeps checking for work before it sleeps.
  private static let spinNanoseconds: UInt64 = 200_000

  private let busy = Atomic<Bool>(false)
  private let generation = Atomic<Int>(0)
  private let job = JobSlot()
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

  /// Runs `body(0..<chunks)` on the calling thread and the workers; returns when all are done.
  func run(chunks: Int, _ body: @escaping @Sendable (Int) -> Void) {
    guard chunks > 1,
      busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    else {
      for chunk in 0..<chunks { body(chunk) }
      return
    }
    let published = PoolJob(
      chunks: chunks, callerCPU: Int(skellab_current_cpu()), body: body)
    job.set(published)
    generation.wrappingAdd(1, ordering: .sequentiallyConsistent)
    // The worker on the caller's CPU is left asleep when it would stay out (see `workerLoop`):
    // woken, it would only take that CPU from the caller to find nothing to do.
    for worker in workers
    where !published.leavesOut(worker.cpu, of: workers.count)
      && worker.sleeping.exchange(false, ordering: .sequentiallyConsistent)
    {
      worker.wake.signal()
    }
    published.work()
    while !published.finished { sched_yield() }
    job.set(nil)
    busy.store(false, ordering: .releasing)
  }

  private func workerLoop(_ worker: Worker) {
    _ = skellab_pin_current_thread(Int32(worker.cpu))
    var seen = 0
    var spin = true
    while true {
      waitForJob(worker, after: seen, spinning: spin)
      seen = generation.load(ordering: .acquiring)
      spin = true
      guard let current = job.get() else { continue }
      if current.leavesOut(worker.cpu, of: workers.count) {
        // Spinning here would keep taking the caller's CPU from it while it works: sleep
        // until the next job instead.
        spin = false
      } else {
        current.work()
      }
    }
  }

  /// Returns once the generation has moved past `seen`: spinning first (when `spinning`), then
  /// sleeping.
  private func waitForJob(_ worker: Worker, after seen: Int, spinning: Bool) {
    let deadline = DispatchTime.now().uptimeNanoseconds + WorkerPool.spinNanoseconds
    var spins = 0
    while generation.load(ordering: .acquiring) == seen {
      if spinning { sched_yield() }
      spins += 1
      if !spinning || (spins % 32 == 0 && DispatchTime.now().uptimeNanoseconds > deadline) {
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

/// The job a worker picks up, under a lock. An `NSLock` (a pthread mutex) rather than
/// `Synchronization.Mutex`: ThreadSanitizer intercepts pthread mutexes but does not see the
/// futex inside `Mutex`, and reported every job published through it as a race.
/// `@unchecked Sendable` because `job` is read and written only under `lock`.
private final class JobSlot: @unchecked Sendable {
  private let lock = NSLock()
  private var job: PoolJob?

  func get() -> PoolJob? {
    lock.lock()
    defer { lock.unlock() }
    return job
  }

  func set(_ new: PoolJob?) {
    lock.lock()
    job = new
    lock.unlock()
  }
}

/// One worker: its CPU, its wake-up semaphore and whether it is (about to be) asleep on it.
private final class Worker: Sendable {
  let cpu: Int
  let wake = DispatchSemaphore(value: 0)
  let sleeping = Atomic<Bool>(false)
  init(cpu: Int) { self.cpu = cpu }
}
