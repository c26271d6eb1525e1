import Distributed
import Foundation

/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping each
/// name to `{dtype, shape, data_offsets}` (plus optional `__metadata__` strings), then the raw
/// little-endian, row-major data.
public enum SafeTensors {
  /// One stored array: its dtype as written in the file, its shape, and its values as float32
  /// (integers convert exactly up to 2^24).
  public struct Entry: Sendable {
    public let dtype: String
    public let shape: [Int]
    public let tensor: Tensor
    /// Integer values of an I64/I32/U8/BOOL entry, without the float32 round trip.
    public let integers: [Int]?
  }

  /// The contents of a safetensors file.
  public struct File: Sendable {
    /// Entries in file (offset) order.
    public let names: [String]
    public let entries: [String: Entry]
    public let metadata: [String: String]

    /// The tensor stored under `name`; throws naming the file and the available names.
    public func tensor(_ name: String) throws -> Tensor {
      guard let entry = entries[name] else {
        throw TensorError(
          "safetensors",
          "no tensor named '\(name)'; the file has \(names.prefix(12).joined(separator: ", "))"
            + (names.count > 12 ? ", …" : ""))
      }
      return entry.tensor
    }

    /// The integer values stored under `name` (I64 labels and token indices).
    public func integers(_ name: String) throws -> [Int] {
      guard let entry = entries[name], let values = entry.integers else {
        throw TensorError("safetensors", "no integer tensor named '\(name)'")
      }
      return values
    }
  }

  /// Reads a safetensors file, validating the header, every dtype, shape and byte range.
  public static func read(path: String) throws -> File {
    try parse(try bytes(path: path), name: path)
  }

  /// The bytes of the file at `path` (mapped when that is safe); throws naming the file.
  public static func bytes(path: String) throws -> Data {
    do {
      return try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
    } catch {
      throw TensorError("safetensors", "cannot read '\(path)': \(error.localizedDescription)")
    }
  }

  /// `parse`, with errors that begin with `name` (the file's path).
  public static func parse(_ data: Data, name: String) throws -> File {
    do {
      return try parse(data)
    } catch let error as TensorError {
      throw TensorError(error.op, "\(name): \(error.message)")
    }
  }

