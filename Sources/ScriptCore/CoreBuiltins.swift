import Foundation

/// The language's own builtins (§6 helpers): they know nothing of tensors.
public enum CoreBuiltins {
  public static func register(in registry: Registry) {
    registry.register(
      "print", [BuiltinParameter("values", variadic: true)],
      doc: "Prints the values separated by spaces, then a newline. Strings print without quotes."
    ) { args, context in
      context.write(args.list("values").map(\.description).joined(separator: " ") + "\n")
      return .nil
    }
    registry.register(
      "len", [BuiltinParameter("value")],
      doc: "The number of items of a List, keys of a Record, characters of a String, or the size "
        + "of a library collection's first axis."
    ) { args, context in
      switch args["value"] {
      case .list(let box): return .int(box.items.count)
      case .record(let box): return .int(box.keys.count)
      case .string(let s): return .int(s.count)
      case .object(let o):
        if let lengthAttribute = context.registry.attributes[o.typeName]?["length"] {
          return try lengthAttribute.get(o)
        }
        throw args.error("value", "\(o.typeName) has no length")
      default: throw args.error("value", "\(args["value"].typeName) has no length")
      }
    }
    registry.register(
      "range",
      [
        BuiltinParameter("a", .int), BuiltinParameter("b", .optional(.int), default: .nil),
        BuiltinParameter("step", .int, default: .int(1)),
      ],
      doc: "range(n) is 0, 1, ..., n-1; range(a, b) is a, ..., b-1; range(a, b, step) counts by "
        + "step (which may be negative, not 0). Returns a List."
    ) { args, _ in
      let (start, end) = args.isNil("b") ? (0, args.int("a")) : (args.int("a"), args.int("b"))
      let step = args.int("step")
      guard step != 0 else { throw args.error("step", "must not be 0") }
      // Counted in floating point first (bounds near Int.min/Int.max cannot overflow it), then
      // walked with checked additions.
      let limit = 10_000_000
      let estimate = (Double(end) - Double(start)) / Double(step)
      guard estimate <= Double(limit) + 1 else {
        throw args.error("a", "range of about \(estimate) items is too large (at most \(limit))")
      }
      var items: [Value] = []
      var value = start
      while step > 0 ? value < end : value > end {
        guard items.count < limit else {
          throw args.error("a", "range is too large (at most \(limit) items)")
        }
        items.append(.int(value))
        let (next, overflow) = value.addingReportingOverflow(step)
        if overflow { break }
        value = next
      }
      return .list(items)
    }
    registry.register(
      "keys", [BuiltinParameter("record", .record)],
      doc: "The keys of a Record, in order, as a List of Strings."
    ) { args, _ in
      guard case .record(let box) = args["record"] else { return .nil }
      return .list(box.keys.map(Value.string))
    }
    registry.register(
      "str", [BuiltinParameter("value")], doc: "The value as `print` shows it, as a String."
    ) { args, _ in .string(args["value"].description) }
    registry.register(
      "repr", [BuiltinParameter("value")], doc: "The value as the REPL echoes it, as a String."
    ) { args, _ in .string(args["value"].repr) }
    registry.register(
      "type", [BuiltinParameter("value")], doc: "The name of the value's type, as a String."
    ) { args, _ in .string(args["value"].typeName) }
    registry.register(
      "int", [BuiltinParameter("value")],
      doc: "An Int from an Int, a Float (truncated toward zero), a Bool or a String of digits."
    ) { args, context in
      let value = args["value"]
      switch value {
      case .int: return value
      case .bool(let b): return .int(b ? 1 : 0)
      case .string(let s):
        guard let i = Int(s.trimmingCharacters(in: .whitespaces)) else {
          throw args.error("value", "'\(s)' is not an integer")
        }
        return .int(i)
      default:
        guard let d = try (context as? Interpreter)?.number(value) else {
          throw args.error("value", "cannot convert \(value.typeName) to Int")
        }
        guard d.isFinite, Swift.abs(d) < 9.2e18 else {
          throw args.error("value", "\(d) does not fit in an Int")
        }
        return .int(Int(d))
      }
    }
    registry.register(
      "float", [BuiltinParameter("value")],
      doc: "A Float from a number, a String, or a one-element library value such as a tensor."
    ) { args, context in
      let value = args["value"]
      if case .string(let s) = value {
        guard let d = Double(s.trimmingCharacters(in: .whitespaces)) else {
          throw args.error("value", "'\(s)' is not a number")
        }
        return .float(d)
      }
      guard let d = try (context as? Interpreter)?.number(value) else {
        throw args.error("value", "cannot convert \(value.typeName) to Float")
      }
      return .float(d)
    }
    registry.register(
      "assert",
      [
        BuiltinParameter("condition", .bool),
        BuiltinParameter("message", .string, default: .string("assertion failed")),
      ],
      doc: "Stops with an error carrying `message` when `condition` is false."
    ) { args, _ in
      if !args.bool("condition") { throw ScriptError(.assertion, args.string("message")) }
      return .nil
    }
    registry.register(
      "param", [BuiltinParameter("name", .string), BuiltinParameter("default")],
      doc: "The value given on the command line with `--set name=value`, else `default`. A "
        + "value that reads as a SkelLab literal (3, 0.5, true, [1, 2]) becomes that value; "
        + "anything else is a String; it must have the default's type (an Int may stand for a "
        + "Float; a nil default takes anything). This is how a saved script is parametrised."
    ) { args, context in
      let name = args.string("name")
      guard let text = context.commandLineParameter(name) else {
        return args["default"]
      }
      let value = Interpreter.literal(text) ?? .string(text)
      // The value must be what the default is (an Int where a Float is expected is fine;
      // a nil default takes anything): the error names --set, not the line that uses it.
      let fallback = args["default"]
      switch (fallback, value) {
      case (.nil, _), (.float, .int): return value
      case (.float, _), (.int, _), (.bool, _), (.string, _), (.list, _), (.record, _):
        guard fallback.typeName == value.typeName else {
          throw args.error(
            "default",
            "--set \(name)=\(text) gives \(article(value.typeName)), but the script's default "
              + "\(fallback.repr) is \(article(fallback.typeName))")
        }
        return value
      default: return value
      }
    }
    registry.register(
      "time", [BuiltinParameter("function", .callable)],
      doc: "Calls the function with no arguments, prints how long it took (to standard error) "
        + "and returns its value."
    ) { args, context in
      let start = DispatchTime.now().uptimeNanoseconds
      let value = try context.call(args["function"], [])
      let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
      FileHandle.standardError.write(Data(String(format: "time: %.3f ms\n", elapsed).utf8))
      return value
    }
    registry.register(
      "help", [BuiltinParameter("name", .optional(.any), default: .nil)],
      doc: "Shows the signature and documentation of a builtin, a library type or a function; "
        + "with no argument, lists every builtin by family with its first sentence."
    ) { args, context in
      let text = Help.text(for: args["name"], registry: context.registry)
      context.write(Help.wrap(text, width: context.registry.helpWidth) + "\n")
      return .nil
    }
  }
}

