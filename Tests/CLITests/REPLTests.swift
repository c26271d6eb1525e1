import CSystem
import Foundation
import TestSupport
import Testing

/// The REPL through a pseudo-terminal: skellab sees a terminal on stdin and stdout, so it runs
/// readline. Ctrl-C is sent as the signal the terminal would send.
final class Terminal {
  let master: Int32
  let process = Process()
  private(set) var transcript = ""

  init(environment: [String: String]) throws {
    var name = [CChar](repeating: 0, count: 256)
    master = skellab_open_pty(&name, UInt(name.count))
    guard master >= 0 else { throw CocoaError(.fileReadUnknown) }
    let path = String(
      decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let slave = open(path, O_RDWR | O_NOCTTY)
    guard slave >= 0 else { throw CocoaError(.fileReadUnknown) }
    let handle = FileHandle(fileDescriptor: slave, closeOnDealloc: true)
    process.executableURL = URL(fileURLWithPath: skellabBinary)
    var env = ProcessInfo.processInfo.environment
    env["TERM"] = "dumb"
    for (k, v) in environment { env[k] = v }
    process.environment = env
    process.standardInput = handle
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    try handle.close()
  }

  func type(_ text: String) {
    _ = text.utf8CString.withUnsafeBufferPointer { write(master, $0.baseAddress, $0.count - 1) }
  }

  /// Reads until `text` appears after `offset` in the transcript, or the time runs out.
  @discardableResult
  func waitFor(_ text: String, after offset: String.Index? = nil, seconds: Double = 10) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      let start = offset ?? transcript.startIndex
      if transcript[start...].contains(text) { return true }
      var descriptor = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
      if poll(&descriptor, 1, 50) > 0 {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(master, &buffer, buffer.count)
        if n > 0 { transcript += String(decoding: buffer[0..<n], as: UTF8.self) }
        if n <= 0 && !process.isRunning { break }
      }
    }
    return transcript[(offset ?? transcript.startIndex)...].contains(text)
  }

  var end: String.Index { transcript.endIndex }

  /// Waits for the process to end; kills it (and says so) when it does not in time.
  func waitForExit(seconds: Double) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while process.isRunning && Date() < deadline {
      _ = waitFor("\u{0}", seconds: 0.1)
    }
    if process.isRunning {
      process.terminate()
      process.waitUntilExit()
      return false
    }
    return true
  }

  deinit {
    if process.isRunning { process.terminate() }
    close(master)
  }
}

@Suite("REPL", .timed, .heavy)
struct REPLTests {
  @Test func sessionThroughATerminal() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "skellab-repl-\(ProcessInfo.processInfo.processIdentifier)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let history = folder.appendingPathComponent("history").path
    let saved = folder.appendingPathComponent("session.skl").path
    let terminal = try Terminal(environment: ["SKELLAB_HISTORY": history])
    #expect(terminal.waitFor("skl> "), "no prompt: \(terminal.transcript)")

    var mark = terminal.end
    terminal.type("seed(3)\nx = 21\nx * 2\n")
    #expect(terminal.waitFor("42", after: mark))

    // Tab completes a global name, then a keyword argument of a builtin.
    mark = terminal.end
    terminal.type("depth_value = 4\ndept\t * 2\n")
    #expect(terminal.waitFor("8\r\n", after: mark), "\(terminal.transcript[mark...])")
    mark = terminal.end
    terminal.type("full([2], val\t7).list()\n")
    #expect(terminal.waitFor("[7.0, 7.0]", after: mark), "\(terminal.transcript[mark...])")

    // An error leaves the session usable.
    mark = terminal.end
    terminal.type("nope\n")
    #expect(terminal.waitFor("error: unknown name 'nope'", after: mark))

    // A block over several lines, interrupted while it runs; the variables survive.
    mark = terminal.end
    terminal.type("i = 0\nwhile true\n  i += 1\nend\n")
    #expect(terminal.waitFor("...> ", after: mark))
    Thread.sleep(forTimeInterval: 0.5)
    kill(terminal.process.processIdentifier, SIGINT)
    #expect(terminal.waitFor("interrupted", after: mark), "\(terminal.transcript[mark...])")
    #expect(terminal.waitFor("skl> ", after: mark))
    mark = terminal.end
    terminal.type(":vars\n")
    #expect(terminal.waitFor("x: Int = 21", after: mark))
    #expect(terminal.waitFor("i: Int = ", after: mark))
    #expect(!terminal.transcript[mark...].contains("i: Int = 0\r"), "the loop ran before Ctrl-C")
    #expect(terminal.waitFor("skl> ", after: mark))

    // Ctrl-C at the prompt drops the half-typed line.
    mark = terminal.end
    terminal.type("abc")
    #expect(terminal.waitFor("abc", after: mark))
    Thread.sleep(forTimeInterval: 0.2)
    kill(terminal.process.processIdentifier, SIGINT)
    Thread.sleep(forTimeInterval: 0.3)
    mark = terminal.end
    terminal.type("1 + 1\n")
    #expect(terminal.waitFor("2\r\n", after: mark), "\(terminal.transcript)")

