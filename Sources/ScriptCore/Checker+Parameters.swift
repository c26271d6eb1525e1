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
        if case .importStmt(let file, let range) = statement { imports.append((file, range)) }
        let (expressions, blocks) = statement.parts
        for e in expressions { expression(e) }
        for b in blocks { block(b) }
      }
    }

    mutating func expression(_ expr: Expr) {
      switch expr {
      case .name("param", _):
        dynamic = true  // param passed around as a value
      case .call(.name("param", _), let arguments, _):
        let name = arguments.first { $0.name == nil || $0.name == "name" }
        switch name?.value {
        case .string(let parts, _)? where parts.isEmpty: names.insert("")
        case .string(let parts, _)? where parts.count == 1:
          if case .text(let text) = parts[0] { names.insert(text) } else { dynamic = true }
        default: dynamic = true
        }
        for argument in arguments { expression(argument.value) }
      default:
        for child in expr.children { expression(child) }
      }
    }
  }
}
