import Foundation

/// Builds statements from tokens by recursive descent. A syntax error is recorded and the
/// parser skips to the next statement, so every error of a file is reported at once.
public struct Parser {
  let source: Source
  private var tokens: [Token]
  private var p = 0
  private var nesting = 0
  /// Chain links (see `link`) in the statement being parsed.
  private var links = 0
  /// The most chain links one statement may have: a left-deep tree of them is walked
  /// recursively, and nested chains add up along a path.
  static let maximumChain = 20_000
  public private(set) var errors: [ScriptError] = []
  /// Deeper expressions than this are an error, not a stack overflow.
  static let maximumNesting = 200

  private struct Failure: Error {}

  public init(_ source: Source) {
    self.source = source
    let lexed = Lexer.tokenize(source)
    tokens = lexed.tokens
    errors = lexed.errors
  }

  /// Parses a whole source: its statements and every syntax error found.
  public static func parse(_ source: Source) -> (statements: [Stmt], errors: [ScriptError]) {
    var parser = Parser(source)
    let statements = parser.parseProgram()
    return (statements, parser.errors)
  }

  /// Whether `text` is an unfinished statement (an open block, bracket or string) that more
  /// lines could complete: the REPL's continuation prompt.
  public static func isIncomplete(_ text: String) -> Bool {
    let source = Source(name: "<input>", text: text)
    let (tokens, lexErrors) = Lexer.tokenize(source)
    if lexErrors.contains(where: {
      $0.message.hasPrefix("unterminated string") || $0.message.hasPrefix("unterminated '{'")
    }) {
      return true
    }
    var brackets = 0
    var blocks = 0
    for token in tokens {
      switch token.kind {
      case .symbol(let s) where ["(", "[", "{"].contains(s): brackets += 1
      case .symbol(let s) where [")", "]", "}"].contains(s): brackets -= 1
      case .keyword(let k) where ["def", "if", "for", "while"].contains(k): blocks += 1
      case .keyword("end"): blocks -= 1
      default: break
      }
    }
    if brackets > 0 || blocks > 0 { return true }
    // A trailing binary operator or comma continues onto the next line.
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    if let last = tokens.dropLast().last(where: { $0.kind != .newline }),
      case .symbol(let s) = last.kind, Lexer.continuing.contains(s),
      !trimmed.isEmpty
    {
      return true
    }
    return false
  }

  // MARK: Token helpers

  private var current: Token { tokens[min(p, tokens.count - 1)] }

  private func range(_ token: Token) -> SourceRange { SourceRange(source, token.start, token.end) }

  private func range(from start: Int) -> SourceRange {
    let end = p > 0 ? tokens[min(p - 1, tokens.count - 1)].end : start
    return SourceRange(source, start, max(end, start))
  }

  private func isSymbol(_ s: String) -> Bool {
    if case .symbol(s) = current.kind { return true }
    return false
  }

  private func isKeyword(_ k: String) -> Bool {
    if case .keyword(k) = current.kind { return true }
    return false
  }

  private mutating func advance() -> Token {
    let token = current
    if p < tokens.count - 1 { p += 1 }
    return token
  }

  private mutating func fail(_ message: String, at token: Token? = nil) -> Failure {
    let t = token ?? current
    errors.append(ScriptError(.syntax, message, at: range(t)))
    return Failure()
  }

  private func describe(_ token: Token) -> String {
    switch token.kind {
    case .identifier(let n): return "'\(n)'"
    case .keyword(let k): return "'\(k)'"
    case .int, .float: return "number '\(source.text(token.start..<token.end))'"
    case .string: return "a string"
    case .symbol(let s): return "'\(s)'"
    case .newline: return "end of line"
    case .end: return "end of input"
    }
  }

  private mutating func expectSymbol(_ s: String, _ context: String) throws {
    guard isSymbol(s) else { throw fail("expected '\(s)' \(context), found \(describe(current))") }
    _ = advance()
  }