    mark = terminal.end
    terminal.type(":save \(saved)\n")
    // The prompt after the message: an earlier "skl> " (typed-ahead echo) may follow the mark,
    // and a Ctrl-D typed before readline is back in raw mode is an EOF the terminal swallows.
    #expect(terminal.waitFor("statement(s) to \(saved)\r\nskl> ", after: mark))
    terminal.type("\u{04}")  // Ctrl-D
    // Generous: CI machines may be loaded by parallel test suites.
    #expect(
      terminal.waitForExit(seconds: 30),
      "Ctrl-D did not end the REPL: \(terminal.transcript.suffix(400).debugDescription)")
    #expect(terminal.process.terminationStatus == 0)

    // The saved session replays in batch mode and prints what the session printed.
    let script = try String(contentsOfFile: saved, encoding: .utf8)
    #expect(!script.contains("nope") && !script.contains("abc"))
    #expect(script.contains("# interrupted, not replayed:\n#   while true\n#     i += 1\n#   end"))
    let replay = try runSkellab(["run", saved])
    #expect(replay.status == 0, "\(replay.stderr)")
    #expect(replay.stdout == "42\n8\n[7.0, 7.0]\n2\n", "\(replay.stdout)")
    #expect(FileManager.default.fileExists(atPath: history))
  }
}

@Suite("REPL hardening", .timed, .heavy)
struct REPLHardeningTests {
  /// Tab inside a string after a one-letter fragment with no `/` crashed the REPL (in
  /// Foundation's path splitting); each statement reaches the history file as it runs, so a
  /// killed REPL keeps it; SIGTERM at the prompt ends it with 143.
  @Test func pathCompletionHistoryAndTermination() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "skellab-repl-tab-\(ProcessInfo.processInfo.processIdentifier)")
    try? FileManager.default.removeItem(at: folder)
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let history = folder.appendingPathComponent("history").path
    let terminal = try Terminal(environment: ["SKELLAB_HISTORY": history])
    #expect(terminal.waitFor("skl> "), "no prompt: \(terminal.transcript)")
    var mark = terminal.end
    terminal.type("s = 1\n")
    #expect(terminal.waitFor("skl> ", after: mark))
    for fragment in ["show(s, \"w", "x = \"a", "y = \"~", "z = \"/e", "q = \""] {
      mark = terminal.end
      terminal.type(fragment + "\t\t")
      Thread.sleep(forTimeInterval: 0.3)
      terminal.type("\u{15}")  // Ctrl-U: drop the line
      terminal.type("1 + 2\n")
      #expect(
        terminal.waitFor("3\r\n", after: mark), "after \(fragment): \(terminal.transcript[mark...])"
      )
    }
    #expect(terminal.process.isRunning)
    // The statements are in the history file before the REPL ends.
    let saved = (try? String(contentsOfFile: history, encoding: .utf8)) ?? ""
    #expect(saved.contains("s = 1") && saved.contains("1 + 2"), "\(saved)")
    kill(terminal.process.processIdentifier, SIGTERM)
    // Generous: a sanitizer build on a loaded machine takes seconds to exit.
    #expect(terminal.waitForExit(seconds: 60), "SIGTERM did not end the REPL")
    #expect(terminal.process.terminationStatus == 143)
  }

  /// Completion knows what a name holds: `enc.` offers the Model's attributes and the
  /// builtins that take a Model (not every builtin), chains of attributes complete, a call's
  /// keyword arguments come first, and `?enc` describes the value.
  @Test func completionKnowsTheTypes() throws {
    let terminal = try Terminal(environment: ["SKELLAB_HISTORY": "/dev/null"])
    #expect(terminal.waitFor("skl> "), "no prompt: \(terminal.transcript)")
    var mark = terminal.end
    terminal.type("enc = encoder(dim=8, depth=1, heads=2, frames=16)\n")
    #expect(terminal.waitFor("skl> ", after: mark))
    mark = terminal.end
    terminal.type("enc.\t\t")
    #expect(terminal.waitFor("parameter_count", after: mark), "\(terminal.transcript[mark...])")
    #expect(terminal.waitFor("linear_probe", after: mark))
    let listing = terminal.transcript[mark...]
    #expect(!listing.contains("zeros") && !listing.contains("randn"), "\(listing)")
    terminal.type("\u{15}")  // Ctrl-U
    mark = terminal.end
    terminal.type("ds = split(dataset(\"synthetic\", subjects=1, frames=16), \"xsub\")\n")
    #expect(terminal.waitFor("skl> ", after: mark))
    mark = terminal.end
    terminal.type("len(ds.tra\t)\n")
    #expect(terminal.waitFor("len(ds.train)", after: mark), "\(terminal.transcript[mark...])")
    mark = terminal.end
    terminal.type("knn(enc, ds, \t\t")
    #expect(terminal.waitFor("k=", after: mark), "\(terminal.transcript[mark...])")
    // Only what is left to give: enc and data are given, so not offered; nothing else either.
    #expect(terminal.waitFor("run=", after: mark))
    #expect(!terminal.transcript[mark...].contains("data="), "\(terminal.transcript[mark...])")
    terminal.type("\u{15}")
    mark = terminal.end
    terminal.type("print_options(prec\t3)\n")
    #expect(terminal.waitFor("precision: 3", after: mark), "\(terminal.transcript[mark...])")
    mark = terminal.end
    terminal.type("?enc\n")
    #expect(terminal.waitFor("enc: Model", after: mark), "\(terminal.transcript[mark...])")
    #expect(terminal.waitFor("methods (enc.f(...) is f(enc, ...))", after: mark))
    kill(terminal.process.processIdentifier, SIGTERM)
    #expect(terminal.waitForExit(seconds: 60))
  }
}
