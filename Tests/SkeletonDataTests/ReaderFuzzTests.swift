import Foundation
import SkeletonData
import TensorCore
import TestSupport
import Testing

/// Seeded mutation fuzzers, one per reader: valid seed files with bytes flipped, length and
/// offset fields overwritten with hostile integers (near 2^31, 2^32, 2^62, 2^63, 2^64),
/// chunks cut, repeated or truncated, and numbers of text files replaced by NaN, negative or
/// huge values. Every case must end with a result or a `TensorError`: a trap ends the test
/// process, a hang stops the suite. The case count per reader is `SKELLAB_FUZZ_CASES` (200
/// when unset; soak runs set thousands).
@Suite("Reader fuzzing", .timed, .heavy)
struct ReaderFuzzTests {
  static let cases = Int(ProcessInfo.processInfo.environment["SKELLAB_FUZZ_CASES"] ?? "") ?? 200
  static let data = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Data").path

  /// Integers that break length and offset arithmetic, as little-endian bytes of 2, 4 or 8.
  static let hostile: [UInt64] = [
    0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000,
    1 << 62, (1 << 63) - 1, 1 << 63, UInt64.max, UInt64.max - 7,
  ]

  /// One mutated copy of `seed`.
  static func mutate(_ seed: [UInt8], _ random: inout RandomGenerator) throws -> [UInt8] {
    var bytes = seed
    for _ in 0..<(try random.nextInt(below: 4) + 1) {
      guard !bytes.isEmpty else { break }
      let at = try random.nextInt(below: bytes.count)
      switch try random.nextInt(below: 6) {
      case 0:  // flip a bit
        bytes[at] ^= UInt8(1 << (try random.nextInt(below: 8)))
      case 1:  // a hostile integer of 2, 4 or 8 bytes
        let value = hostile[try random.nextInt(below: hostile.count)]
        let width = [2, 4, 8][try random.nextInt(below: 3)]
        for k in 0..<width where at + k < bytes.count {
          bytes[at + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k)))
        }
      case 2:  // cut a chunk
        bytes.removeSubrange(at..<min(bytes.count, at + (try random.nextInt(below: 64)) + 1))
      case 3:  // repeat a chunk
        let end = min(bytes.count, at + (try random.nextInt(below: 64)) + 1)
        bytes.insert(contentsOf: bytes[at..<end], at: at)
      case 4:  // truncate
        bytes.removeSubrange(at...)
      default:  // a random byte
        bytes[at] = UInt8(try random.nextInt(below: 256))
      }
    }
    return bytes
  }

  /// Numbers a text file should never be trusted with.
  static let hostileWords = [
    "nan", "-nan", "inf", "-inf", "-1", "0", "1e9", "1e300", "-1e300", "9223372036854775807",
    "99999999999", "2.5", "x", "",
  ]

  /// One mutated copy of a text file: words replaced, lines dropped, repeated or cut.
  static func mutateText(_ seed: String, _ random: inout RandomGenerator) throws -> String {
    var lines = seed.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for _ in 0..<(try random.nextInt(below: 4) + 1) {
      guard !lines.isEmpty else { break }
      let at = try random.nextInt(below: lines.count)
      switch try random.nextInt(below: 4) {
      case 0, 1:
        var words = lines[at].split(separator: " ", omittingEmptySubsequences: false).map(
          String.init)
        if !words.isEmpty {
          words[try random.nextInt(below: words.count)] =
            hostileWords[try random.nextInt(below: hostileWords.count)]
        }
        lines[at] = words.joined(separator: " ")
      case 2: lines.remove(at: at)
      default: lines.insert(lines[at], at: at)
      }
    }
    if try random.nextInt(below: 8) == 0 {
      let text = lines.joined(separator: "\n")
      return String(text.prefix(try random.nextInt(below: text.count + 1)))
    }
    return lines.joined(separator: "\n")
  }

  /// Runs `body` on `cases` mutations of `seed`; counts results and errors (both are fine).
  static func fuzz(
    _ seed: [UInt8], seedNumber: UInt64, _ body: (Data) throws -> Void
  ) throws -> (accepted: Int, rejected: Int) {
    var random = RandomGenerator(seed: seedNumber)
    var counts = (accepted: 0, rejected: 0)
    for _ in 0..<cases {
      let input = Data(try mutate(seed, &random))
      do {
        try body(input)
        counts.accepted += 1
      } catch is TensorError {
        counts.rejected += 1
      }
    }
    return counts
  }

  static func bytes(_ relative: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: data + "/" + relative) else {
      throw TensorError("fuzz", "missing seed file Tests/Data/\(relative)")
    }
    return [UInt8](data)
  }

  /// A fresh temporary folder for files a reader takes by path.
  static func folder(_ name: String) throws -> String {
    let path = NSTemporaryDirectory() + "skellab-fuzz-\(name)-\(getpid())"
    try? FileManager.default.removeItem(atPath: path)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  /// Peak resident memory of this process so far, in MiB.
  static var peakMiB: Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss / 1024
  }

  /// The bound on the test process's peak memory after fuzzing: a reader that allocates from
  /// a claimed size instead of the file's real one would pass it by gigabytes.
  static let memoryBoundMiB = 4096

  @Test func npyAndNpz() throws {
    for (k, name) in [
      "numpy/f32_c.npy", "numpy/f64_fortran.npy", "numpy/i64.npy", "numpy/bool.npy",
    ]
    .enumerated() {
      let counts = try Self.fuzz(try Self.bytes(name), seedNumber: UInt64(10 + k)) {
        _ = try NumPy.parseArray($0)
      }
      #expect(counts.accepted + counts.rejected == Self.cases)
    }
    for (k, name) in [
      "numpy/stored.npz", "numpy/compressed.npz", "skeleton/mamp_tiny_deflated.npz",
    ]
    .enumerated() {
      let counts = try Self.fuzz(try Self.bytes(name), seedNumber: UInt64(20 + k)) {
        _ = try NumPy.parseArchive($0)
      }
      #expect(counts.rejected > 0)
    }
    #expect(Self.peakMiB < Self.memoryBoundMiB)
  }

  @Test func torchCheckpointsAndPickles() throws {
    for (k, name) in ["torch/mamp_linear_tiny.pth", "torch/s2v_tiny.pt", "torch/malicious.pth"]
      .enumerated()
    {
      let counts = try Self.fuzz(try Self.bytes(name), seedNumber: UInt64(30 + k)) {
        _ = try TorchFile.parse($0)
      }
      #expect(counts.rejected > 0)
    }
    // The pickle inside a checkpoint, fuzzed alone (the zip's CRC would reject most changes).
    let checkpoint = try ZipArchive.members(
      Data(try Self.bytes("torch/mamp_linear_tiny.pth")), op: "fuzz")
    let pickle = try #require(checkpoint.first { $0.name.hasSuffix("data.pkl") })
    for (k, seed) in [
      [UInt8](pickle.data), try Self.bytes("skeleton/agcn_train_label.pkl"),
      try Self.bytes("skeleton/pyskl_tiny_3danno.pkl"),
    ].enumerated() {
      let counts = try Self.fuzz(seed, seedNumber: UInt64(40 + k)) { _ = try PickleFile.parse($0) }
      #expect(counts.accepted + counts.rejected == Self.cases)
    }
    #expect(Self.peakMiB < Self.memoryBoundMiB)
  }

  @Test func safetensors() throws {
    let seed = try SafeTensors.encode(
      [
        "a": .float32(try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])),
        "b": .int64(shape: [3], values: [7, -8, 9]),
      ], metadata: ["format": "pt"])
    let counts = try Self.fuzz([UInt8](seed), seedNumber: 50) { _ = try SafeTensors.parse($0) }
    #expect(counts.rejected > 0)
    #expect(Self.peakMiB < Self.memoryBoundMiB)
  }

  /// A valid NTU `.skeleton` text: `frames` frames of one 25-joint body.
  static func ntuText(frames: Int) -> String {
    var lines = ["\(frames)"]
    for f in 0..<frames {
      lines += ["1", "72057594037931101 0 1 1 1 1 0 0.1 0.2 2", "25"]
      for j in 0..<25 {
        let (x, y, z) = (0.01 * Double(j) + 0.001 * Double(f), 0.05 * Double(j), 3.0)
        lines.append("\(x) \(y) \(z) 250 180 1000 500 0.1 0.2 0.3 0.9 2")
      }
    }
    return lines.joined(separator: "\n") + "\n"
  }

  /// Text readers, through files: NTU (both body selections, and as a folder), MSR Action3D,
  /// PKU-MMD sequences with their label files.
  @Test func textReaders() throws {
    let root = try Self.folder("text")
    defer { try? FileManager.default.removeItem(atPath: root) }
    var random = RandomGenerator(seed: 60)
    let ntu = Self.ntuText(frames: 4)
    let msr =
      (0..<3).flatMap { f in (0..<20).map { j in "\(j) \(f) \(2 + j % 3) 1" } }
      .joined(separator: "\n") + "\n"
    let pkuSeed = try String(
      contentsOfFile: Self.data + "/skeleton/pkummd_0002-L.txt", encoding: .utf8)
    let pkuLabels = try String(
      contentsOfFile: Self.data + "/skeleton/pkummd_0002-L_label.txt", encoding: .utf8)
    var outcomes = [0, 0]
    func attempt(_ body: () throws -> Void) throws {
      do {
        try body()
        outcomes[0] += 1
      } catch is TensorError {
        outcomes[1] += 1
      }
    }
    for index in 0..<Self.cases {
      let folder = root + "/\(index)"
      try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
      let ntuPath = folder + "/S001C001P001R001A001.skeleton"
      try Self.mutateText(ntu, &random).write(toFile: ntuPath, atomically: false, encoding: .utf8)
      for selection in NTUSkeletonReader.BodySelection.allCases {
        try attempt { _ = try NTUSkeletonReader.read(path: ntuPath, selection: selection) }
        try attempt { _ = try DatasetReaders.ntu(folder: folder, selection: selection) }
      }
      try attempt { _ = try NTUSkeletonReader.maxBodiesPerFrame(path: ntuPath) }
      let msrFolder = folder + "/msr"
      try FileManager.default.createDirectory(atPath: msrFolder, withIntermediateDirectories: true)
      try Self.mutateText(msr, &random).write(
        toFile: msrFolder + "/a02_s01_e01_skeleton3D.txt", atomically: false, encoding: .utf8)
      try attempt { _ = try DatasetReaders.msr(folder: msrFolder) }
      let skeleton = folder + "/0002-L.txt"
      let labels = folder + "/0002-L-label.txt"
      let mutateLabels = try random.nextInt(below: 2) == 0
      try (mutateLabels ? pkuSeed : Self.mutateText(pkuSeed, &random)).write(
        toFile: skeleton, atomically: false, encoding: .utf8)
      try (mutateLabels ? Self.mutateText(pkuLabels, &random) : pkuLabels).write(
        toFile: labels, atomically: false, encoding: .utf8)
      try attempt { _ = try DatasetReaders.pkummd(skeleton: skeleton, labels: labels) }
      try? FileManager.default.removeItem(atPath: folder)
    }
    #expect(outcomes[0] > 0 && outcomes[1] > 0)
    #expect(Self.peakMiB < Self.memoryBoundMiB)
  }

  /// Dataset files read by path: the AGCN arrays and labels, PYSKL annotations, MAMP's `.npz`
  /// and SkelLab's own cache.
  @Test func datasetFiles() throws {
    let root = try Self.folder("datasets")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let cache = root + "/cache-seed.npz"
    let synthetic = SkeletonDataset.synthetic(
      try SyntheticSkeletons(seed: 1, subjects: 1, views: 1, repetitions: 1, frames: 16))
    try synthetic.cache(to: cache)
    let seeds: [(String, [UInt8], (String) throws -> Void)] = [
      (
        "data.npy", try Self.bytes("skeleton/agcn_train_data_joint.npy"),
        {
          _ = try DatasetReaders.agcn(
            data: $0, labels: Self.data + "/skeleton/agcn_train_label.pkl",
            frames: Self.data + "/skeleton/agcn_train_num_frame.npy")
        }
      ),
      (
        "label.pkl", try Self.bytes("skeleton/agcn_train_label.pkl"),
        {
          _ = try DatasetReaders.agcn(
            data: Self.data + "/skeleton/agcn_train_data_joint.npy", labels: $0)
        }
      ),
      (
        "label.npy", try Self.bytes("skeleton/agcn_train_label.npy"),
        {
          _ = try DatasetReaders.agcn(
            data: Self.data + "/skeleton/agcn_train_data_joint.npy", labels: $0)
        }
      ),
      (
        "frames.npy", try Self.bytes("skeleton/agcn_train_num_frame.npy"),
        {
          _ = try DatasetReaders.agcn(
            data: Self.data + "/skeleton/agcn_train_data_joint.npy",
            labels: Self.data + "/skeleton/agcn_train_label.npy", frames: $0)
        }
      ),
      (
        "anno.pkl", try Self.bytes("skeleton/pyskl_tiny_3danno.pkl"),
        { _ = try DatasetReaders.pyskl(path: $0, split: "xsub_train") }
      ),
      (
        "mamp.npz", try Self.bytes("skeleton/mamp_tiny.npz"),
        { _ = try DatasetReaders.npz(path: $0, split: "train") }
      ),
      (
        "cache.npz", [UInt8](try Data(contentsOf: URL(fileURLWithPath: cache))),
        { _ = try SkeletonDataset.cached(path: $0, kind: "cache") }
      ),
    ]
    for (k, (name, seed, read)) in seeds.enumerated() {
      let path = root + "/" + name
      let counts = try Self.fuzz(seed, seedNumber: UInt64(70 + k)) { input in
        try input.write(to: URL(fileURLWithPath: path))
        try read(path)
      }
      #expect(counts.accepted + counts.rejected == Self.cases, "\(name)")
    }
    #expect(Self.peakMiB < Self.memoryBoundMiB)
  }
}
