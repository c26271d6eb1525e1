/// The kinds of token: a closed set, so a `switch` handles them.
public enum TokenKind: Equatable, Sendable {
  case identifier(String)
  case keyword(String)
  case int(Int)
  case float(Double)
  /// A string literal: literal text and `{expression:format}` parts.
  case string([StringPart])
  case symbol(String)
  case newline
  case end
}

/// One piece of a string literal.
public enum StringPart: Equatable, Sendable {
  case text(String)
  /// An interpolated expression: its source offsets and its format spec (after `:`).
  case interpolation(start: Int, end: Int, format: String?)
}

/// A token and where it stands.
public struct Token: Sendable {
  public let kind: TokenKind
  public let start: Int
  public let end: Int
}

/// Words that cannot be names.
public let keywords: Set<String> = [
  "def", "end", "if", "elif", "else", "for", "in", "while", "return", "break", "continue", "and",
  "or", "not", "true", "false", "nil", "import",
]
