import Foundation
import TensorCore
import TestSupport
import Testing

/// Hand-made hostile files, one per crash class the hardening issue found: each must give a
/// clear `TensorError` (or a correct result), never a trap, an allocation of gigabytes or a
/// read outside the file.
@Suite("Hostile files", .timed)
struct HostileFileTests {
  // MARK: Zip containers

  /// A stored zip of one member, as NumPy's `savez` writes it.
  func storedZip() throws -> Data {
    let path =
      NSTemporaryDirectory()
      + "skellab-hostile-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).npz"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try NumPy.writeArchive([("x", try Tensor(shape: [3], scalars: [1, 2, 3]))], to: path)
    return try Data(contentsOf: URL(fileURLWithPath: path))
  }

  @Test func zipWithItsDirectoryCutOff() throws {
    let zip = try storedZip()
    // Keep the end record but drop the directory before it: the record points past the data.
    let end = zip.count - 22
    var cut = Data(zip.prefix(end - 30))
    cut.append(zip.suffix(22))
    let text = tensorErrorMessage { _ = try NumPy.parseArchive(cut) }
    #expect(text.contains("central directory") || text.contains("past the end"), "\(text)")
    // Cut anywhere: every prefix is an error, never a trap.
    for length in stride(from: 0, to: zip.count, by: 7) {
      _ = tensorErrorMessage { _ = try NumPy.parseArchive(zip.prefix(length)) }
    }
  }

