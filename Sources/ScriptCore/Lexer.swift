import Foundation

/// Turns source text into tokens. Newlines end statements except inside brackets or after a
/// binary operator or a comma. Lexical errors are collected and lexing goes on, so that
/// `skellab check` can report every error of a file.
public struct Lexer {
  let source: Source
  private var s: [Unicode.Scalar] { source.scalars }
  private var i = 0
  private var depth = 0
  /// Set for a second pass over a source that left a bracket open: a line indented no deeper
  /// than the line that opened the outermost bracket starts a new statement, so that one
  /// unclosed `(` does not swallow the rest of the file (`check` reports what follows).
  private var recovering = false
  /// The indentation of the line where the outermost open bracket was opened.
  private var openIndent = 0
  public private(set) var tokens: [Token] = []
  public private(set) var errors: [ScriptError] = []

  /// Symbols after which a newline continues the statement.
  static let continuing: Set<String> = [
    "+", "-", "*", "/", "%", "@", "**", "==", "!=", "<", "<=", ">", ">=", "=", "+=", "-=", "*=",
    "/=", "%=", ",", ".", "(", "[", "{", ":",
  ]

  public init(_ source: Source) {
    self.source = source
  }

  /// Lexes the whole source (the result ends with `.end`).
  public static func tokenize(_ source: Source) -> (tokens: [Token], errors: [ScriptError]) {
    var lexer = Lexer(source)
    lexer.run()
    if lexer.depth > 0 {
      var second = Lexer(source)
      second.recovering = true
      second.run()
      return (second.tokens, second.errors)
    }
    return (lexer.tokens, lexer.errors)
  }

  /// Lexes `start..<end` of the source (an interpolated expression).
  static func tokenize(_ source: Source, from start: Int, to end: Int) -> (
    tokens: [Token], errors: [ScriptError]
  ) {
    var lexer = Lexer(source)
    lexer.i = start
    lexer.run(until: end, nested: true)
    return (lexer.tokens, lexer.errors)
  }

  private mutating func error(_ message: String, _ start: Int, _ end: Int) {
    errors.append(ScriptError(.syntax, message, at: SourceRange(source, start, end)))
  }

