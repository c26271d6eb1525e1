#if MPI
  import CMPI
  import Foundation

  /// The processes of an MPI job (`MPI_COMM_WORLD`), over Open MPI.
  ///
  /// Sums do not use `MPI_Allreduce`, whose order of additions depends on the algorithm the
  /// library picks for the message size and process count: each rank receives every rank's
  /// values of its slice (`MPI_Alltoallv`, a pure data move), adds them in rank order, and the
  /// slices are shared back (`MPI_Allgatherv`). That moves the same bytes as a ring all-reduce,
  /// and the result is the same for any MCA settings.
  final class MPICommunicator: Communicator, @unchecked Sendable {
    let rank: Int
    let size: Int
    let transport: String
    private let world = skellab_mpi_comm_world()
    private var finalised = false
    /// The most values one sum moves per collective (bounds the scratch and keeps every MPI
    /// count far below 2^31).
    static let segment = 1 << 24

    private init(rank: Int, size: Int, transport: String) {
      self.rank = rank
      self.size = size
      self.transport = transport
    }

    static func initialise() throws -> MPICommunicator {
      var provided: Int32 = 0
      let status = MPI_Init_thread(nil, nil, skellab_mpi_thread_funneled(), &provided)
      guard status == skellab_mpi_success() else {
        throw CommunicationError("MPI_Init_thread failed (error \(status))")
      }
      // Errors come back as statuses (and become thrown errors) instead of ending the job
      // silently inside the library.
      MPI_Comm_set_errhandler(skellab_mpi_comm_world(), skellab_mpi_errors_return())
      var rank: Int32 = 0
      var size: Int32 = 0
      MPI_Comm_rank(skellab_mpi_comm_world(), &rank)
      MPI_Comm_size(skellab_mpi_comm_world(), &size)
      var name = [CChar](repeating: 0, count: 8192)
      var length: Int32 = 0
      MPI_Get_library_version(&name, &length)
      let library =
        String(
          decoding: name.prefix(Int(max(length, 0))).map { UInt8(bitPattern: $0) }, as: UTF8.self
        )
        .split(separator: ",").first.map(String.init) ?? "MPI"
      return MPICommunicator(
        rank: Int(rank), size: Int(size), transport: "\(library), \(size) processes")
    }

    func finalise() {
      guard !finalised else { return }
      finalised = true
      MPI_Finalize()
    }

    private func check(_ status: Int32, _ what: String) throws {
      guard status == skellab_mpi_success() else {
        var text = [CChar](repeating: 0, count: 1024)
        var length: Int32 = 0
        MPI_Error_string(status, &text, &length)
        let reason = String(
          decoding: text.prefix(Int(max(length, 0))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw CommunicationError("\(what) failed on rank \(rank): \(reason)")
      }
    }

    func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
      guard size > 1, let base = values.baseAddress else { return }
      // Every rank's values of my slice: `size` slices of at most ⌈segment / size⌉ values.
      let longest = min(values.count, Self.segment) / size + 1
      var scratch = [Float](repeating: 0, count: size * longest)
      var start = 0
      while start < values.count {
        let count = min(Self.segment, values.count - start)
        let shares = shares(of: count)
        let counts = shares.map { Int32($0.count) }
        let offsets = shares.map { Int32($0.lowerBound) }
        let mine = shares[rank]
        // Every rank's values of my slice, rank after rank.
        let receiveCounts = [Int32](repeating: Int32(mine.count), count: size)
        let receiveOffsets = (0..<size).map { Int32($0 * mine.count) }
        try scratch.withUnsafeMutableBufferPointer { received in
          try check(
            MPI_Alltoallv(
              base + start, counts, offsets, skellab_mpi_float(), received.baseAddress,
              receiveCounts, receiveOffsets, skellab_mpi_float(), world),
            "the gradient exchange (MPI_Alltoallv)")
          // The sum in rank order.
          let slice = base + start + mine.lowerBound
          for i in 0..<mine.count { slice[i] = received[i] }
          for r in 1..<size {
            let from = received.baseAddress! + r * mine.count
            for i in 0..<mine.count { slice[i] += from[i] }
          }
        }
        try check(
          MPI_Allgatherv(
            skellab_mpi_in_place(), 0, skellab_mpi_float(), base + start, counts, offsets,
            skellab_mpi_float(), world),
          "the gradient exchange (MPI_Allgatherv)")
        start += count
      }
    }

    func allReduceMax(_ values: inout [Double]) throws {
      guard size > 1, !values.isEmpty else { return }
      let count = Int32(values.count)
      try values.withUnsafeMutableBufferPointer { buffer in
        try check(
          MPI_Allreduce(
            skellab_mpi_in_place(), buffer.baseAddress, count, skellab_mpi_double(),
            skellab_mpi_max(), world),
          "MPI_Allreduce (max)")
      }
    }

    func allGather(_ block: [Float]) throws -> [[Float]] {
      guard size > 1 else { return [block] }
      guard block.count < Int(Int32.max) else {
        throw CommunicationError("a block of \(block.count) values is too large to gather")
      }
      var counts = [Int32](repeating: 0, count: size)
      var mine = Int32(block.count)
      try check(
        MPI_Allgather(&mine, 1, skellab_mpi_int(), &counts, 1, skellab_mpi_int(), world),
        "MPI_Allgather (block sizes)")
      var offsets = [Int32](repeating: 0, count: size)
      var total = 0
      for r in 0..<size {
        guard total + Int(counts[r]) < Int(Int32.max), counts[r] >= 0 else {
          throw CommunicationError("the gathered blocks hold more than 2^31 values")
        }
        offsets[r] = Int32(total)
        total += Int(counts[r])
      }
      var all = [Float](repeating: 0, count: total)
      try block.withUnsafeBufferPointer { source in
        try all.withUnsafeMutableBufferPointer { target in
          try check(
            MPI_Allgatherv(
              source.baseAddress, mine, skellab_mpi_float(), target.baseAddress, counts, offsets,
              skellab_mpi_float(), world),
            "MPI_Allgatherv (blocks)")
        }
      }
      return (0..<size).map { r in
        Array(all[Int(offsets[r])..<(Int(offsets[r]) + Int(counts[r]))])
      }
    }

    func broadcast(_ bytes: inout [UInt8], root: Int) throws {
      guard size > 1 else { return }
      // The root's length first, so that every rank holds a buffer of its size.
      var rootLength = [Double(rank == root ? bytes.count : 0)]
      try rootLength.withUnsafeMutableBufferPointer { buffer in
        try check(
          MPI_Bcast(buffer.baseAddress, 1, skellab_mpi_double(), Int32(root), world),
          "MPI_Bcast (length)")
      }
      let length = Int(rootLength[0])
      guard length < Int(Int32.max) else {
        throw CommunicationError("a broadcast of \(length) bytes is too large")
      }
      if rank != root { bytes = [UInt8](repeating: 0, count: length) }
      try bytes.withUnsafeMutableBufferPointer { buffer in
        try check(
          MPI_Bcast(buffer.baseAddress, Int32(length), skellab_mpi_byte(), Int32(root), world),
          "MPI_Bcast")
      }
    }

    func barrier() throws { try check(MPI_Barrier(world), "MPI_Barrier") }

    func abort(_ message: String, status: Int32) -> Never {
      FileHandle.standardError.write(Data((message + "\n").utf8))
      MPI_Abort(world, status)
      exit(status)
    }
  }
#endif