/// "an Int", "a String".
func article(_ noun: String) -> String {
  ("AEIOU".contains(noun.first ?? "x") ? "an " : "a ") + noun
}

/// Help text generated from the registry.
public enum Help {
  public static func text(for value: Value, registry: Registry) -> String {
    switch value {
    case .nil:
      let width = (registry.builtins.keys.map(\.count).max() ?? 0) + 2
      let groups = grouped(registry).map { family, builtins in
        family + ":\n"
          + builtins.map { b in
            "  " + b.name.padding(toLength: width, withPad: " ", startingAt: 0) + summary(b.doc)
          }.joined(separator: "\n")
      }
      return groups.joined(separator: "\n\n") + "\n\nhelp(\"name\") or ?name shows one."
    case .builtin(let b): return text(for: b, registry: registry)
    case .string(let name): return text(named: name, registry: registry)
    case .function(let f): return text(for: f)
    case .object(let o): return text(named: o.typeName, registry: registry)
    default: return "\(value.typeName): no documentation"
    }
  }

  /// A script function's signature with its defaults, where it is defined, and the comment
  /// lines right above its `def` as its documentation (how the stdlib documents itself).
  static func text(for f: Function) -> String {
    let parameters = f.parameters.map { p in
      f.defaults[p.name].map { "\(p.name)=\($0.repr)" } ?? p.name
    }
    let source = f.range.source
    let line = source.location(f.range.start).line
    var doc: [String] = []
    var above = line - 1
    while above >= 1 {
      let text = source.line(above).trimmingCharacters(in: .whitespaces)
      guard text.hasPrefix("#") else { break }
      doc.insert(String(text.dropFirst()).trimmingCharacters(in: .whitespaces), at: 0)
      above -= 1
    }
    return "\(f.name)(\(parameters.joined(separator: ", ")))  (defined at \(source.name):\(line))"
      + (doc.isEmpty ? "" : "\n\n" + doc.joined(separator: "\n"))
  }

