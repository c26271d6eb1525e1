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

extension Expr {
  /// The expressions directly inside this one, in source order (for walks that treat most
  /// nodes alike).
  var children: [Expr] {
    switch self {
    case .literal, .name: return []
    case .string(let parts, _):
      return parts.compactMap { if case .expression(let e, _) = $0 { e } else { nil } }
    case .list(let items, _): return items
    case .record(let entries, _): return entries.map(\.value)
    case .unary(_, let e, _), .attribute(let e, _, _): return [e]
    case .binary(_, let a, let b, _), .logical(_, let a, let b, _): return [a, b]
    case .call(let callee, let arguments, _): return [callee] + arguments.map(\.value)
    case .index(let object, let entries, _):
      return [object]
        + entries.flatMap { entry -> [Expr] in
          switch entry {
          case .single(let e): [e]
          case .slice(let a, let b, let c): [a, b, c].compactMap { $0 }
          }
        }
    }
  }
}

extension Stmt {
  /// The expressions directly in this statement, and the blocks nested in it.
  var parts: (expressions: [Expr], blocks: [[Stmt]]) {
    switch self {
    case .expression(let e, _): return ([e], [])
    case .assign(let target, _, let value, _): return ([target, value], [])
    case .def(_, let parameters, let body, _):
      return (parameters.compactMap(\.defaultValue), [body])
    case .ifChain(let branches, let elseBody, _):
      return (branches.map(\.condition), branches.map(\.body) + (elseBody.map { [$0] } ?? []))
    case .forLoop(_, let sequence, let body, _): return ([sequence], [body])
    case .whileLoop(let condition, let body, _): return ([condition], [body])
    case .returnStmt(let e, _): return (e.map { [$0] } ?? [], [])
    case .breakStmt, .continueStmt, .importStmt: return ([], [])
    }
  }
}
