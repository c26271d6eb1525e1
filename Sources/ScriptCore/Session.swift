import Foundation

/// One interactive session: runs input chunks, keeps the statements that ran without error
/// (for `:save`), and handles the meta commands of §8. The terminal front end (readline) and
/// the tests drive it the same way.
public final class Session {
  public let interpreter: Interpreter
  /// Source text of every chunk that ran without error, in order.
  public private(set) var log: [String] = []
  /// Every chunk entered (`:history`).
  public private(set) var entered: [String] = []
  /// Where results go (stdout) and where diagnostics go (stderr).
  public var out: (String) -> Void
  public var err: (String) -> Void
  private var counter = 0
  /// The name diagnostics give entered statements (`<repl>`, `<stdin>`).
  public var inputName = "<repl>"

  public init(
    interpreter: Interpreter, out: @escaping (String) -> Void, err: @escaping (String) -> Void
  ) {
    self.interpreter = interpreter
    self.out = out
    self.err = err
    interpreter.output = out
  }

  /// What the front end should do after a chunk.
  public enum Outcome: Equatable {
    case ok
    case failed
    case interrupted
    case quit
  }

  /// Runs one complete chunk (one or more statements, or a meta command).
  @discardableResult
  public func submit(_ text: String) -> Outcome {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    if trimmed.isEmpty { return .ok }
    entered.append(text)
    if trimmed.hasPrefix(":") || trimmed.hasPrefix("?") { return meta(trimmed) }
    return execute(text, name: inputName)
  }

  /// Runs statements, echoing values; logs the chunk when it ran without error.
  public func execute(_ text: String, name: String, directory: String? = nil) -> Outcome {
    counter += 1
    let source = Source(name: name, text: text, directory: directory)
    Interrupt.clear()
    do {
      try interpreter.run(source) { [out] value in out(value.repr + "\n") }
      log.append(text)
      return .ok
    } catch let error as ScriptError {
      err(Diagnostics.render(error) + "\n")
      if error.kind == .interrupted {
        // Its effects depend on when Ctrl-C came, so it cannot be replayed; the saved script
        // says where it was, as a comment.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        log.append(
          "# interrupted, not replayed:\n" + lines.map { "#   " + $0 }.joined(separator: "\n"))
        return .interrupted
      }
      return .failed
    } catch {
      err("error: \(error)\n")
      return .failed
    }
  }

  private func meta(_ command: String) -> Outcome {
    var words = command.split(separator: " ", maxSplits: 1).map(String.init)
    if command.hasPrefix("?") { words = [":help", String(command.dropFirst())] }
    let argument = words.count > 1 ? words[1].trimmingCharacters(in: .whitespaces) : ""
    switch words[0] {
    case ":help":
      out(
        (argument.isEmpty
          ? Session.metaHelp
          : Help.wrap(
            interpreter.global(argument).map { value in
              Help.describe(argument, value, registry: interpreter.registry)
            } ?? Help.text(named: argument, registry: interpreter.registry),
            width: interpreter.registry.helpWidth)) + "\n")
    case ":vars":
      for name in interpreter.globalNames {
        guard let value = interpreter.global(name) else { continue }
        let text = value.repr.split(separator: "\n").first.map(String.init) ?? ""
        out(
          "\(name): \(value.typeName) = \(text.count > 70 ? String(text.prefix(69)) + "…" : text)\n"
        )
      }
    case ":time":
      guard !argument.isEmpty else {
        err("error: :time needs a statement\n")
        return .failed
      }
      let start = DispatchTime.now().uptimeNanoseconds
      let outcome = execute(argument, name: "<repl>")
      let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
      err(String(format: "time: %.3f ms\n", elapsed))
      return outcome
    case ":save":
      guard !argument.isEmpty else {
        err("error: :save needs a file name\n")
        return .failed
      }
      do {
        let text = log.map { $0.hasSuffix("\n") ? $0 : $0 + "\n" }.joined()
        try Session.writeAtomically(text, to: resolved(argument))
        let statements = log.filter { !$0.hasPrefix("# interrupted") }.count
        out("saved \(statements) statement(s) to \(argument)\n")
      } catch {
        err("error: cannot write '\(argument)': \(error.localizedDescription)\n")
        return .failed
      }
    case ":load":
      guard !argument.isEmpty else {
        err("error: :load needs a file name\n")
        return .failed
      }
      guard let text = try? String(contentsOfFile: resolved(argument), encoding: .utf8) else {
        err("error: cannot read '\(argument)'\n")
        return .failed
      }
      return execute(
        text, name: argument,
        directory: (resolved(argument) as NSString).deletingLastPathComponent)
    case ":history":
      for (i, chunk) in entered.dropLast().enumerated() { out("\(i + 1)  \(chunk)\n") }
    case ":reset":
      interpreter.reset()
      log = []
      out("all variables cleared\n")
    case ":quit", ":q", ":exit":
      return .quit
    default:
      var message = "error: unknown command '\(words[0])'"
      if let guess = closestName(words[0], among: Session.metaCommands) {
        message += "; did you mean '\(guess)'?"
      }
      err(message + " (:help lists the commands)\n")
      return .failed
    }
    return .ok
  }

  public static let metaCommands = [
    ":help", ":vars", ":time", ":save", ":load", ":history", ":reset", ":quit",
  ]

  static let metaHelp = """
    :help [name]   help on a builtin or type (also ?name); with no name, this list
    :vars          the variables and their values
    :time stmt     run a statement and show how long it took
    :save file     write every statement that ran without error as a script
    :load file     run a script in this session
    :history       the statements entered
    :reset         forget every variable
    :quit          leave (also Ctrl-D)
    help() lists the builtins.
    """

  /// Writes text through a temporary file and a rename.
  /// A relative path against the interpreter's working directory, when it has one.
  func resolved(_ path: String) -> String {
    guard let directory = interpreter.workingDirectory, !path.hasPrefix("/"), !path.hasPrefix("~")
    else { return path }
    return (directory as NSString).appendingPathComponent(path)
  }

  static func writeAtomically(_ text: String, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let temporary = url.deletingLastPathComponent().appendingPathComponent(
      ".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)")
    try Data(text.utf8).write(to: temporary)
    guard Foundation.rename(temporary.path, url.path) == 0 else {
      try? FileManager.default.removeItem(at: temporary)
      throw CocoaError(.fileWriteUnknown)
    }
  }
}
