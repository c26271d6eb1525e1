/// A script's text and name, with line starts for turning offsets into line and column.
public final class Source: Sendable {
  /// The file name shown in diagnostics (`pretrain.skl`, `<repl>`, `<-e>`).
  public let name: String
  /// The text as Unicode scalars, so that offsets are stable and O(1).
  public let scalars: [Unicode.Scalar]
  /// The folder that `import` resolves relative names against (nil: the working directory).
  public let directory: String?
  private let lineStarts: [Int]

  public init(name: String, text: String, directory: String? = nil) {
    self.name = name
    self.directory = directory
    scalars = Array(text.unicodeScalars)
    var starts = [0]
    for (i, c) in scalars.enumerated() where c == "\n" { starts.append(i + 1) }
    lineStarts = starts
  }

  /// 1-based line and column of an offset.
  public func location(_ offset: Int) -> (line: Int, column: Int) {
    var low = 0
    var high = lineStarts.count - 1
    while low < high {
      let mid = (low + high + 1) / 2
      if lineStarts[mid] <= offset { low = mid } else { high = mid - 1 }
    }
    return (low + 1, offset - lineStarts[low] + 1)
  }

  /// The text of a 1-based line, without its newline.
  public func line(_ number: Int) -> String {
    guard number >= 1, number <= lineStarts.count else { return "" }
    let start = lineStarts[number - 1]
    var end = number < lineStarts.count ? lineStarts[number] - 1 : scalars.count
    if end > start, end <= scalars.count, scalars[end - 1] == "\r" { end -= 1 }
    var text = ""
    text.unicodeScalars.append(contentsOf: scalars[start..<max(start, end)])
    return text
  }

  /// The text between two offsets.
  public func text(_ range: Range<Int>) -> String {
    var text = ""
    let clamped = max(0, range.lowerBound)..<min(scalars.count, range.upperBound)
    text.unicodeScalars.append(contentsOf: scalars[clamped])
    return text
  }
}

/// A span of a source, for diagnostics.
public struct SourceRange: Sendable {
  public let source: Source
  public let start: Int
  public let end: Int

  public init(_ source: Source, _ start: Int, _ end: Int) {
    self.source = source
    self.start = start
    self.end = max(end, start)
  }

  /// The smallest range covering both.
  public func joined(_ other: SourceRange) -> SourceRange {
    SourceRange(source, min(start, other.start), max(end, other.end))
  }
}