  /// What a variable holds (`?name`): its type and value (the first lines of its display),
  /// then the type's documentation with its attributes and the builtins that take it first
  /// (`name.f(...)`); a function's signature and doc; a builtin's help.
  public static func describe(_ name: String, _ value: Value, registry: Registry) -> String {
    switch value {
    case .function, .builtin: return text(for: value, registry: registry)
    default: break
    }
    let lines = value.repr.split(separator: "\n", omittingEmptySubsequences: false)
    var text =
      "\(name): \(value.typeName)\n"
      + indent(
        lines.prefix(12).joined(separator: "\n") + (lines.count > 12 ? "\n…" : ""))
    if case .object(let o) = value, let doc = registry.typeDocs[o.typeName] {
      text += "\n\n\(doc)"
    }
    if case .object(let o) = value {
      let attributes = (registry.attributes[o.typeName] ?? [:]).values.sorted { $0.name < $1.name }
      if !attributes.isEmpty {
        text +=
          "\n\nattributes:\n"
          + attributes.map { "  .\($0.name)\($0.set == nil ? "" : " (settable)"): \($0.doc)" }
          .joined(separator: "\n")
      }
    }
    let methods = registry.methods(for: value)
    if !methods.isEmpty {
      text +=
        "\n\nmethods (\(name).f(...) is f(\(name), ...)):\n  "
        + methods.joined(separator: ", ")
    }
    return text
  }

