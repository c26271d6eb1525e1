/// An expression node with its source range.
public indirect enum Expr: Sendable {
  case literal(Value.Literal, SourceRange)
  case string([InterpolatedPart], SourceRange)
  case name(String, SourceRange)
  case list([Expr], SourceRange)
  case record([(key: String, value: Expr)], SourceRange)
  case unary(String, Expr, SourceRange)
  case binary(String, Expr, Expr, SourceRange)
  case logical(String, Expr, Expr, SourceRange)
  case call(Expr, [Argument], SourceRange)
  case index(Expr, [IndexEntry], SourceRange)
  case attribute(Expr, String, SourceRange)

  public var range: SourceRange {
    switch self {
    case .literal(_, let r), .string(_, let r), .name(_, let r), .list(_, let r),
      .record(_, let r), .unary(_, _, let r), .binary(_, _, _, let r), .logical(_, _, _, let r),
      .call(_, _, let r), .index(_, _, let r), .attribute(_, _, let r):
      return r
    }
  }
}

/// A piece of an interpolated string.
public enum InterpolatedPart: Sendable {
  case text(String)
  case expression(Expr, format: String?)
}

/// A call argument, positional or `name=value`.
public struct Argument: Sendable {
  public let name: String?
  public let value: Expr
  public let range: SourceRange
}

/// One entry of `x[...]`: an expression or a slice `start:end:step`.
public enum IndexEntry: Sendable {
  case single(Expr)
  case slice(Expr?, Expr?, Expr?)
}

/// A statement node.
public indirect enum Stmt: Sendable {
  case expression(Expr, echo: Bool)
  case assign(Expr, String, Expr, SourceRange)  // target, "=" or "+=" ..., value
  case def(name: String, parameters: [ParameterNode], body: [Stmt], range: SourceRange)
  case ifChain([(condition: Expr, body: [Stmt])], elseBody: [Stmt]?, range: SourceRange)
  case forLoop(variable: String, sequence: Expr, body: [Stmt], range: SourceRange)
  case whileLoop(condition: Expr, body: [Stmt], range: SourceRange)
  case returnStmt(Expr?, SourceRange)
  case breakStmt(SourceRange)
  case continueStmt(SourceRange)
  case importStmt(String, SourceRange)

  public var range: SourceRange {
    switch self {
    case .expression(let e, _): return e.range
    case .assign(_, _, _, let r), .def(_, _, _, let r), .ifChain(_, _, let r),
      .forLoop(_, _, _, let r), .whileLoop(_, _, let r), .returnStmt(_, let r), .breakStmt(let r),
      .continueStmt(let r), .importStmt(_, let r):
      return r
    }
  }
}

/// A function parameter with an optional default expression.
public struct ParameterNode: Sendable {
  public let name: String
  public let defaultValue: Expr?
}