  /// Parses safetensors bytes.
  public static func parse(_ data: Data) throws -> File {
    guard data.count >= 8 else {
      throw TensorError(
        "safetensors", "file is \(data.count) bytes, shorter than its 8-byte header length")
    }
    let headerLength = data.withUnsafeBytes {
      UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))
    }
    guard headerLength <= UInt64(data.count - 8), headerLength < 100_000_000 else {
      throw TensorError(
        "safetensors", "header length \(headerLength) exceeds the file size \(data.count)")
    }
    let headerEnd = 8 + Int(headerLength)
    let json: CompactJSON
    do {
      json = try data.withUnsafeBytes {
        try CompactJSON.parse(UnsafeRawBufferPointer(rebasing: $0[8..<headerEnd]))
      }
    } catch let error as TensorError {
      throw TensorError("safetensors", "header is not valid JSON (\(error.message))")
    }
    guard case .object(let header) = json else {
      throw TensorError("safetensors", "header is not a JSON object")
    }
    var metadata: [String: String] = [:]
    var seen = Set<String>()
    for (name, value) in header {
      guard seen.insert(name).inserted else {
        throw TensorError("safetensors", "entry '\(name)' appears twice in the header")
      }
      guard name == "__metadata__" else { continue }
      guard case .object(let pairs) = value else {
        throw TensorError("safetensors", "__metadata__ must map strings to strings")
      }
      for (key, item) in pairs {
        guard case .string(let text) = item else {
          throw TensorError("safetensors", "__metadata__ must map strings to strings")
        }
        metadata[key] = text
      }
    }
    let dataSize = data.count - headerEnd
    var entries: [String: Entry] = [:]
    var ordered: [(Int, String)] = []
    var spans: [(begin: Int, end: Int, name: String)] = []
    for (name, value) in header where name != "__metadata__" {
      var fields: [String: CompactJSON] = [:]
      if case .object(let members) = value { for (k, v) in members { fields[k] = v } }
      guard case .string(let dtype)? = fields["dtype"], case .array(let dims)? = fields["shape"],
        case .array(let range)? = fields["data_offsets"], range.count == 2
      else {
        throw TensorError("safetensors", "entry '\(name)' lacks dtype, shape or data_offsets")
      }
      let shapeValues = dims.map(\.integer)
      let offsets = range.map(\.integer)
      guard shapeValues.allSatisfy({ $0 != nil }), let begin = offsets[0], let end = offsets[1]
      else {
        throw TensorError(
          "safetensors", "entry '\(name)' has a shape or offset that is not an integer")
      }
      let shape = shapeValues.map { $0 ?? 0 }
      guard let width = byteWidth[dtype] else {
        throw TensorError(
          "safetensors",
          "entry '\(name)' has unsupported dtype \(dtype) "
            + "(supported: \(byteWidth.keys.sorted().joined(separator: ", ")))")
      }
      let count = try Shape.elementCount(shape, op: "safetensors")
      let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
      guard begin >= 0, end >= begin, end <= dataSize, !overflow, end - begin == bytes else {
        throw TensorError(
          "safetensors",
          "entry '\(name)' (\(dtype) \(shapeString(shape))) has data offsets "
            + "[\(begin), \(end)] that do not fit \(count) values in \(dataSize) data bytes")
      }
      let (tensor, integers) = data.withUnsafeBytes { raw in
        decode(raw, from: headerEnd + begin, count: count, dtype: dtype, shape: shape)
      }
      entries[name] = Entry(dtype: dtype, shape: shape, tensor: tensor, integers: integers)
      ordered.append((begin, name))
      spans.append((begin, end, name))
    }
    // No two entries may share bytes (the format lays them end to end).
    spans.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
    for (previous, next) in zip(spans, spans.dropFirst()) where next.begin < previous.end {
      throw TensorError(
        "safetensors",
        "entries '\(previous.name)' [\(previous.begin), \(previous.end)] and '\(next.name)' "
          + "[\(next.begin), \(next.end)] overlap")
    }
    return File(
      names: ordered.sorted { $0 < $1 }.map(\.1), entries: entries, metadata: metadata)
  }

  private static let byteWidth: [String: Int] = [
    "F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1,
  ]

  private static func decode(
    _ raw: UnsafeRawBufferPointer, from start: Int, count: Int, dtype: String, shape: [Int]
  ) -> (Tensor, [Int]?) {
    var integers: [Int]? = nil
    let tensor = Tensor(validShape: shape) { out in
      func load<T: FixedWidthInteger>(_: T.Type, _ i: Int) -> T {
        T(
          littleEndian: raw.loadUnaligned(
            fromByteOffset: start + i * MemoryLayout<T>.size, as: T.self))
      }
      switch dtype {
      case "F32": for i in 0..<count { out[i] = Float(bitPattern: load(UInt32.self, i)) }
      case "F64": for i in 0..<count { out[i] = Float(Double(bitPattern: load(UInt64.self, i))) }
      case "F16": for i in 0..<count { out[i] = halfToFloat(load(UInt16.self, i)) }
      case "BF16":
        for i in 0..<count { out[i] = Float(bitPattern: UInt32(load(UInt16.self, i)) << 16) }
      default:
        var values = [Int](repeating: 0, count: count)
        for i in 0..<count {
          switch dtype {
          case "I64": values[i] = Int(load(Int64.self, i))
          case "I32": values[i] = Int(load(Int32.self, i))
          case "I16": values[i] = Int(load(Int16.self, i))
          case "I8": values[i] = Int(load(Int8.self, i))
          default: values[i] = Int(load(UInt8.self, i))
          }
          out[i] = Float(values[i])
        }
        integers = values
      }
    }
    return (tensor, integers)
  }

  private static func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
      let value = Float(mantissa) * 0x1p-24
      return sign != 0 ? -value : value
    }
    if exponent == 31 {
      return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
  }

  /// A value to write: float32 values or integers stored as I64.
  public enum Value: Sendable {
    case float32(Tensor)
    case int64(shape: [Int], values: [Int])
  }

  /// Serialises named values (written in name order) with optional metadata.
  public static func encode(_ values: [String: Value], metadata: [String: String] = [:]) throws
    -> Data
  {
    var header: [String: Any] = [:]
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var body = Data()
    for name in values.keys.sorted() {
      guard let value = values[name] else { continue }
      let begin = body.count
      switch value {
      case .float32(let tensor):
        tensor.withUnsafeBufferPointer { buffer in
          for v in buffer {
            withUnsafeBytes(of: v.bitPattern.littleEndian) { body.append(contentsOf: $0) }
          }
        }
        header[name] = [
          "dtype": "F32", "shape": tensor.shape, "data_offsets": [begin, body.count],
        ]
      case .int64(let shape, let integers):
        guard try Shape.elementCount(shape, op: "safetensors") == integers.count else {
          throw TensorError(
            "safetensors", "'\(name)': \(integers.count) integers for shape \(shapeString(shape))")
        }
        for v in integers {
          withUnsafeBytes(of: Int64(v).littleEndian) { body.append(contentsOf: $0) }
        }
        header[name] = ["dtype": "I64", "shape": shape, "data_offsets": [begin, body.count]]
      }
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    // Pad the header with spaces so the data starts 8-byte aligned.
    while (8 + json.count) % 8 != 0 { json.append(0x20) }
    var file = Data()
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
    file.append(json)
    file.append(body)
    return file
  }

  /// Writes named values atomically: to a temporary file beside `path`, then renamed over it,
  /// so a crash never leaves a half-written file.
  public static func write(
    _ values: [String: Value], to path: String, metadata: [String: String] = [:]
  )
    throws
  {
    let data = try encode(values, metadata: metadata)
    try AtomicFile.write(data, to: path, op: "safetensors")
  }
}