  /// A zip whose member sizes come from a ZIP64 extra field holding `size`.
  func zip64(size: UInt64) -> Data {
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func le32(_ v: UInt64) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    let name = Array("x.npy".utf8)
    var file = le32(0x0403_4B50) + le16(45) + le16(0) + le16(0) + le16(0) + le16(0)
    file += le32(0) + le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(name.count) + le16(0) + name
    file += Array("payload".utf8)
    let directoryOffset = UInt64(file.count)
    let extra = le16(1) + le16(16) + le64(size) + le64(size)
    var directory = le32(0x0201_4B50) + le16(45) + le16(45) + le16(0) + le16(0) + le16(0)
    directory += le16(0) + le32(0) + le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF)
    directory += le16(name.count) + le16(extra.count) + le16(0) + le16(0) + le16(0) + le32(0)
    directory += le32(0) + name + extra
    let end =
      le32(0x0605_4B50) + le16(0) + le16(0) + le16(1) + le16(1) + le32(UInt64(directory.count))
      + le32(directoryOffset) + le16(0)
    return Data(file + directory + end)
  }

  @Test func zip64SizesNearTwoToThe63And64() {
    for size: UInt64 in [1 << 62, (1 << 63) - 1, 1 << 63, UInt64.max, UInt64.max - 29] {
      let text = tensorErrorMessage { _ = try NumPy.parseArchive(zip64(size: size)) }
      #expect(text.contains("x.npy") || text.contains("too large"), "\(size): \(text)")
    }
  }

  @Test func deflatedMemberClaimingGigabytesIsRefusedBeforeInflating() throws {
    // A 12-byte deflate stream claiming 4 GiB: more than deflate can expand it to.
    var zip = [UInt8](try storedZip())
    // Rewrite the member as deflated, claiming 4 GiB uncompressed, in both headers.
    func put32(_ v: UInt32, _ at: Int) {
      for k in 0..<4 { zip[at + k] = UInt8(v >> (8 * k) & 0xFF) }
    }
    let directory = Int(zip[zip.count - 6]) | Int(zip[zip.count - 5]) << 8
    zip[8] = 8
    zip[directory + 10] = 8
    put32(0xFFFF_FFF0, directory + 24)
    let before = peakMiB()
    let text = tensorErrorMessage { _ = try NumPy.parseArchive(Data(zip)) }
    #expect(text.contains("more than deflate can produce"), "\(text)")
    #expect(peakMiB() - before < 64)
  }

  // MARK: Pickles

  /// A pickle program: protocol 4 header, `body`, STOP.
  func pickle(_ body: [UInt8]) -> Data { Data([0x80, 4] + body + [0x2E]) }

  @Test func pickleLengthsNearTwoToThe63() {
    for opcode: UInt8 in [0x8D, 0x8E] {  // BINUNICODE8, BINBYTES8
      for length: UInt64 in [1 << 62, (1 << 63) - 1, 1 << 63, UInt64.max] {
        let bytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) }
        let text = tensorErrorMessage {
          _ = try PickleFile.parse(pickle([opcode] + bytes + [0x41, 0x42]))
        }
        #expect(text.contains("past the end"), "\(text)")
      }
    }
  }

  @Test func selfReferencingContainers() {
    // EMPTY_LIST, MEMOIZE, BINGET 0, APPEND: a list inside itself.
    let list = tensorErrorMessage { _ = try PickleFile.parse(pickle([0x5D, 0x94, 0x68, 0, 0x61])) }
    #expect(list.contains("holds itself"), "\(list)")
    // EMPTY_DICT, MEMOIZE, key 'a', BINGET 0, SETITEM.
    let dict = tensorErrorMessage {
      _ = try PickleFile.parse(pickle([0x7D, 0x94, 0x8C, 1, 0x61, 0x68, 0, 0x73]))
    }
    #expect(dict.contains("holds itself"), "\(dict)")
    // A list repeated through the memo, doubling 40 times: 2^40 leaves from 200 bytes.
    var doubling: [UInt8] = [0x4B, 1]  // BININT1 1
    for k in 0..<40 {
      doubling += [0x94, 0x68, UInt8(k), 0x68, UInt8(k), 0x86]  // MEMOIZE, GET k twice, TUPLE2
    }
    let blown = tensorErrorMessage { _ = try PickleFile.parse(pickle(doubling)) }
    #expect(blown.contains("too many values"), "\(blown)")
  }

  @Test func deepNestingIsAnErrorNotAStackOverflow() {
    // A million nested lists: EMPTY_LIST ×n then APPEND ×(n-1).
    let n = 1_000_000
    let body = [UInt8](repeating: 0x5D, count: n) + [UInt8](repeating: 0x61, count: n - 1)
    let text = tensorErrorMessage { _ = try PickleFile.parse(pickle(body)) }
    #expect(text.contains("nest more than"), "\(text)")
  }

  @Test func longAppendRunsTakeLinearTime() throws {
    // 200k single APPENDs and 100k SETITEMs: quadratic copying took minutes.
    var body: [UInt8] = [0x5D]
    for _ in 0..<200_000 { body += [0x4B, 7, 0x61] }
    let start = Date()
    guard case .list(let items) = try PickleFile.parse(pickle(body)) else {
      Issue.record("not a list")
      return
    }
    #expect(items.count == 200_000)
    var dict: [UInt8] = [0x7D]
    for k in 0..<100_000 {
      dict += [0x4A] + (0..<4).map { UInt8(k >> (8 * $0) & 0xFF) } + [0x4B, 1, 0x73]
    }
    guard case .dict(let entries) = try PickleFile.parse(pickle(dict)) else {
      Issue.record("not a dict")
      return
    }
    #expect(entries.count == 100_000)
    #expect(Date().timeIntervalSince(start) < 20)
  }

  /// An interruption (Ctrl-C in the REPL) stops a long pickle program with an error; the test
  /// passes its own check instead of raising the process-wide flag other suites read.
  @Test func ctrlCStopsALongPickle() {
    var body: [UInt8] = [0x5D]
    for _ in 0..<200_000 { body += [0x4B, 7, 0x61] }
    let text = tensorErrorMessage {
      _ = try PickleFile.parse(pickle(body), isInterrupted: { true })
    }
    #expect(text.contains("interrupted"), "\(text)")
  }

  @Test func numpyScalarsOutOfRangeAreErrors() {
    // numpy.core.multiarray.scalar(dtype('u8'), bytes of 2^64 - 1) as an integer label.
    let global = Array("cnumpy.core.multiarray\nscalar\n".utf8)
    let dtype = Array("cnumpy\ndtype\n".utf8) + [0x8C, 2] + Array("u8".utf8) + [0x85, 0x52]
    let raw: [UInt8] = [0x43, 8] + [UInt8](repeating: 0xFF, count: 8)
    let text = tensorErrorMessage {
      _ = try PickleFile.parse(pickle(global + dtype + raw + [0x86, 0x52]))
    }
    #expect(text.contains("does not fit"), "\(text)")
  }

  // MARK: Tensors rebuilt from storages

  /// A `.pth` zip with one float storage of `elements` and a tensor of `size`, `stride` and
  /// `offset` over it.
  func checkpoint(size: [Int], stride: [Int], offset: Int, elements: Int) throws -> Data {
    func int(_ v: Int) -> [UInt8] {
      [0x8A, 8] + (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }  // LONG1
    }
    func tuple(_ values: [Int]) -> [UInt8] { [0x28] + values.flatMap(int) + [0x74] }
    var program: [UInt8] = [0x80, 2]
    program += Array("ctorch._utils\n_rebuild_tensor_v2\n".utf8)
    program += [0x28]  // MARK of the argument tuple
    program += [0x28, 0x8C, 7] + Array("storage".utf8)  // persistent id
    program += Array("ctorch\nFloatStorage\n".utf8)
    program += [0x8C, 1] + Array("0".utf8) + [0x8C, 3] + Array("cpu".utf8) + int(elements)
    program += [0x74, 0x51]  // TUPLE, BINPERSID
    program += int(offset) + tuple(size) + tuple(stride) + [0x89, 0x4E]
    program += [0x74, 0x52, 0x2E]  // TUPLE, REDUCE, STOP
    return try rawZip([
      ("archive/data.pkl", Data(program)), ("archive/data/0", Data(count: elements * 4)),
    ])
  }

  /// A stored zip of named members.
  func rawZip(_ members: [(String, Data)]) throws -> Data {
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16(v >> 16 & 0xFFFF) }
    var archive: [UInt8] = []
    var directory: [UInt8] = []
    for (name, data) in members {
      let file = Array(name.utf8)
      let crc = Int(crc32Bytes([UInt8](data)))
      let offset = archive.count
      archive += le32(0x0403_4B50) + le16(20) + le16(0) + le16(0) + le16(0) + le16(0)
      archive += le32(crc) + le32(data.count) + le32(data.count) + le16(file.count) + le16(0) + file
      archive += [UInt8](data)
      directory += le32(0x0201_4B50) + le16(20) + le16(20) + le16(0) + le16(0) + le16(0) + le16(0)
      directory += le32(crc) + le32(data.count) + le32(data.count) + le16(file.count) + le16(0)
      directory += le16(0) + le16(0) + le16(0) + le32(0) + le32(offset) + file
    }
    let start = archive.count
    archive += directory
    archive += le32(0x0605_4B50) + le16(0) + le16(0) + le16(members.count) + le16(members.count)
    archive += le32(directory.count) + le32(start) + le16(0)
    return Data(archive)
  }

  /// CRC-32 (IEEE), bit by bit: test data is small.
  func crc32Bytes(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc ^= UInt32(byte)
      for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
  }

  @Test func rebuiltTensorsStayInsideTheirStorage() throws {
    // The valid case reads back.
    let valid = try TorchFile.parse(
      try checkpoint(size: [2, 2], stride: [2, 1], offset: 0, elements: 4))
    guard case .tensor(let t) = valid else {
      Issue.record("not a tensor: \(valid)")
      return
    }
    #expect(t.shape == [2, 2])
    // Strides and offsets near 2^62 and 2^63 wrapped the bound check and read outside.
    for (stride, offset) in [
      ([1 << 62, 1], 0), ([2, 1], 1 << 62), ([(1 << 62) + 1, 1], 3), ([Int.max, 1], 0),
      ([2, 1], Int.max - 1),
    ] {
      let text = tensorErrorMessage {
        _ = try TorchFile.parse(
          try checkpoint(size: [2, 2], stride: stride, offset: offset, elements: 4))
      }
      #expect(text.contains("overflows") || text.contains("runs past"), "\(text)")
    }
  }

  // MARK: Safetensors

  @Test func overlappingSafetensorsOffsetsAreRefused() {
    let header =
      #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
    var data = Data((0..<8).map { UInt8(header.utf8.count >> (8 * $0) & 0xFF) })
    data.append(Data(header.utf8))
    data.append(Data(count: 12))
    let text = tensorErrorMessage { _ = try SafeTensors.parse(data) }
    #expect(text.contains("overlap"), "\(text)")
  }

  func peakMiB() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss / 1024
  }
}
