import Foundation

extension Checker {
  /// The names a script (with the files it imports) reads through `param("name", ...)`, or nil
  /// when it cannot be told without running it: a `param` call whose name is not a plain
  /// string, `param` used as a value, or a file that does not parse. `skellab run` checks
  /// `--set` names against it before any work.
  public static func parameterNames(_ source: Source) -> Set<String>? {
    var visited = Set<String>()
    var names = Set<String>()
    guard collect(source, into: &names, visited: &visited) else { return nil }
    return names
  }

  private static func collect(
    _ source: Source, into names: inout Set<String>, visited: inout Set<String>
  ) -> Bool {
    let (statements, errors) = Parser.parse(source)
    guard errors.isEmpty else { return false }
    var walker = ParameterWalker()
    walker.block(statements)
    guard !walker.dynamic else { return false }
    names.formUnion(walker.names)
    for (file, range) in walker.imports {
      guard let path = importPath(file, from: range) else { return false }
      guard visited.insert(path).inserted else { continue }
      guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
      let imported = Source(
        name: path, text: text, directory: (path as NSString).deletingLastPathComponent)
      guard collect(imported, into: &names, visited: &visited) else { return false }
    }
    return true
  }

  /// Where `import "file"` finds its file, as the interpreter looks: beside the importing
  /// file, then `SKELLAB_PATH`, then the bundled stdlib.
  static func importPath(_ file: String, from range: SourceRange) -> String? {
    let name = file.hasSuffix(".skl") ? file : file + ".skl"
    var folders = [range.source.directory ?? FileManager.default.currentDirectoryPath]
    if let path = ProcessInfo.processInfo.environment["SKELLAB_PATH"] {
      folders += path.split(separator: ":").map(String.init)
    }
    if let stdlib = Installation.standardLibrary { folders.append(stdlib) }
    return folders.map { ($0 as NSString).appendingPathComponent(name) }
      .first { FileManager.default.fileExists(atPath: $0) }
  }

  /// Collects `param` names and imports; notes any use of `param` it cannot read statically.
  private struct ParameterWalker {
    var names = Set<String>()
    var imports: [(String, SourceRange)] = []
    var dynamic = false

    mutating func block(_ statements: [Stmt]) {
      for statement in statements {
        switch statement {
        case .expression(let e, _): expression(e)
        case .assign(let target, _, let value, _):
          expression(target)
          expression(value)
        case .def(_, let parameters, let body, _):
          for parameter in parameters { if let d = parameter.defaultValue { expression(d) } }
          block(body)
        case .ifChain(let branches, let elseBody, _):
          for branch in branches {
            expression(branch.condition)
            block(branch.body)
          }
          if let elseBody { block(elseBody) }
        case .forLoop(_, let sequence, let body, _):
          expression(sequence)
          block(body)
        case .whileLoop(let condition, let body, _):
          expression(condition)
          block(body)
        case .returnStmt(let e, _): if let e { expression(e) }
        case .importStmt(let file, let range): imports.append((file, range))
        case .breakStmt, .continueStmt: break
        }
      }
    }

    mutating func expression(_ expr: Expr) {
      switch expr {
      case .literal: break
      case .string(let parts, _):
        for case .expression(let e, _) in parts { expression(e) }
      case .name(let name, _):
        if name == "param" { dynamic = true }  // param passed around as a value
      case .list(let items, _): items.forEach { expression($0) }
      case .record(let entries, _): entries.forEach { expression($0.value) }
      case .unary(_, let e, _): expression(e)
      case .binary(_, let a, let b, _), .logical(_, let a, let b, _):
        expression(a)
        expression(b)
      case .call(.name("param", _), let arguments, _):
        let name = arguments.first { $0.name == nil || $0.name == "name" }
        if case .string(let parts, _)? = name?.value, parts.count <= 1 {
          if case .text(let text)? = parts.first {
            names.insert(text)
          } else if parts.isEmpty {
            names.insert("")
          } else {
            dynamic = true
          }
        } else {
          dynamic = true
        }
        for argument in arguments { expression(argument.value) }
      case .call(let callee, let arguments, _):
        expression(callee)
        arguments.forEach { expression($0.value) }
      case .index(let object, let entries, _):
        expression(object)
        for entry in entries {
          switch entry {
          case .single(let e): expression(e)
          case .slice(let a, let b, let c): [a, b, c].compactMap { $0 }.forEach { expression($0) }
          }
        }
      case .attribute(let object, _, _): expression(object)
      }
    }
  }
}
