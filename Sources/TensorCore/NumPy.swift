import CZlib
import Foundation

/// NumPy's `.npy` (one array) and `.npz` (a zip of `.npy` members, stored or deflated,
/// ZIP64 included) files. Values become float32 tensors; integer arrays also keep their exact
/// integers.
public enum NumPy {
  /// One array read from a file.
  public struct Array: Sendable {
    /// NumPy's type string (`<f4`, `<f8`, `<i8`, `|u1`, ...).
    public let dtype: String
    public let tensor: Tensor
    /// The exact values of an integer or boolean array.
    public let integers: [Int]?
  }

  // MARK: .npy

  /// Reads one `.npy` file.
  public static func readArray(path: String) throws -> Array {
    let data = try read(path)
    do {
      return try parseArray(data)
    } catch let error as TensorError {
      throw TensorError(error.op, "\(path): \(error.message)")
    }
  }

  /// Parses `.npy` bytes: magic, version, header dictionary, then the data.
  public static func parseArray(_ data: Data) throws -> Array {
    // The header as bytes; the data section is read in place.
    let bytes = [UInt8](data.prefix(65_548))
    guard bytes.count >= 10, bytes[0] == 0x93, bytes[1...5] == [0x4E, 0x55, 0x4D, 0x50, 0x59][...]
    else {
      throw TensorError("npy", "not a .npy file (missing the \\x93NUMPY magic)")
    }
    let major = bytes[6]
    let (headerLength, headerStart): (Int, Int)
    switch major {
    case 1: (headerLength, headerStart) = (Int(bytes[8]) | Int(bytes[9]) << 8, 10)
    case 2, 3:
      guard bytes.count >= 12 else { throw TensorError("npy", "truncated header") }
      headerLength =
        Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
      headerStart = 12
    default: throw TensorError("npy", "unsupported .npy version \(major)")
    }
    guard headerStart + headerLength <= bytes.count else {
      throw TensorError("npy", "header of \(headerLength) bytes runs past the end of the file")
    }
    let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
    guard let descr = match(header, "'descr':\\s*'([^']*)'"),
      let order = match(header, "'fortran_order':\\s*(True|False)"),
      let shapeText = match(header, "'shape':\\s*\\(([^)]*)\\)")
    else {
      throw TensorError("npy", "header lacks descr, fortran_order or shape: \(header)")
    }
    let shape = try shapeText.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
      .filter { !$0.isEmpty }.map { text -> Int in
        guard let size = Int(text), size >= 0 else {
          throw TensorError("npy", "bad shape entry '\(text)' in \(header)")
        }
        return size
      }
    let count = try Shape.elementCount(shape, op: "npy")
    let (width, decode) = try decoder(descr)
    let start = headerStart + headerLength
    guard data.count - start >= count * width else {
      throw TensorError(
        "npy",
        "\(descr) \(shapeString(shape)) needs \(count * width) data bytes, the file has "
          + "\(data.count - start)")
    }
    // The common case, little-endian float32 in C order, is one copy.
    if descr == "<f4" && (order != "True" || shape.count <= 1) {
      let tensor = try Tensor(shape: shape, op: "npy") { out in
        data.withUnsafeBytes { raw in
          guard let base = raw.baseAddress, let target = out.baseAddress, count > 0 else { return }
          UnsafeMutableRawPointer(target).copyMemory(from: base + start, byteCount: count * 4)
        }
      }
      return Array(dtype: descr, tensor: tensor, integers: nil)
    }
    var values = [Double](repeating: 0, count: count)
    data.withUnsafeBytes { raw in
      for i in 0..<count { values[i] = decode(raw, start + i * width) }
    }
    if order == "True" && shape.count > 1 { values = cOrder(fromFortran: values, shape: shape) }
    let tensor = try Tensor(shape: shape, scalars: values.map { Float($0) })
    var integers: [Int]?
    if !descr.contains("f") {
      integers = try values.map { value in
        guard let exact = Int(exactly: value) else {
          throw TensorError("npy", "\(descr) value \(value) does not fit in a 64-bit integer")
        }
        return exact
      }
    }
    return Array(dtype: descr, tensor: tensor, integers: integers)
  }

  /// Reorders column-major (Fortran) values into row-major order: element (i0, ..., in) sits
  /// at i0 + shape[0]·(i1 + shape[1]·(...)) in the source, the first axis fastest.
  package static func cOrder(fromFortran values: [Double], shape: [Int]) -> [Double] {
    var sourceStrides = [Int](repeating: 1, count: shape.count)
    for axis in 1..<shape.count { sourceStrides[axis] = sourceStrides[axis - 1] * shape[axis - 1] }
    var result: [Double] = []
    result.reserveCapacity(values.count)
    var index = [Int](repeating: 0, count: shape.count)
    var source = 0
    for _ in 0..<values.count {
      result.append(values[source])
      var axis = shape.count - 1
      while axis >= 0 {
        index[axis] += 1
        source += sourceStrides[axis]
        if index[axis] < shape[axis] { break }
        source -= sourceStrides[axis] * shape[axis]
        index[axis] = 0
        axis -= 1
      }
    }
    return result
  }