/// Writing a whole file atomically: a temporary in the same folder, flushed, then renamed.
public enum AtomicFile {
  /// The temporary a write of the file `name` goes through: `.NAME.tmp-PID`.
  static func temporaryName(_ name: String) -> String {
    ".\(name)\(temporaryMarker)\(ProcessInfo.processInfo.processIdentifier)"
  }
  private static let temporaryMarker = ".tmp-"

  /// Whether `name` is a temporary that `write` left behind (a killed process's).
  public static func isTemporary(_ name: String) -> Bool {
    name.hasPrefix(".") && name.contains(temporaryMarker)
  }

  /// Writes `data` to `path` through a temporary file and a rename. In an MPI job only rank 0
  /// writes (every rank runs the same script and holds the same values); the others return.
  public static func write(_ data: Data, to path: String, op: String) throws {
    guard World.current.rank == 0 else { return }
    let url = URL(fileURLWithPath: path)
    let temporary = url.deletingLastPathComponent().appendingPathComponent(
      temporaryName(url.lastPathComponent))
    do {
      try data.write(to: temporary)
      // rename(2) replaces the target atomically within one file system.
      guard Foundation.rename(temporary.path, url.path) == 0 else {
        throw TensorError(op, "cannot rename '\(temporary.path)' to '\(path)': errno \(errno)")
      }
    } catch let error as TensorError {
      try? FileManager.default.removeItem(at: temporary)
      throw error
    } catch {
      try? FileManager.default.removeItem(at: temporary)
      throw TensorError(op, "cannot write '\(path)': \(error.localizedDescription)")
    }
  }
}
