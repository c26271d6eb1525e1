import Foundation
import TensorCore

/// Whitespace-separated numbers of a text file, with line numbers for errors. LF and CRLF
/// both work; numbers parse with `strtod` (correctly rounded).
struct TextScanner {
  let path: String
  private var bytes: [UInt8]
  private var position = 0
  private(set) var line = 1

  init(path: String) throws {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw TensorError("skeleton", "cannot read '\(path)' (missing or unreadable)")
    }
    self.path = path
    bytes = [UInt8](data)
    bytes.append(0)  // strtod stops at the terminator
  }

  init(text: String, path: String) {
    self.path = path
    bytes = Array(text.utf8) + [0]
  }

  func error(_ message: String) -> TensorError {
    TensorError("skeleton", "\(path):\(line): \(message)")
  }

  /// Skips spaces, tabs and line ends, counting lines.
  mutating func skipSpace() {
    while position < bytes.count - 1 {
      let b = bytes[position]
      if b == 0x0A {
        line += 1
      } else if b != 0x20, b != 0x09, b != 0x0D {
        return
      }
      position += 1
    }
  }

  var atEnd: Bool {
    mutating get {
      skipSpace()
      return position >= bytes.count - 1
    }
  }

  /// The next number.
  mutating func double(_ what: String) throws -> Double {
    skipSpace()
    guard position < bytes.count - 1 else {
      throw error("expected \(what), found the end of the file")
    }
    return try bytes.withUnsafeBufferPointer { buffer -> Double in
      guard let base = buffer.baseAddress else { throw error("expected \(what)") }
      let start = UnsafeMutableRawPointer(mutating: base + position).assumingMemoryBound(
        to: CChar.self)
      var end: UnsafeMutablePointer<CChar>?
      let value = strtod(start, &end)
      guard let end, end != start else {
        throw error("expected \(what), found '\(token())'")
      }
      let consumed = end - start
      let next = base[position + consumed]
      guard next == 0x20 || next == 0x09 || next == 0x0A || next == 0x0D || next == 0 else {
        throw error("expected \(what), found '\(token())'")
      }
      position += consumed
      return value
    }
  }

  mutating func float(_ what: String) throws -> Float { Float(try double(what)) }

  /// The next integer (written without a fraction).
  mutating func integer(_ what: String) throws -> Int {
    let value = try double(what)
    guard value == value.rounded(), abs(value) < 9e15 else {
      throw error("expected \(what) (an integer), found \(value)")
    }
    return Int(value)
  }

  /// Skips the next token, whatever it is (identifiers too large for a Double).
  mutating func skipToken() {
    skipSpace()
    while position < bytes.count - 1, ![0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) {
      position += 1
    }
  }

  /// Skips the next token, which must be on the current line.
  mutating func skipField(_ what: String) throws {
    let before = line
    skipSpace()
    guard line == before, position < bytes.count - 1 else {
      throw error(
        "expected \(what), found "
          + (position < bytes.count - 1 ? "the end of the line" : "the end of the file"))
    }
    skipToken()
  }

  /// The next token as text.
  mutating func word() -> String {
    skipSpace()
    let start = position
    skipToken()
    return String(decoding: bytes[start..<position], as: UTF8.self)
  }

  private func token() -> String {
    var end = position
    while end < bytes.count - 1, ![0x20, 0x09, 0x0A, 0x0D].contains(bytes[end]) { end += 1 }
    return String(decoding: bytes[position..<min(end, position + 24)], as: UTF8.self)
  }
}