  private static func decoder(_ descr: String) throws -> (
    Int, (UnsafeRawBufferPointer, Int) -> Double
  ) {
    let little = !descr.hasPrefix(">")
    func load<T: FixedWidthInteger>(_: T.Type) -> (UnsafeRawBufferPointer, Int) -> Double {
      { raw, at in
        let v = raw.loadUnaligned(fromByteOffset: at, as: T.self)
        return Double(little ? T(littleEndian: v) : T(bigEndian: v))
      }
    }
    switch descr.dropFirst() {
    case "f4":
      return (
        4,
        { raw, at in
          let v = raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)
          return Double(Float(bitPattern: little ? UInt32(littleEndian: v) : UInt32(bigEndian: v)))
        }
      )
    case "f8":
      return (
        8,
        { raw, at in
          let v = raw.loadUnaligned(fromByteOffset: at, as: UInt64.self)
          return Double(bitPattern: little ? UInt64(littleEndian: v) : UInt64(bigEndian: v))
        }
      )
    case "i8": return (8, load(Int64.self))
    case "i4": return (4, load(Int32.self))
    case "i2": return (2, load(Int16.self))
    case "i1": return (1, load(Int8.self))
    case "u8": return (8, load(UInt64.self))
    case "u4": return (4, load(UInt32.self))
    case "u2": return (2, load(UInt16.self))
    case "u1", "b1": return (1, load(UInt8.self))
    default:
      throw TensorError(
        "npy", "unsupported dtype '\(descr)' (float32/64, signed and unsigned integers, bool)")
    }
  }

  private static func match(_ text: String, _ pattern: String) -> String? {
    guard let regex = try? NSRegularExpression(pattern: pattern),
      let found = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
      let range = Range(found.range(at: 1), in: text)
    else { return nil }
    return String(text[range])
  }

  /// A float32 tensor as `.npy` bytes (version 1.0, C order, header padded to 64 bytes).
  public static func encodeArray(_ tensor: Tensor) -> Data {
    let shape =
      tensor.shape.map(String.init).joined(separator: ", ") + (tensor.rank == 1 ? "," : "")
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(shape)), }"
    let unpadded = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    var data = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
    let length = UInt16(header.utf8.count)
    data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
    data.append(contentsOf: header.utf8)
    tensor.withUnsafeBufferPointer { buffer in
      for v in buffer {
        withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) }
      }
    }
    return data
  }

  /// Writes one tensor as a `.npy` file, atomically.
  public static func writeArray(_ tensor: Tensor, to path: String) throws {
    try AtomicFile.write(encodeArray(tensor), to: path, op: "npy")
  }

  // MARK: .npz

  /// Reads every array of a `.npz` file, in archive order, named without `.npy`.
  public static func readArchive(path: String) throws -> [(name: String, array: Array)] {
    let data = try read(path)
    do {
      return try parseArchive(data)
    } catch let error as TensorError {
      throw TensorError(error.op, "\(path): \(error.message)")
    }
  }

  /// Parses a zip archive of `.npy` members.
  public static func parseArchive(_ data: Data) throws -> [(name: String, array: Array)] {
    try ZipArchive.members(data, op: "npz").map { member in
      let array: Array
      do {
        array = try parseArray(member.data)
      } catch let error as TensorError {
        throw TensorError("npz", "member '\(member.name)': \(error.message)")
      }
      let name = member.name
      return (name.hasSuffix(".npy") ? String(name.dropLast(4)) : name, array)
    }
  }

  /// Writes tensors as a `.npz` archive (members stored, as `numpy.savez` does), atomically.
  public static func writeArchive(_ arrays: [(name: String, tensor: Tensor)], to path: String)
    throws
  {
    var archive = Data()
    var directory = Data()
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16(v >> 16 & 0xFFFF) }
    for (name, tensor) in arrays {
      let member = encodeArray(tensor)
      guard archive.count + member.count < 0xFFFF_FFFF else {
        throw TensorError("npz", "archive over 4 GiB: write the arrays as separate .npy files")
      }
      let file = Swift.Array((name + ".npy").utf8)
      let crc = member.withUnsafeBytes { raw -> Int in
        Int(crc32(0, raw.bindMemory(to: UInt8.self).baseAddress, UInt32(raw.count)))
      }
      let offset = archive.count
      archive.append(
        contentsOf: le32(0x0403_4B50) + le16(20) + le16(0) + le16(0) + le16(0) + le16(0x21))
      archive.append(contentsOf: le32(crc) + le32(member.count) + le32(member.count))
      archive.append(contentsOf: le16(file.count) + le16(0) + file)
      archive.append(member)
      directory.append(contentsOf: le32(0x0201_4B50) + le16(20) + le16(20) + le16(0) + le16(0))
      directory.append(
        contentsOf: le16(0) + le16(0x21) + le32(crc) + le32(member.count) + le32(member.count))
      directory.append(
        contentsOf: le16(file.count) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0))
      directory.append(contentsOf: le32(offset) + file)
    }
    let directoryOffset = archive.count
    archive.append(directory)
    archive.append(
      contentsOf: le32(0x0605_4B50) + le16(0) + le16(0) + le16(arrays.count) + le16(arrays.count))
    archive.append(contentsOf: le32(directory.count) + le32(directoryOffset) + le16(0))
    try AtomicFile.write(archive, to: path, op: "npz")
  }

  private static func read(_ path: String) throws -> Data {
    do {
      return try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
    } catch {
      throw TensorError("numpy", "cannot read '\(path)': \(error.localizedDescription)")
    }
  }
}