  private mutating func expectIdentifier(_ context: String) throws -> String {
    guard case .identifier(let name) = current.kind else {
      throw fail("expected a name \(context), found \(describe(current))")
    }
    _ = advance()
    return name
  }

  private mutating func skipNewlines() {
    while current.kind == .newline || isSymbol(";") { _ = advance() }
  }

  /// After an error: skip to the start of the next statement.
  private mutating func synchronize() {
    while current.kind != .end {
      if current.kind == .newline || isSymbol(";") {
        _ = advance()
        return
      }
      if isKeyword("end") || isKeyword("else") || isKeyword("elif") { return }
      _ = advance()
    }
  }

  // MARK: Statements

  mutating func parseProgram() -> [Stmt] {
    var statements: [Stmt] = []
    skipNewlines()
    while current.kind != .end {
      if isKeyword("end") || isKeyword("else") || isKeyword("elif") {
        let token = advance()
        errors.append(
          ScriptError(
            .syntax, "'\(source.text(token.start..<token.end))' without an open block",
            at: range(token)))
        skipNewlines()
        continue
      }
      if let statement = parseStatementRecovering() { statements.append(statement) }
      skipNewlines()
    }
    return statements
  }

  private mutating func parseStatementRecovering() -> Stmt? {
    do {
      let statement = try parseStatement()
      try endOfStatement()
      return statement
    } catch {
      synchronize()
      return nil
    }
  }

  /// A statement ends at a newline, `;` or the end; a `;` marks an expression as silent.
  private mutating func endOfStatement() throws {
    if current.kind == .newline || current.kind == .end || isSymbol(";") { return }
    if isKeyword("end") || isKeyword("else") || isKeyword("elif") { return }
    throw fail("expected end of statement, found \(describe(current))")
  }

  /// Statements up to one of `terminators` (not consumed).
  private mutating func parseBlock(until terminators: Set<String>, opened: Token) throws -> [Stmt] {
    var body: [Stmt] = []
    skipNewlines()
    while true {
      if case .keyword(let k) = current.kind, terminators.contains(k) { return body }
      if current.kind == .end {
        let word = source.text(opened.start..<opened.end)
        throw fail("'\(word)' block is not closed with 'end'", at: opened)
      }
      if isKeyword("end") || isKeyword("else") || isKeyword("elif") {
        let token = advance()
        errors.append(
          ScriptError(
            .syntax, "unexpected '\(source.text(token.start..<token.end))'", at: range(token)))
        continue
      }
      if let statement = parseStatementRecovering() { body.append(statement) }
      skipNewlines()
    }
  }

  private mutating func parseStatement() throws -> Stmt {
    if nesting == 0 { links = 0 }
    let start = current.start
    switch current.kind {
    case .keyword("def"): return try parseDef()
    case .keyword("if"): return try parseIf()
    case .keyword("for"):
      let opened = advance()
      let variable = try expectIdentifier("after 'for'")
      guard isKeyword("in") else { throw fail("expected 'in' after 'for \(variable)'") }
      _ = advance()
      let sequence = try parseExpression()
      let body = try parseBlock(until: ["end"], opened: opened)
      _ = advance()
      return .forLoop(variable: variable, sequence: sequence, body: body, range: range(from: start))
    case .keyword("while"):
      let opened = advance()
      let condition = try parseExpression()
      let body = try parseBlock(until: ["end"], opened: opened)
      _ = advance()
      return .whileLoop(condition: condition, body: body, range: range(from: start))
    case .keyword("return"):
      _ = advance()
      if current.kind == .newline || current.kind == .end || isSymbol(";") || isKeyword("end") {
        return .returnStmt(nil, range(from: start))
      }
      return .returnStmt(try parseExpression(), range(from: start))
    case .keyword("break"):
      return .breakStmt(range(advance()))
    case .keyword("continue"):
      return .continueStmt(range(advance()))
    case .keyword("import"):
      _ = advance()
      guard case .string(let parts) = current.kind, parts.count == 1,
        case .text(let name) = parts[0]
      else { throw fail("expected a file name string after 'import'") }
      _ = advance()
      return .importStmt(name, range(from: start))
    default:
      let expr = try parseExpression()
      if case .symbol(let op) = current.kind, ["=", "+=", "-=", "*=", "/=", "%="].contains(op) {
        switch expr {
        case .name, .attribute, .index: break
        default:
          throw fail(
            "cannot assign to this expression",
            at: Token(kind: .end, start: expr.range.start, end: expr.range.end))
        }
        _ = advance()
        let value = try parseExpression()
        return .assign(expr, op, value, range(from: start))
      }
      let silent = isSymbol(";")
      return .expression(expr, echo: !silent)
    }
  }

