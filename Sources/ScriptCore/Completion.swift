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
    // Inside a call: that callee's keyword arguments not given yet, first; with nothing typed
    // yet, only them.
    if let (callee, open) = enclosingCall(scalars[..<start]) {
      var typed = ""
      typed.unicodeScalars.append(contentsOf: scalars[(open + 1)..<start])
      let given = Set(keywordNames(in: typed))
      var keywords: [String] = []
      switch interpreter.global(callee) ?? registry.builtins[callee].map(Value.builtin) {
      case .builtin(let b)?: keywords = b.parameters.filter { !$0.variadic }.map(\.name)
      case .function(let f)?: keywords = f.parameters.map(\.name)
      default: break
      }
      // Parameters filled by the complete positional arguments before the cursor.
      let positional = completeArguments(typed).filter { keywordNames(in: $0).isEmpty }.count
      names += keywords.dropFirst(positional).filter { !given.contains($0) }.map { $0 + "=" }
      if word.isEmpty, !names.isEmpty { return (start, names) }
    }
    names += interpreter.globalNames + registry.builtins.keys.sorted() + keywords.sorted()
    return (start, unique(names.filter { $0.hasPrefix(word) }))
  }

  private static func isWordCharacter(_ c: Unicode.Scalar) -> Bool {
    c == "_" || c.properties.isAlphabetic || ("0"..."9").contains(c)
  }

  /// The name before the innermost open `(` before the cursor, and that bracket's position.
  private static func enclosingCall(_ scalars: ArraySlice<Unicode.Scalar>) -> (String, Int)? {
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
          return (name, i)
        }
        depth -= 1
      }
      i -= 1
    }
    return nil
  }

  /// The arguments typed so far that a comma has closed (split at commas outside brackets
  /// and strings).
  private static func completeArguments(_ text: String) -> [String] {
    var parts: [String] = []
    var current = ""
    var depth = 0
    var inString = false
    for c in text {
      if inString {
        if c == "\"" { inString = false }
      } else if c == "\"" {
        inString = true
      } else if "([{".contains(c) {
        depth += 1
      } else if ")]}".contains(c) {
        depth -= 1
      } else if c == ",", depth == 0 {
        parts.append(current)
        current = ""
        continue
      }
      current.append(c)
    }
    return parts
  }

  /// The names given as `name=` (not `==`) in the arguments typed so far.
  private static func keywordNames(in text: String) -> [String] {
    let scalars = Array(text.unicodeScalars)
    var names: [String] = []
    var i = 0
    while i < scalars.count {
      if isWordCharacter(scalars[i]), i == 0 || !isWordCharacter(scalars[i - 1]) {
        var j = i
        while j < scalars.count, isWordCharacter(scalars[j]) { j += 1 }
        var k = j
        while k < scalars.count, scalars[k] == " " { k += 1 }
        if k < scalars.count, scalars[k] == "=", k + 1 >= scalars.count || scalars[k + 1] != "=" {
          var name = ""
          name.unicodeScalars.append(contentsOf: scalars[i..<j])
          names.append(name)
        }
        i = j
      } else {
        i += 1
      }
    }
    return names
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