  /// Wraps lines longer than `width` at spaces, continuing each with the line's own
  /// indentation; nil leaves the text as it is (output that is not a terminal).
  public static func wrap(_ text: String, width: Int?) -> String {
    guard let width, width >= 40 else { return text }
    return text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
      guard line.count > width else { return String(line) }
      let indent = String(line.prefix { $0 == " " })
      var lines: [String] = []
      var current = ""
      for word in line.dropFirst(indent.count).split(separator: " ") {
        if !current.isEmpty, indent.count + current.count + 1 + word.count > width {
          lines.append(indent + current)
          current = String(word)
        } else {
          current += (current.isEmpty ? "" : " ") + word
        }
      }
      lines.append(indent + current)
      return lines.joined(separator: "\n")
    }.joined(separator: "\n")
  }

  /// The builtins by family, in the order the families were registered, each sorted by name.
  static func grouped(_ registry: Registry) -> [(family: String, builtins: [Builtin])] {
    registry.familyOrder.compactMap { family in
      let members = registry.builtins.values.filter { registry.families[$0.name] == family }
        .sorted { $0.name < $1.name }
      return members.isEmpty ? nil : (family, members)
    }
  }

  /// The first sentence of a doc (up to the first ". " or the end), for one-line listings.
  static func summary(_ doc: String) -> String {
    let sentence = doc.range(of: ". ").map { String(doc[..<$0.lowerBound]) + "." } ?? doc
    return sentence.count <= 100 ? sentence : String(sentence.prefix(99)) + "…"
  }

  static func text(for b: Builtin, registry: Registry) -> String {
    "\(b.signature)\n\n\(b.doc)"
      + (registry.examples[b.name].map { "\n\nexample:\n" + indent($0) } ?? "")
  }

  static func indent(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }
      .joined(separator: "\n")
  }

  /// The builtin reference as Markdown (`skellab help --markdown`, committed as
  /// docs/builtins.md): one section per family, each builtin with its signature, doc and
  /// example.
  public static func markdown(registry: Registry) -> String {
    var text = """
      # Builtin reference

      Generated by `skellab help --markdown` from the registry that checks every call; do not \
      edit by hand. The examples run in order after this prelude (a test replays them):

      ```
      \(registry.examplePrelude)
      ```

      """
    let groups = grouped(registry)
    text +=
      "\n"
      + groups.map { "- [\($0.family)](#\($0.family)) (\($0.builtins.count))" }
      .joined(separator: "\n") + "\n"
    for (family, builtins) in groups {
      text += "\n## \(family)\n"
      for b in builtins {
        text += "\n### \(b.name)\n\n```\n\(b.signature)\n```\n\n\(b.doc)\n"
        if let example = registry.examples[b.name] {
          text += "\n```\n\(example)\n```\n"
        }
      }
    }
    return text
  }

  public static func text(named name: String, registry: Registry) -> String {
    if let b = registry.builtins[name] { return text(for: b, registry: registry) }
    if let doc = registry.typeDocs[name] {
      let attributes = (registry.attributes[name] ?? [:]).values.sorted { $0.name < $1.name }
        .map { "  .\($0.name)\($0.set == nil ? "" : " (settable)"): \($0.doc)" }
      return "\(name)\n\n\(doc)"
        + (attributes.isEmpty ? "" : "\n\nattributes:\n" + attributes.joined(separator: "\n"))
    }
    var text = "no help for '\(name)'"
    if let guess = closestName(
      name, among: Array(registry.builtins.keys) + Array(registry.typeDocs.keys))
    {
      text += "; did you mean '\(guess)'?"
    }
    return text
  }
}

extension Interpreter {
  /// Reads `text` as a SkelLab literal (number, Bool, nil, String, List or Record of literals).
  public static func literal(_ text: String) -> Value? {
    let source = Source(name: "<--set>", text: text)
    var parser = Parser(source)
    guard let expr = try? parser.parseExpression(), parser.errors.isEmpty else { return nil }
    func value(_ e: Expr) -> Value? {
      switch e {
      case .literal(let l, _): return Value(l)
      case .string(let parts, _):
        guard parts.count == 1, case .text(let t) = parts[0] else { return nil }
        return .string(t)
      case .unary("-", .literal(.int(let i), _), _): return .int(-i)
      case .unary("-", .literal(.float(let d), _), _): return .float(-d)
      case .list(let items, _):
        var values: [Value] = []
        for item in items {
          guard let v = value(item) else { return nil }
          values.append(v)
        }
        return .list(values)
      case .record(let entries, _):
        var pairs: [(String, Value)] = []
        for (k, e) in entries {
          guard let v = value(e) else { return nil }
          pairs.append((k, v))
        }
        return .record(RecordBox(pairs))
      default: return nil
      }
    }
    // The whole text must be the literal (not "3 4").
    let consumed = source.text(expr.range.start..<expr.range.end).trimmingCharacters(
      in: .whitespaces)
    guard consumed == text.trimmingCharacters(in: .whitespaces) else { return nil }
    return value(expr)
  }
}
