import Foundation

/// An error of the process group: a failed collective, a bad launch.
public struct CommunicationError: Error, CustomStringConvertible, Sendable {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { "[mpi] \(message)" }
}

/// The processes that run one script together (`mpirun -np N skellab run …`), or the one
/// process of an ordinary run. Every call is collective: every rank makes the same calls in the
/// same order, from the thread that runs the script.
///
/// Sums are reproducible: `allReduceSum` adds the ranks' values in rank order whatever the
/// number of processes or the MPI library's tuning, so two runs with the same ranks give the same
/// bits.
public protocol Communicator: AnyObject, Sendable {
  /// This process's index, 0 ..< size.
  var rank: Int { get }
  /// The number of processes.
  var size: Int { get }
  /// What carries the messages, for `--version` and the run's config.
  var transport: String { get }
  /// Replaces `values` on every rank by the element-wise sum over ranks (rank order).
  func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
  /// Replaces `values` on every rank by the element-wise maximum over ranks.
  func allReduceMax(_ values: inout [Double]) throws
  /// Every rank's `block` (any length, possibly empty), in rank order, on every rank.
  func allGather(_ block: [Float]) throws -> [[Float]]
  /// Replaces `bytes` on every rank by the root's.
  func broadcast(_ bytes: inout [UInt8], root: Int) throws
  /// Returns when every rank has called it.
  func barrier() throws
  /// Ends every rank of the job with `message` on this rank's standard error.
  func abort(_ message: String, status: Int32) -> Never
}

extension Communicator {
  /// `allReduceSum` of an array.
  public func allReduceSum(_ values: inout [Float]) throws {
    try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
  }

  /// The part of `count` items this rank takes when they are shared out in rank order as evenly
  /// as they go (the first `count % size` ranks take one more).
  public func share(of count: Int) -> Range<Int> { Self.share(of: count, rank: rank, size: size) }

  public static func share(of count: Int, rank: Int, size: Int) -> Range<Int> {
    let (base, extra) = count.quotientAndRemainder(dividingBy: size)
    let start = rank * base + min(rank, extra)
    return start..<(start + base + (rank < extra ? 1 : 0))
  }

  /// The shares of `count` items over all ranks (`share(of:)` of each).
  public func shares(of count: Int) -> [Range<Int>] {
    (0..<size).map { Self.share(of: count, rank: $0, size: size) }
  }
}

/// The one process of an ordinary run: every collective returns its input.
public final class SingleProcess: Communicator {
  public init() {}
  public var rank: Int { 0 }
  public var size: Int { 1 }
  public var transport: String { "single process" }
  public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {}
  public func allReduceMax(_ values: inout [Double]) throws {}
  public func allGather(_ block: [Float]) throws -> [[Float]] { [block] }
  public func broadcast(_ bytes: inout [UInt8], root: Int) throws {}
  public func barrier() throws {}
  public func abort(_ message: String, status: Int32) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(status)
  }
}

/// The process group this process belongs to, chosen once at start-up (`World.start()`).
public enum World {
  private static let lock = NSLock()
  nonisolated(unsafe) private static var chosen: Communicator = SingleProcess()

  /// The group of this run: a `SingleProcess` until `start()` finds an MPI launch.
  public static var current: Communicator {
    lock.lock()
    defer { lock.unlock() }
    return chosen
  }

  /// Whether this build can join an MPI job (built with `--traits MPI`).
  public static var mpiBuilt: Bool {
    #if MPI
      true
    #else
      false
    #endif
  }

  /// The number of processes `mpirun` (or another MPI launcher) started, or nil when this
  /// process was not started by one.
  public static var launchedSize: Int? {
    let environment = ProcessInfo.processInfo.environment
    for name in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"] {
      if let text = environment[name], let n = Int(text) { return n }
    }
    return nil
  }

  /// Joins the MPI job when `mpirun` started this process; otherwise stays a single process
  /// (no MPI start-up cost, no MPI library needed at run time). Throws when `mpirun` started
  /// this process but this build has no MPI.
  public static func start() throws {
    guard let size = launchedSize else { return }
    #if MPI
      let group = try MPICommunicator.initialise()
      lock.lock()
      chosen = group
      lock.unlock()
    #else
      guard size == 1 else {
        throw CommunicationError(
          "this skellab was built without MPI, but mpirun started it as one of \(size) processes "
            + "(each would run the whole script alone); build it with `swift build -c release "
            + "--traits MPI` (scripts/setup.sh --mpi installs Open MPI) or run it without mpirun")
      }
    #endif
  }

  /// Leaves the MPI job (a no-op for a single process).
  public static func finish() {
    #if MPI
      (current as? MPICommunicator)?.finalise()
    #endif
  }
}