  private mutating func parseDef() throws -> Stmt {
    let start = current.start
    let opened = advance()
    let name = try expectIdentifier("after 'def'")
    try expectSymbol("(", "after the function name")
    var parameters: [ParameterNode] = []
    var seen = Set<String>()
    while !isSymbol(")") {
      let token = current
      let parameter = try expectIdentifier("for a parameter")
      guard seen.insert(parameter).inserted else {
        throw fail("parameter '\(parameter)' is repeated", at: token)
      }
      var defaultValue: Expr? = nil
      if isSymbol("=") {
        _ = advance()
        defaultValue = try parseExpression()
      } else if parameters.last?.defaultValue != nil {
        throw fail(
          "parameter '\(parameter)' without a default follows one with a default", at: token)
      }
      parameters.append(ParameterNode(name: parameter, defaultValue: defaultValue))
      if !isSymbol(")") { try expectSymbol(",", "between parameters") }
    }
    _ = advance()
    let body = try parseBlock(until: ["end"], opened: opened)
    _ = advance()
    return .def(name: name, parameters: parameters, body: body, range: range(from: start))
  }

  private mutating func parseIf() throws -> Stmt {
    let start = current.start
    let opened = advance()
    var branches: [(condition: Expr, body: [Stmt])] = []
    var elseBody: [Stmt]? = nil
    let condition = try parseExpression()
    branches.append((condition, try parseBlock(until: ["elif", "else", "end"], opened: opened)))
    while isKeyword("elif") {
      _ = advance()
      let c = try parseExpression()
      branches.append((c, try parseBlock(until: ["elif", "else", "end"], opened: opened)))
    }
    if isKeyword("else") {
      _ = advance()
      elseBody = try parseBlock(until: ["end"], opened: opened)
    }
    _ = advance()
    return .ifChain(branches, elseBody: elseBody, range: range(from: start))
  }

  // MARK: Expressions

  mutating func parseExpression() throws -> Expr {
    try nested { try $0.parseOr() }
  }

  /// Parses one level deeper; more than `maximumNesting` levels is an error, not a stack
  /// overflow.
  private mutating func nested(_ parse: (inout Parser) throws -> Expr) throws -> Expr {
    nesting += 1
    defer { nesting -= 1 }
    guard nesting <= Parser.maximumNesting else {
      throw fail("expression is nested too deeply (more than \(Parser.maximumNesting) levels)")
    }
    return try parse(&self)
  }

  /// Counts one more link of a chain (`a + b + ...`, `a.b.c`, `f()()`): each link nests the
  /// tree one level, which evaluating and freeing it walk recursively.
  private mutating func link() throws {
    links += 1
    guard links <= Parser.maximumChain else {
      throw fail(
        "statement chains more than \(Parser.maximumChain) operations; split it over several "
          + "statements")
    }
  }

  private mutating func parseOr() throws -> Expr {
    var left = try parseAnd()
    while isKeyword("or") {
      try link()
      _ = advance()
      let right = try parseAnd()
      left = .logical("or", left, right, left.range.joined(right.range))
    }
    return left
  }

