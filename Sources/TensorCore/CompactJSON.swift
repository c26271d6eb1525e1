import Foundation

/// A small JSON reader for file headers (safetensors): values as a compact enum instead of
/// Foundation's object graph, which took about 4 KB per entry of a large header. Nesting is
/// limited, so a hostile header cannot overflow the stack.
enum CompactJSON: Equatable {
  case null
  case bool(Bool)
  case number(Double)
  case string(String)
  case array([CompactJSON])
  /// Members in file order.
  case object([(String, CompactJSON)])

  static func == (a: CompactJSON, b: CompactJSON) -> Bool {
    switch (a, b) {
    case (.null, .null): true
    case (.bool(let x), .bool(let y)): x == y
    case (.number(let x), .number(let y)): x == y
    case (.string(let x), .string(let y)): x == y
    case (.array(let x), .array(let y)): x == y
    case (.object(let x), .object(let y)):
      x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    default: false
    }
  }

  static let maximumDepth = 64

  /// Parses one JSON value filling all of `bytes` (surrounding whitespace allowed); errors
  /// name the byte offset.
  static func parse(_ bytes: UnsafeRawBufferPointer) throws -> CompactJSON {
    var reader = Reader(bytes: bytes)
    let value = try reader.value(depth: 0)
    reader.skipSpace()
    guard reader.at == bytes.count else { throw reader.fail("text after the JSON value") }
    return value
  }

  /// The value as an integer, when it is a whole number that fits.
  var integer: Int? {
    guard case .number(let d) = self, d == d.rounded(), abs(d) < 9.0e15 else { return nil }
    return Int(d)
  }

  struct Reader {
    let bytes: UnsafeRawBufferPointer
    var at = 0

    func fail(_ message: String) -> TensorError {
      TensorError("json", "byte \(at): \(message)")
    }

    mutating func skipSpace() {
      while at < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[at]) { at += 1 }
    }

    mutating func expect(_ word: String) throws {
      for byte in word.utf8 {
        guard at < bytes.count, bytes[at] == byte else { throw fail("expected '\(word)'") }
        at += 1
      }
    }

    mutating func value(depth: Int) throws -> CompactJSON {
      guard depth <= CompactJSON.maximumDepth else {
        throw fail("nested more than \(CompactJSON.maximumDepth) deep")
      }
      skipSpace()
      guard at < bytes.count else { throw fail("unexpected end") }
      switch bytes[at] {
      case UInt8(ascii: "{"):
        at += 1
        var members: [(String, CompactJSON)] = []
        skipSpace()
        if at < bytes.count, bytes[at] == UInt8(ascii: "}") {
          at += 1
          return .object(members)
        }
        while true {
          skipSpace()
          let key = try string()
          skipSpace()
          try expect(":")
          members.append((key, try value(depth: depth + 1)))
          skipSpace()
          guard at < bytes.count else { throw fail("unclosed object") }
          if bytes[at] == UInt8(ascii: "}") {
            at += 1
            return .object(members)
          }
          try expect(",")
        }
      case UInt8(ascii: "["):
        at += 1
        var items: [CompactJSON] = []
        skipSpace()
        if at < bytes.count, bytes[at] == UInt8(ascii: "]") {
          at += 1
          return .array(items)
        }
        while true {
          items.append(try value(depth: depth + 1))
          skipSpace()
          guard at < bytes.count else { throw fail("unclosed array") }
          if bytes[at] == UInt8(ascii: "]") {
            at += 1
            return .array(items)
          }
          try expect(",")
        }
      case UInt8(ascii: "\""): return .string(try string())
      case UInt8(ascii: "t"):
        try expect("true")
        return .bool(true)
      case UInt8(ascii: "f"):
        try expect("false")
        return .bool(false)
      case UInt8(ascii: "n"):
        try expect("null")
        return .null
      default: return .number(try number())
      }
    }

    mutating func number() throws -> Double {
      let start = at
      while at < bytes.count, "+-0123456789.eE".utf8.contains(bytes[at]) { at += 1 }
      let text = String(
        decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)
      guard !text.isEmpty, let value = Double(text), value.isFinite else {
        at = start
        throw fail("expected a value")
      }
      return value
    }

    mutating func string() throws -> String {
      guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else {
        throw fail("expected a string")
      }
      at += 1
      var utf8: [UInt8] = []
      while true {
        guard at < bytes.count else { throw fail("unclosed string") }
        let byte = bytes[at]
        at += 1
        switch byte {
        case UInt8(ascii: "\""):
          return String(decoding: utf8, as: UTF8.self)
        case UInt8(ascii: "\\"):
          guard at < bytes.count else { throw fail("unclosed string") }
          let escape = bytes[at]
          at += 1
          switch escape {
          case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
          case UInt8(ascii: "b"): utf8.append(0x08)
          case UInt8(ascii: "f"): utf8.append(0x0C)
          case UInt8(ascii: "n"): utf8.append(0x0A)
          case UInt8(ascii: "r"): utf8.append(0x0D)
          case UInt8(ascii: "t"): utf8.append(0x09)
          case UInt8(ascii: "u"):
            var code = try hex4()
            if (0xD800..<0xDC00).contains(code) {  // a surrogate pair
              try expect("\\u")
              let low = try hex4()
              guard (0xDC00..<0xE000).contains(low) else { throw fail("broken surrogate pair") }
              code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            }
            guard let scalar = Unicode.Scalar(code) else { throw fail("bad \\u escape") }
            utf8.append(contentsOf: Array(String(Character(scalar)).utf8))
          default: throw fail("bad escape")
          }
        case 0..<0x20: throw fail("control character in a string")
        default: utf8.append(byte)
        }
      }
    }

    mutating func hex4() throws -> UInt32 {
      var code: UInt32 = 0
      for _ in 0..<4 {
        guard at < bytes.count, let digit = Int(String(UnicodeScalar(bytes[at])), radix: 16) else {
          throw fail("bad \\u escape")
        }
        code = code << 4 | UInt32(digit)
        at += 1
      }
      return code
    }
  }
}
