import CZlib
import Foundation

/// A reader for zip archives: NumPy's `.npz` and PyTorch's `.pth` are both zips.
public enum ZipArchive {
  /// Every member of a zip archive, read through its central directory (stored or deflated,
  /// ZIP64 sizes and offsets, CRC-32 checked). `op` names the caller in errors.
  public static func members(_ data: Data, op: String) throws -> [(name: String, data: Data)] {
    try data.withUnsafeBytes { b in try members(b, op: op) }
  }

  /// Little-endian fields of an archive, read only inside its bytes: every offset is checked
  /// with overflow-checked arithmetic against the real length before it is read.
  private struct Fields {
    let b: UnsafeRawBufferPointer
    let op: String

    /// `a + b`, or an error naming `what` when it overflows.
    func add(_ a: Int, _ c: Int, _ what: String) throws -> Int {
      let (sum, overflow) = a.addingReportingOverflow(c)
      guard !overflow else { throw TensorError(op, "\(what) overflows") }
      return sum
    }

    /// The `width` bytes at `at` as an unsigned integer (width ≤ 8; values ≥ 2^63 throw).
    func unsigned(_ at: Int, _ width: Int, _ what: String) throws -> Int {
      guard at >= 0, at <= b.count, width <= b.count - at else {
        throw TensorError(
          op, "\(what) at byte \(at) lies past the end of the archive (\(b.count) bytes)")
      }
      var value: UInt64 = 0
      for i in 0..<width { value |= UInt64(b[at + i]) << (8 * UInt64(i)) }
      guard let result = Int(exactly: value) else {
        throw TensorError(op, "\(what) \(value) at byte \(at) is too large")
      }
      return result
    }
    func u16(_ at: Int, _ what: String) throws -> Int { try unsigned(at, 2, what) }
    func u32(_ at: Int, _ what: String) throws -> Int { try unsigned(at, 4, what) }
    func u64(_ at: Int, _ what: String) throws -> Int { try unsigned(at, 8, what) }
    /// Whether the 4 bytes at `at` are `signature` (false when they lie outside).
    func has(_ signature: Int, at: Int) -> Bool {
      guard at >= 0, at <= b.count - 4 else { return false }
      return (try? u32(at, "signature")) == signature
    }
  }