  private mutating func parseAnd() throws -> Expr {
    var left = try parseNot()
    while isKeyword("and") {
      try link()
      _ = advance()
      let right = try parseNot()
      left = .logical("and", left, right, left.range.joined(right.range))
    }
    return left
  }

  private mutating func parseNot() throws -> Expr {
    if isKeyword("not") {
      let token = advance()
      let operand = try nested { try $0.parseNot() }
      return .unary("not", operand, range(token).joined(operand.range))
    }
    return try parseComparison()
  }

  /// One left-associative level: operands from `next`, joined by any of `operators`.
  private mutating func leftAssociative(
    _ operators: Set<String>, _ next: (inout Parser) throws -> Expr
  ) throws -> Expr {
    var left = try next(&self)
    while case .symbol(let op) = current.kind, operators.contains(op) {
      try link()
      _ = advance()
      let right = try next(&self)
      left = .binary(op, left, right, left.range.joined(right.range))
    }
    return left
  }

  private mutating func parseComparison() throws -> Expr {
    try leftAssociative(["==", "!=", "<", "<=", ">", ">="]) { try $0.parseAdditive() }
  }

  private mutating func parseAdditive() throws -> Expr {
    try leftAssociative(["+", "-"]) { try $0.parseMultiplicative() }
  }

  private mutating func parseMultiplicative() throws -> Expr {
    try leftAssociative(["*", "/", "%", "@"]) { try $0.parseUnary() }
  }

  private mutating func parseUnary() throws -> Expr {
    if isSymbol("-") || isSymbol("+") {
      let token = advance()
      let operand = try nested { try $0.parseUnary() }
      let op = source.text(token.start..<token.end)
      return .unary(op, operand, range(token).joined(operand.range))
    }
    return try parsePower()
  }

  private mutating func parsePower() throws -> Expr {
    let base = try parsePostfix()
    if isSymbol("**") {
      _ = advance()
      let exponent = try parseUnary()  // right-associative; `2 ** -1` works
      return .binary("**", base, exponent, base.range.joined(exponent.range))
    }
    return base
  }

  private mutating func parsePostfix() throws -> Expr {
    var expr = try parsePrimary()
    while true {
      if isSymbol("(") || isSymbol("[") || isSymbol(".") { try link() }
      if isSymbol("(") {
        let open = advance()
        var arguments: [Argument] = []
        var sawKeyword = false
        while !isSymbol(")") {
          let start = current.start
          if case .identifier(let name) = current.kind, p + 1 < tokens.count,
            case .symbol("=") = tokens[p + 1].kind
          {
            _ = advance()
            _ = advance()
            let value = try parseExpression()
            if arguments.contains(where: { $0.name == name }) {
              throw fail(
                "keyword argument '\(name)' is repeated",
                at: Token(kind: .end, start: start, end: value.range.end))
            }
            arguments.append(Argument(name: name, value: value, range: range(from: start)))
            sawKeyword = true
          } else {
            let value = try parseExpression()
            if sawKeyword {
              throw fail(
                "positional argument after a keyword argument",
                at: Token(kind: .end, start: start, end: value.range.end))
            }
            arguments.append(Argument(name: nil, value: value, range: value.range))
          }
          if current.kind == .newline || current.kind == .end {
            throw fail(
              "'(' is not closed: expected ',' or ')' before \(describe(current))", at: open)
          }
          if !isSymbol(")") { try expectSymbol(",", "between arguments") }
        }
        _ = advance()
        expr = .call(expr, arguments, range(from: expr.range.start))
      } else if isSymbol("[") {
        _ = advance()
        var entries: [IndexEntry] = []
        while !isSymbol("]") {
          entries.append(try parseIndexEntry())
          if !isSymbol("]") { try expectSymbol(",", "between indices") }
        }
        _ = advance()
        if entries.isEmpty { throw fail("empty index '[]'") }
        expr = .index(expr, entries, range(from: expr.range.start))
      } else if isSymbol(".") {
        _ = advance()
        let name = try expectIdentifier("after '.'")
        expr = .attribute(expr, name, range(from: expr.range.start))
      } else {
        return expr
      }
    }
  }

