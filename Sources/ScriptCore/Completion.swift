import Foundation

/// Tab completion for the REPL, generated from the registry and the session's variables:
/// names, keywords and meta commands; attributes after `.`; keyword arguments inside a call;
/// file paths inside a string.
public enum Completion {
  /// The candidates for the text before the cursor, and where the completed word starts.
  public static func candidates(before text: String, interpreter: Interpreter) -> (
    start: Int, candidates: [String]
  ) {
    let scalars = Array(text.unicodeScalars)
    // Inside a string: complete a file path.
    var quotes = 0
    var lastQuote = -1
    var i = 0
    while i < scalars.count {
      if scalars[i] == "\\" {
        i += 2
        continue
      }
      if scalars[i] == "\"" {
        quotes += 1
        lastQuote = i
      }
      i += 1
    }
    if quotes % 2 == 1 {
      var partial = ""
      partial.unicodeScalars.append(contentsOf: scalars[(lastQuote + 1)...])
      return (lastQuote + 1, paths(partial))
    }
    // The word being completed.
    var start = scalars.count
    while start > 0, isWordCharacter(scalars[start - 1]) { start -= 1 }
    var word = ""
    word.unicodeScalars.append(contentsOf: scalars[start...])
    if start == 0 || (start == 1 && scalars[0] == ":"), text.hasPrefix(":") {
      return (0, Session.metaCommands.filter { $0.hasPrefix(text) })
    }
    let registry = interpreter.registry
    // After a dot: the attributes of the value before it (a name or a chain `a.b.c` of
    // attributes), then the builtins that take that value first (uniform calls).
    if start > 0, scalars[start - 1] == "." {
      var chainStart = start - 1
      while chainStart > 0,
        isWordCharacter(scalars[chainStart - 1]) || scalars[chainStart - 1] == "."
      {
        chainStart -= 1
      }
      var chain = ""
      chain.unicodeScalars.append(contentsOf: scalars[chainStart..<(start - 1)])
      let parts = chain.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
      var owner = parts.first.flatMap { interpreter.global($0) }
      for part in parts.dropFirst() {
        owner = owner.flatMap { registry.attributeValue($0, part) }
      }
      guard let owner else { return (start, []) }
      var names: [String] = []
      switch owner {
      case .record(let box): names = box.keys
      case .object(let o): names = registry.attributeNames(of: o.typeName)
      default: break
      }
      names += registry.methods(for: owner)
      return (start, unique(names.filter { $0.hasPrefix(word) }))
    }
    var names: [String] = []
    // Inside a call: that callee's keyword arguments first.
    if let callee = enclosingCallee(scalars[..<start]) {
      switch interpreter.global(callee) ?? registry.builtins[callee].map(Value.builtin) {
      case .builtin(let b)?: names += b.parameters.filter { !$0.variadic }.map { $0.name + "=" }
      case .function(let f)?: names += f.parameters.map { $0.name + "=" }
      default: break
      }
    }
    names += interpreter.globalNames + registry.builtins.keys.sorted() + keywords.sorted()
    return (start, unique(names.filter { $0.hasPrefix(word) }))
  }

  private static func isWordCharacter(_ c: Unicode.Scalar) -> Bool {
    c == "_" || c.properties.isAlphabetic || ("0"..."9").contains(c)
  }

  /// The name before the innermost open `(` before the cursor, if any.
  private static func enclosingCallee(_ scalars: ArraySlice<Unicode.Scalar>) -> String? {
    var depth = 0
    var i = scalars.endIndex - 1
    while i >= scalars.startIndex {
      let c = scalars[i]
      if c == ")" || c == "]" { depth += 1 }
      if c == "(" || c == "[" {
        if depth == 0 {
          guard c == "(" else { return nil }
          var end = i
          while end > scalars.startIndex, scalars[end - 1] == " " { end -= 1 }
          var begin = end
          while begin > scalars.startIndex, isWordCharacter(scalars[begin - 1]) { begin -= 1 }
          guard begin < end else { return nil }
          var name = ""
          name.unicodeScalars.append(contentsOf: scalars[begin..<end])
          return name
        }
        depth -= 1
      }
      i -= 1
    }
    return nil
  }

  /// Files and folders that complete `partial`, a path typed inside a string. The path is
  /// split at its last `/` by hand: Foundation's `deletingLastPathComponent` traps on some
  /// one-character paths.
  private static func paths(_ partial: String) -> [String] {
    func split(_ path: String) -> (folder: String, name: String) {
      guard let slash = path.lastIndex(of: "/") else { return ("", path) }
      return (String(path[...slash]), String(path[path.index(after: slash)...]))
    }
    let expanded =
      partial.hasPrefix("~") ? (partial as NSString).expandingTildeInPath : partial
    let (shownFolder, _) = split(partial)
    let (folder, prefix) = split(
      expanded.hasPrefix("~") || !partial.hasSuffix("/") || expanded.hasSuffix("/")
        ? expanded : expanded + "/")
    let directory = folder.isEmpty ? "." : folder
    let listed = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return listed.filter {
      $0.hasPrefix(prefix) && !$0.hasPrefix(".") || (prefix.hasPrefix(".") && $0.hasPrefix(prefix))
    }
    .sorted()
    .map { name in
      var isDirectory: ObjCBool = false
      let full = (folder.isEmpty ? "./" : folder) + name
      let exists = FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory)
      return shownFolder + name + (exists && isDirectory.boolValue ? "/" : "")
    }
  }

  private static func unique(_ names: [String]) -> [String] {
    var seen = Set<String>()
    return names.filter { seen.insert($0).inserted }
  }
}
