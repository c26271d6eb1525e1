import CZlib
import Foundation

/// A reader for zip archives: NumPy's `.npz` and PyTorch's `.pth` are both zips.
public enum ZipArchive {
  /// Every member of a zip archive, read through its central directory (stored or deflated,
  /// ZIP64 sizes and offsets, CRC-32 checked). `op` names the caller in errors.
  public static func members(_ data: Data, op: String) throws -> [(name: String, data: Data)] {
    try data.withUnsafeBytes { b in try members(b, op: op) }
  }

  private static func members(_ b: UnsafeRawBufferPointer, op: String) throws -> [(
    name: String, data: Data
  )] {
    func u16(_ at: Int) -> Int { at + 2 <= b.count ? Int(b[at]) | Int(b[at + 1]) << 8 : 0 }
    func u32(_ at: Int) -> Int { at + 4 <= b.count ? u16(at) | u16(at + 2) << 16 : 0 }
    func u64(_ at: Int) -> Int { u32(at) | u32(at + 4) << 32 }
    // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
    var end = -1
    var i = b.count - 22
    while i >= max(0, b.count - 65_557) {
      if u32(i) == 0x0605_4B50 {
        end = i
        break
      }
      i -= 1
    }
    guard end >= 0 else {
      throw TensorError(op, "not a zip archive (no end-of-directory record)")
    }
    var entries = u16(end + 10)
    var directory = u32(end + 16)
    if entries == 0xFFFF || directory == 0xFFFF_FFFF, end >= 20, u32(end - 20) == 0x0706_4B50 {
      let record = u64(end - 12)  // ZIP64 end-of-central-directory record
      guard u32(record) == 0x0606_4B50 else { throw TensorError(op, "broken ZIP64 directory") }
      entries = u64(record + 32)
      directory = u64(record + 48)
    }
    var result: [(name: String, data: Data)] = []
    var at = directory
    for _ in 0..<entries {
      guard u32(at) == 0x0201_4B50 else {
        throw TensorError(op, "broken central directory at byte \(at)")
      }
      let method = u16(at + 10)
      let expectedCRC = u32(at + 16)
      var compressed = u32(at + 20)
      var uncompressed = u32(at + 24)
      let nameLength = u16(at + 28)
      let extraLength = u16(at + 30)
      let commentLength = u16(at + 32)
      var local = u32(at + 42)
      let name = String(decoding: b[(at + 46)..<min(b.count, at + 46 + nameLength)], as: UTF8.self)
      // ZIP64 sizes and offset, in this order, for the fields set to 0xFFFFFFFF.
      var extra = at + 46 + nameLength
      let extraEnd = extra + extraLength
      while extra + 4 <= extraEnd {
        let id = u16(extra)
        let size = u16(extra + 2)
        if id == 0x0001 {
          var field = extra + 4
          if uncompressed == 0xFFFF_FFFF { uncompressed = u64(field); field += 8 }
          if compressed == 0xFFFF_FFFF { compressed = u64(field); field += 8 }
          if local == 0xFFFF_FFFF { local = u64(field) }
        }
        extra += 4 + size
      }
      at = extraEnd + commentLength
      guard u32(local) == 0x0403_4B50 else {
        throw TensorError(op, "member '\(name)' has no local header at byte \(local)")
      }
      let dataStart = local + 30 + u16(local + 26) + u16(local + 28)
      guard dataStart + compressed <= b.count else {
        throw TensorError(op, "member '\(name)' runs past the end of the archive")
      }
      let member = Data(UnsafeRawBufferPointer(rebasing: b[dataStart..<(dataStart + compressed)]))
      let raw: Data
      switch method {
      case 0: raw = member
      case 8: raw = try inflate(member, expected: uncompressed, name: name, op: op)
      default:
        throw TensorError(
          op, "member '\(name)' uses compression method \(method) (stored or deflate only)")
      }
      let crc = raw.withUnsafeBytes { bytes -> Int in
        Int(crc32(0, bytes.bindMemory(to: UInt8.self).baseAddress, UInt32(bytes.count)))
      }
      guard crc == expectedCRC else {
        throw TensorError(op, "member '\(name)' is corrupt (CRC-32 mismatch)")
      }
      result.append((name, raw))
    }
    return result
  }

  private static func inflate(_ data: Data, expected: Int, name: String, op: String) throws -> Data
  {
    guard expected <= Shape.maximumBytes else {
      throw TensorError(op, "member '\(name)' would inflate to \(expected) bytes")
    }
    var output = [UInt8](repeating: 0, count: max(expected, 1))
    var input = [UInt8](data)
    var stream = z_stream()
    guard inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
    else {
      throw TensorError(op, "cannot start inflating member '\(name)'")
    }
    defer { inflateEnd(&stream) }
    let status = input.withUnsafeMutableBufferPointer { source in
      output.withUnsafeMutableBufferPointer { target -> Int32 in
        stream.next_in = source.baseAddress
        stream.avail_in = UInt32(source.count)
        stream.next_out = target.baseAddress
        stream.avail_out = UInt32(target.count)
        return CZlib.inflate(&stream, Z_FINISH)
      }
    }
    guard status == Z_STREAM_END, Int(stream.total_out) == expected else {
      throw TensorError(op, "member '\(name)' is corrupt (inflate status \(status))")
    }
    return Data(output.prefix(expected))
  }
}