  private mutating func parseIndexEntry() throws -> IndexEntry {
    func atBoundary() -> Bool { isSymbol(":") || isSymbol(",") || isSymbol("]") }
    let start = atBoundary() ? nil : try parseExpression()
    guard isSymbol(":") else {
      guard let start else { throw fail("expected an index, found \(describe(current))") }
      return .single(start)
    }
    _ = advance()
    let end = atBoundary() ? nil : try parseExpression()
    var step: Expr? = nil
    if isSymbol(":") {
      _ = advance()
      step = atBoundary() ? nil : try parseExpression()
    }
    return .slice(start, end, step)
  }

  private mutating func parsePrimary() throws -> Expr {
    let token = current
    switch token.kind {
    case .int(let v):
      _ = advance()
      return .literal(.int(v), range(token))
    case .float(let v):
      _ = advance()
      return .literal(.float(v), range(token))
    case .keyword("true"):
      _ = advance()
      return .literal(.bool(true), range(token))
    case .keyword("false"):
      _ = advance()
      return .literal(.bool(false), range(token))
    case .keyword("nil"):
      _ = advance()
      return .literal(.nil, range(token))
    case .string(let parts):
      _ = advance()
      return try stringExpression(parts, range(token))
    case .identifier(let name):
      _ = advance()
      return .name(name, range(token))
    case .symbol("("):
      _ = advance()
      let inner = try parseExpression()
      try expectSymbol(")", "to close '('")
      return inner
    case .symbol("["):
      _ = advance()
      var items: [Expr] = []
      while !isSymbol("]") {
        items.append(try parseExpression())
        if !isSymbol("]") { try expectSymbol(",", "between list items") }
      }
      _ = advance()
      return .list(items, range(from: token.start))
    case .symbol("{"):
      _ = advance()
      var entries: [(key: String, value: Expr)] = []
      while !isSymbol("}") {
        let keyToken = current
        let key: String
        switch keyToken.kind {
        case .identifier(let name): key = name
        case .keyword(let word): key = word
        case .string(let parts):
          guard parts.count == 1, case .text(let text) = parts[0] else {
            throw fail("a record key must be a name or a plain string")
          }
          key = text
        default: throw fail("expected a record key, found \(describe(keyToken))")
        }
        _ = advance()
        try expectSymbol(":", "after the record key")
        if entries.contains(where: { $0.key == key }) {
          throw fail("record key '\(key)' is repeated", at: keyToken)
        }
        entries.append((key, try parseExpression()))
        if !isSymbol("}") { try expectSymbol(",", "between record entries") }
      }
      _ = advance()
      return .record(entries, range(from: token.start))
    case .symbol("."):
      throw fail("expected an expression, found '.' (write 0.5, not .5)")
    default:
      throw fail("expected an expression, found \(describe(token))")
    }
  }

  private mutating func stringExpression(_ parts: [StringPart], _ whole: SourceRange) throws -> Expr
  {
    var result: [InterpolatedPart] = []
    for part in parts {
      switch part {
      case .text(let text): result.append(.text(text))
      case .interpolation(let start, let end, let format):
        let (subTokens, lexErrors) = Lexer.tokenize(source, from: start, to: end)
        errors.append(contentsOf: lexErrors)
        var sub = Parser(source, tokens: subTokens)
        sub.nesting = nesting
        do {
          let expr = try sub.parseExpression()
          if sub.current.kind != .end {
            throw sub.fail("unexpected \(sub.describe(sub.current)) in '{...}'")
          }
          errors.append(contentsOf: sub.errors)
          result.append(.expression(expr, format: format))
        } catch {
          errors.append(contentsOf: sub.errors)
          throw Failure()
        }
      }
    }
    return .string(result, whole)
  }

  private init(_ source: Source, tokens: [Token]) {
    self.source = source
    self.tokens = tokens.filter { $0.kind != .newline }
  }
}