  private static func members(_ b: UnsafeRawBufferPointer, op: String) throws -> [(
    name: String, data: Data
  )] {
    let f = Fields(b: b, op: op)
    // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
    var end = -1
    var i = b.count - 22
    while i >= max(0, b.count - 65_557) {
      if f.has(0x0605_4B50, at: i) {
        end = i
        break
      }
      i -= 1
    }
    guard end >= 0 else {
      throw TensorError(op, "not a zip archive (no end-of-directory record)")
    }
    var entries = try f.u16(end + 10, "entry count")
    var directory = try f.u32(end + 16, "central directory offset")
    if entries == 0xFFFF || directory == 0xFFFF_FFFF, end >= 20, f.has(0x0706_4B50, at: end - 20) {
      let record = try f.u64(end - 12, "ZIP64 record offset")  // ZIP64 end-of-directory record
      guard f.has(0x0606_4B50, at: record) else { throw TensorError(op, "broken ZIP64 directory") }
      entries = try f.u64(try f.add(record, 32, "ZIP64 entry count"), "ZIP64 entry count")
      directory = try f.u64(try f.add(record, 48, "ZIP64 directory"), "ZIP64 directory offset")
    }
    // Each central-directory entry takes at least 46 bytes of the archive.
    guard directory <= b.count, entries <= (b.count - directory) / 46 else {
      throw TensorError(
        op,
        "the central directory (\(entries) entries at byte \(directory)) does not fit in the "
          + "archive's \(b.count) bytes (truncated file?)")
    }
    var result: [(name: String, data: Data)] = []
    var at = directory
    for _ in 0..<entries {
      guard f.has(0x0201_4B50, at: at) else {
        throw TensorError(op, "broken central directory at byte \(at)")
      }
      let method = try f.u16(at + 10, "compression method")
      let expectedCRC = try f.u32(at + 16, "CRC-32")
      var compressed = try f.u32(at + 20, "compressed size")
      var uncompressed = try f.u32(at + 24, "uncompressed size")
      let nameLength = try f.u16(at + 28, "name length")
      let extraLength = try f.u16(at + 30, "extra length")
      let commentLength = try f.u16(at + 32, "comment length")
      var local = try f.u32(at + 42, "local header offset")
      let nameEnd = at + 46 + nameLength  // at ≤ b.count; the lengths are below 2^16
      guard nameEnd <= b.count else {
        throw TensorError(op, "the central directory entry at byte \(at) is cut off")
      }
      let name = String(decoding: b[(at + 46)..<nameEnd], as: UTF8.self)
      // ZIP64 sizes and offset, in this order, for the fields set to 0xFFFFFFFF.
      var extra = nameEnd
      let extraEnd = nameEnd + extraLength
      guard extraEnd + commentLength <= b.count else {
        throw TensorError(op, "member '\(name)': its directory entry is cut off")
      }
      while extra + 4 <= extraEnd {
        let id = try f.u16(extra, "extra field id")
        let size = try f.u16(extra + 2, "extra field size")
        if id == 0x0001 {
          var field = extra + 4
          let fieldEnd = min(extraEnd, field + size)
          func next(_ what: String) throws -> Int {
            guard field + 8 <= fieldEnd else {
              throw TensorError(op, "member '\(name)': ZIP64 field lacks its \(what)")
            }
            defer { field += 8 }
            return try f.u64(field, "member '\(name)' ZIP64 \(what)")
          }
          if uncompressed == 0xFFFF_FFFF { uncompressed = try next("uncompressed size") }
          if compressed == 0xFFFF_FFFF { compressed = try next("compressed size") }
          if local == 0xFFFF_FFFF { local = try next("local header offset") }
        }
        extra += 4 + size
      }
      at = extraEnd + commentLength
      guard f.has(0x0403_4B50, at: local) else {
        throw TensorError(op, "member '\(name)' has no local header at byte \(local)")
      }
      let header = try f.add(
        try f.u16(local + 26, "local name length"), try f.u16(local + 28, "local extra length"),
        "local header")
      let dataStart = try f.add(local, 30 + header, "member '\(name)' data offset")
      guard dataStart <= b.count, compressed <= b.count - dataStart else {
        throw TensorError(
          op,
          "member '\(name)' (\(compressed) bytes at byte \(dataStart)) runs past the end of the "
            + "archive (\(b.count) bytes)")
      }
      let member = UnsafeRawBufferPointer(rebasing: b[dataStart..<(dataStart + compressed)])
      let raw: Data
      switch method {
      case 0:
        guard uncompressed == compressed else {
          throw TensorError(
            op, "member '\(name)' is stored with \(compressed) bytes but claims \(uncompressed)")
        }
        raw = Data(member)
      case 8: raw = try inflate(member, expected: uncompressed, name: name, op: op)
      default:
        throw TensorError(
          op, "member '\(name)' uses compression method \(method) (stored or deflate only)")
      }
      let crc = raw.withUnsafeBytes { bytes -> Int in
        var crc: UInt = 0
        var start = 0
        // zlib takes 32-bit lengths: feed it in blocks.
        while start < bytes.count {
          let n = min(bytes.count - start, 1 << 30)
          crc = crc32(
            crc, bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + start },
            UInt32(n))
          start += n
        }
        return Int(crc)
      }
      guard crc == expectedCRC else {
        throw TensorError(op, "member '\(name)' is corrupt (CRC-32 mismatch)")
      }
      result.append((name, raw))
    }
    return result
  }

  /// Deflate cannot expand data by more than about 1032 times; a member that claims more is
  /// refused before anything is allocated.
  static let maximumDeflateRatio = 1032

  /// Inflates a raw deflate stream that claims `expected` bytes: the claim is checked against
  /// the memory limit and deflate's largest ratio before any allocation, and the output may
  /// not exceed it.
  private static func inflate(
    _ data: UnsafeRawBufferPointer, expected: Int, name: String, op: String
  ) throws -> Data {
    let (limit, overflow) = data.count.multipliedReportingOverflow(by: maximumDeflateRatio)
    guard expected <= Shape.maximumBytes, overflow || expected <= limit + 64 else {
      throw TensorError(
        op,
        "member '\(name)' claims to inflate \(data.count) bytes to \(expected) bytes, more than "
          + (expected > Shape.maximumBytes
            ? "the memory limit (\(Shape.maximumBytes >> 20) MiB)" : "deflate can produce"))
    }
    guard data.count <= Int(UInt32.max) else {
      throw TensorError(op, "member '\(name)' is too large to inflate (\(data.count) bytes)")
    }
    var output = Data(count: max(expected, 1))
    var stream = z_stream()
    guard inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
    else {
      throw TensorError(op, "cannot start inflating member '\(name)'")
    }
    defer { inflateEnd(&stream) }
    var status = Z_OK
    output.withUnsafeMutableBytes { target in
      stream.next_in = UnsafeMutablePointer(
        mutating: data.baseAddress?.assumingMemoryBound(to: UInt8.self))
      stream.avail_in = UInt32(data.count)
      var written = 0
      // zlib takes 32-bit lengths: give it the output in blocks.
      while status == Z_OK {
        let room = min(target.count - written, 1 << 30)
        stream.next_out = target.baseAddress?.assumingMemoryBound(to: UInt8.self).advanced(
          by: written)
        stream.avail_out = UInt32(room)
        status = CZlib.inflate(&stream, Z_FINISH)
        written += room - Int(stream.avail_out)
        if status == Z_BUF_ERROR, written < target.count, stream.avail_in > 0 { status = Z_OK }
        if written >= target.count, status != Z_STREAM_END { break }
      }
    }
    guard status == Z_STREAM_END, Int(stream.total_out) == expected else {
      throw TensorError(
        op,
        status == Z_STREAM_END || status == Z_OK || status == Z_BUF_ERROR
          ? "member '\(name)' inflates to a size other than the \(expected) bytes it claims"
          : "member '\(name)' is corrupt (inflate status \(status))")
    }
    output.count = expected
    return output
  }
}