  private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
    i + offset < s.count ? s[i + offset] : nil
  }

  private mutating func add(_ kind: TokenKind, _ start: Int) {
    tokens.append(Token(kind: kind, start: start, end: i))
  }

  private var lastContinues: Bool {
    guard let last = tokens.last else { return true }
    switch last.kind {
    case .newline: return true
    case .symbol(let op): return Lexer.continuing.contains(op)
    case .keyword(let k): return k == "and" || k == "or" || k == "not" || k == "in"
    default: return false
    }
  }

  mutating func run(until limit: Int? = nil, nested: Bool = false) {
    let stop = limit ?? s.count
    if nested { depth = 1 }
    while i < stop {
      let c = s[i]
      let start = i
      switch c {
      case " ", "\t", "\r":
        i += 1
      case "#":
        while i < stop, s[i] != "\n" { i += 1 }
      case "\n":
        i += 1
        if depth > 0 && !nested && (nextLineStartsStatement() || recovering && nextLineIsOutside())
        {
          // A bracket left open: a statement keyword cannot stand inside brackets, so the
          // broken statement ends here and the next lines are checked on their own.
          depth = 0
          add(.newline, start)
        } else if depth == 0 && !lastContinues {
          add(.newline, start)
        }
      case "\\" where peek(1) == "\n":
        i += 2  // explicit line continuation
      case "0"..."9":
        lexNumber(start)
      case "\"":
        lexString(start)
      default:
        if c == "_" || c.properties.isAlphabetic {
          while i < stop, let d = peek(),
            d == "_" || d.properties.isAlphabetic || ("0"..."9").contains(d)
          {
            i += 1
          }
          let word = source.text(start..<i)
          add(keywords.contains(word) ? .keyword(word) : .identifier(word), start)
        } else {
          lexSymbol(start)
        }
      }
    }
    if !nested, !(tokens.last.map { $0.kind == .newline } ?? true) {
      tokens.append(Token(kind: .newline, start: s.count, end: s.count))
    }
    tokens.append(Token(kind: .end, start: min(stop, s.count), end: min(stop, s.count)))
  }

  /// Whether the next line begins with a keyword that only starts a statement.
  /// Whether the next line is indented no deeper than the line of the outermost open bracket
  /// and does not begin with a closing bracket (then it is not a continuation).
  private func nextLineIsOutside() -> Bool {
    var j = i
    while j < s.count, s[j] == " " || s[j] == "\t" { j += 1 }
    guard j < s.count, !["\n", "#", ")", "]", "}"].contains(s[j]) else { return false }
    return j - i <= openIndent
  }

  /// The indentation of the line holding position `k`.
  private func indentation(at k: Int) -> Int {
    var lineStart = k
    while lineStart > 0, s[lineStart - 1] != "\n" { lineStart -= 1 }
    var j = lineStart
    while j < s.count, s[j] == " " || s[j] == "\t" { j += 1 }
    return j - lineStart
  }

  private func nextLineStartsStatement() -> Bool {
    var j = i
    while j < s.count, s[j] == " " || s[j] == "\t" { j += 1 }
    var word = ""
    while j < s.count, s[j].properties.isAlphabetic {
      word.unicodeScalars.append(s[j])
      j += 1
    }
    if j < s.count, s[j] == "_" || ("0"..."9").contains(s[j]) { return false }
    return ["def", "if", "elif", "else", "for", "while", "return", "import", "end"].contains(word)
  }

  private mutating func lexNumber(_ start: Int) {
    while let d = peek(), ("0"..."9").contains(d) || d == "_" { i += 1 }
    var isFloat = false
    if peek() == ".", let d = peek(1), ("0"..."9").contains(d) {
      isFloat = true
      i += 1
      while let d = peek(), ("0"..."9").contains(d) || d == "_" { i += 1 }
    }
    if let e = peek(), e == "e" || e == "E" {
      var j = 1
      if let sign = peek(1), sign == "+" || sign == "-" { j = 2 }
      if let d = peek(j), ("0"..."9").contains(d) {
        isFloat = true
        i += j
        while let d = peek(), ("0"..."9").contains(d) { i += 1 }
      }
    }
    let text = source.text(start..<i).replacingOccurrences(of: "_", with: "")
    if isFloat {
      if let value = Double(text), value.isFinite {
        add(.float(value), start)
      } else {
        error("float literal '\(text)' is out of range", start, i)
        add(.float(0), start)
      }
    } else if let value = Int(text) {
      add(.int(value), start)
    } else {
      error("integer literal '\(text)' does not fit in 64 bits", start, i)
      add(.int(0), start)
    }
  }

  private mutating func lexString(_ start: Int) {
    i += 1
    var parts: [StringPart] = []
    var text = ""
    while true {
      guard let c = peek() else {
        error("unterminated string", start, i)
        break
      }
      if c == "\"" {
        i += 1
        break
      }
      if c == "\\" {
        guard let e = peek(1) else {
          i += 1
          continue
        }
        switch e {
        case "n": text.append("\n")
        case "t": text.append("\t")
        case "\"": text.append("\"")
        case "\\": text.append("\\")
        case "{": text.append("{")
        case "}": text.append("}")
        default: error("unknown escape '\\\(e)'", i, i + 2)
        }
        i += 2
        continue
      }
      if c == "{" {
        if peek(1) == "{" {
          text.append("{")
          i += 2
          continue
        }
        if !text.isEmpty { parts.append(.text(text)) }
        text = ""
        lexInterpolation(&parts)
        continue
      }
      if c == "}" {
        // '}}' is one brace; a lone '}' is kept as it is (so "\{x}" reads "{x}").
        i += peek(1) == "}" ? 2 : 1
        text.append("}")
        continue
      }
      text.unicodeScalars.append(c)
      i += 1
    }
    if !text.isEmpty || parts.isEmpty { parts.append(.text(text)) }
    add(.string(parts), start)
  }

  /// `{expr}` or `{expr:format}` inside a string; `i` is at the `{`.
  private mutating func lexInterpolation(_ parts: inout [StringPart]) {
    let open = i
    i += 1
    let exprStart = i
    var nesting = 0
    var colon: Int? = nil
    while let c = peek() {
      if c == "\"" {  // a string inside the expression
        i += 1
        while let d = peek(), d != "\"" { i += d == "\\" ? 2 : 1 }
        i += 1
        continue
      }
      if c == "(" || c == "[" || c == "{" { nesting += 1 }
      if c == ")" || c == "]" { nesting -= 1 }
      if c == "}" {
        if nesting == 0 { break }
        nesting -= 1
      }
      if c == ":" && nesting == 0 && colon == nil { colon = i }
      if c == "\n" && nesting == 0 { break }
      i += 1
    }
    guard peek() == "}" else {
      error("unterminated '{' in a string", open, i)
      return
    }
    let exprEnd = colon ?? i
    let format = colon.map { source.text(($0 + 1)..<i) }
    if source.text(exprStart..<exprEnd).trimmingCharacters(in: .whitespaces).isEmpty {
      error("empty '{}' in a string; write '{{}}' for braces", open, i + 1)
    }
    parts.append(.interpolation(start: exprStart, end: exprEnd, format: format))
    i += 1
  }

  private mutating func lexSymbol(_ start: Int) {
    let two = i + 1 < s.count ? source.text(i..<(i + 2)) : ""
    if ["**", "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "%="].contains(two) {
      i += 2
      add(.symbol(two), start)
      return
    }
    let c = s[i]
    i += 1
    switch c {
    case "(", "[", "{":
      if depth == 0 { openIndent = indentation(at: start) }
      depth += 1
      add(.symbol(String(c)), start)
    case ")", "]", "}":
      depth = max(0, depth - 1)
      add(.symbol(String(c)), start)
    case "+", "-", "*", "/", "%", "@", "<", ">", "=", ",", ".", ":", ";":
      add(.symbol(String(c)), start)
    default:
      // Control characters (a NUL byte from a binary file) are named by code point: printed
      // as they are, they would cut or garble the message.
      let shown =
        c.properties.generalCategory == .control || c.properties.generalCategory == .format
        ? String(format: "U+%04X", c.value) : "'\(c)'"
      error("unexpected character \(shown)", start, i)
    }
  }
}
