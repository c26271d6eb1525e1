/// An error a script caused: a message, the place, and the call trace of script functions.
/// Rendered by `Diagnostics.render` in the one format of the REPL, batch mode, `check` and
/// the tests.
public struct ScriptError: Error, Sendable {
  /// What kind of error it is (shown only by tests and tools).
  public enum Kind: String, Sendable {
    case syntax, name, type, value, index, key, argument, arithmetic, recursion, interrupted,
      assertion, io, library, import_
  }

  public let kind: Kind
  public let message: String
  public var range: SourceRange?
  /// Script frames the error passed through, innermost first: function name and call site.
  public var trace: [(function: String, range: SourceRange)] = []
  /// Extra lines after the source excerpt (`did you mean ...`).
  public var notes: [String] = []

  public init(_ kind: Kind, _ message: String, at range: SourceRange? = nil, notes: [String] = []) {
    self.kind = kind
    self.message = message
    self.range = range
    self.notes = notes
  }

  /// The same error placed at `range` unless it already has a place.
  func placed(_ range: SourceRange) -> ScriptError {
    var copy = self
    if copy.range == nil { copy.range = range }
    return copy
  }
}

/// Formats errors as
/// ```
/// error: shape mismatch in '@': [32, 128] @ [64, 10]
///   --> pretrain.skl:12:14
///    |
/// 12 | logits = feats @ w
///    |          ^^^^^^^^^
///   in linear_head (pretrain.skl:30)
/// ```
public enum Diagnostics {
  public static func render(_ error: ScriptError) -> String {
    // Ctrl-C is not a mistake: it says only that the statement stopped.
    if error.kind == .interrupted { return "interrupted" }
    var lines = ["error: \(error.message)"]
    if let range = error.range {
      let (line, column) = range.source.location(range.start)
      let (endLine, endColumn) = range.source.location(max(range.start, range.end - 1))
      let number = String(line)
      let gutter = String(repeating: " ", count: number.count)
      lines.append("\(gutter)--> \(range.source.name):\(line):\(column)")
      lines.append("\(gutter) |")
      let text = range.source.line(line)
      lines.append("\(number) | \(text)")
      let width = endLine == line ? max(1, endColumn - column + 1) : max(1, text.count - column + 1)
      lines.append(
        "\(gutter) | " + String(repeating: " ", count: max(0, column - 1))
          + String(repeating: "^", count: width))
    }
    for note in error.notes { lines.append("  = \(note)") }
    // Consecutive identical frames (recursion) are shown once, with their count.
    var previous: String? = nil
    var repeats = 0
    func flush() {
      guard let previous else { return }
      lines.append(repeats > 1 ? "\(previous)  (\(repeats) times)" : previous)
    }
    for frame in error.trace {
      let (line, _) = frame.range.source.location(frame.range.start)
      let text = "  in \(frame.function) (\(frame.range.source.name):\(line))"
      if text == previous {
        repeats += 1
      } else {
        flush()
        previous = text
        repeats = 1
      }
    }
    flush()
    return lines.joined(separator: "\n")
  }
}
