// skellab: the REPL, batch mode and one-off commands of language.md §8–§9.
import CSystem
import Distributed
import Foundation
import ScriptCore
import ScriptLibrary
import TensorCore

let version = "skellab 0.1.0"

let usage = """
  usage: skellab                                  REPL
         skellab run FILE.skl [--set name=value]...   batch mode
         skellab -e 'statements'                  one-off
         skellab check FILE.skl                   parse and resolve names, run nothing
         skellab help [topic]                     the same docs as :help
         skellab help --markdown                  the builtin reference (docs/builtins.md)
         skellab --version
  """

/// NUL bytes (from a binary file read as a script) shown as ␀: through C they would end the text.
func printable(_ text: String) -> String {
  text.contains("\0") ? text.replacingOccurrences(of: "\0", with: "\u{2400}") : text
}

/// In an MPI job every rank runs the script and meets the same errors; rank 0 reports them. The
/// other ranks keep what they would report and show it only when they fail and rank 0 has not
/// ended the job first (an error only that rank met: a file missing on its machine, say).
nonisolated(unsafe) var heldErrors = ""
func writeError(_ text: String) {
  let rank = World.current.rank
  guard rank == 0 else {
    heldErrors += text.split(separator: "\n", omittingEmptySubsequences: false)
      .map { $0.isEmpty ? "" : "[rank \(rank)] " + $0 }.joined(separator: "\n")
    return
  }
  skellab_write_stderr(printable(text))
}
/// Results go through C's stdout stream, the one readline draws the prompt on, so the two
/// never overtake each other. Only rank 0 of an MPI job prints.
func writeOut(_ text: String) {
  guard World.current.rank == 0 else { return }
  skellab_write_stdout(printable(text))
}

/// Exit statuses of §9: 128 + the signal's number when a signal stopped the run.
enum Status: Int32 {
  case success = 0, scriptError = 1, usage = 2, hungUp = 129, interrupted = 130
  case userSignal = 138, terminated = 143

  /// Whether a signal stopped the run (Ctrl-C, SIGTERM, SIGHUP, SIGUSR1).
  var stoppedBySignal: Bool { [.interrupted, .hungUp, .terminated, .userSignal].contains(self) }

  /// The status for a run stopped by the last interrupting signal.
  nonisolated static var ofInterruption: Status {
    switch skellab_interrupt_signal() {
    case SIGTERM: .terminated
    case SIGHUP: .hungUp
    case SIGUSR1: .userSignal
    default: .interrupted
    }
  }
}

/// Whether SIGTERM, SIGHUP or SIGUSR1 asked the process to end (a Ctrl-C only stops a
/// statement).
nonisolated var terminationRequested: Bool {
  let signal = skellab_interrupt_signal()
  return signal == SIGTERM || signal == SIGHUP || signal == SIGUSR1
}

func makeInterpreter(parameters: [String: String] = [:]) -> Interpreter {
  let interpreter = Interpreter(registry: Library.registry())
  interpreter.commandLineParameters = parameters
  return interpreter
}

func status(of outcome: Session.Outcome) -> Status {
  switch outcome {
  case .ok, .quit: return .success
  case .failed: return .scriptError
  case .interrupted: return .ofInterruption
  }
}

func runFile(_ path: String, parameters: [String: String]) -> Status {
  guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
    writeError("error: cannot read '\(path)'\n")
    return .scriptError
  }
  let directory = (path as NSString).deletingLastPathComponent
  let source = Source(name: path, text: text, directory: directory.isEmpty ? nil : directory)
  // A --set the script never reads is a typo: refused before any work when the script's
  // param names can be read without running it, and reported at the end otherwise.
  if !parameters.isEmpty, let known = Checker.parameterNames(source) {
    let unknown = parameters.keys.filter { !known.contains($0) }.sorted()
    if !unknown.isEmpty {
      writeError(unreadParameters(unknown, known: known, path: path) + "\n")
      return .usage
    }
  }
  let interpreter = makeInterpreter(parameters: parameters)
  let session = Session(interpreter: interpreter, out: writeOut, err: writeError)
  let outcome = status(
    of: session.execute(text, name: path, directory: directory.isEmpty ? nil : directory))
  let unread = parameters.keys.filter { !interpreter.readParameters.contains($0) }.sorted()
  if outcome == .success, !unread.isEmpty {
    writeError(unreadParameters(unread, known: interpreter.readParameters, path: path) + "\n")
    return .scriptError
  }
  return outcome
}

/// The error for `--set` names a script does not read, with the names it does and a guess.
func unreadParameters(_ names: [String], known: Set<String>, path: String) -> String {
  var text =
    "error: \(path) reads no parameter "
    + names.map { "'\($0)'" }.joined(separator: ", ") + " given with --set"
  text +=
    known.isEmpty ? " (it reads none)" : " (it reads \(known.sorted().joined(separator: ", ")))"
  for name in names {
    if let guess = closestName(name, among: Array(known)) {
      text += "\n  = did you mean '\(guess)'?"
    }
  }
  return text
}

func check(_ path: String) -> Status {
  guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
    writeError("error: cannot read '\(path)'\n")
    return .scriptError
  }
  let directory = (path as NSString).deletingLastPathComponent
  let errors = Checker.check(
    Source(name: path, text: text, directory: directory.isEmpty ? nil : directory),
    registry: Library.registry())
  for error in errors { writeError(Diagnostics.render(error) + "\n\n") }
  if errors.isEmpty {
    writeOut("\(path): no errors\n")
    return .success
  }
  writeError("\(path): \(errors.count) error(s)\n")
  return .scriptError
}

/// Standard input that is not a terminal: statements without prompts; the first error ends
/// the run with status 1.
func runStandardInput() -> Status {
  let session = Session(interpreter: makeInterpreter(), out: writeOut, err: writeError)
  session.inputName = "<stdin>"
  var pending = ""
  while let line = readLine(strippingNewline: false) {
    pending += line
    if Parser.isIncomplete(pending) { continue }
    let outcome = session.submit(pending)
    pending = ""
    switch outcome {
    case .ok: continue
    case .quit: return .success
    case .failed, .interrupted: return status(of: outcome)
    }
  }
  if !pending.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
    return status(of: session.submit(pending))
  }
  return .success
}

func main(_ arguments: [String]) -> Status {
  Interrupt.installHandler()
  do {
    try World.start()
  } catch {
    writeError("skellab: \(error)\n")
    return .usage
  }
  guard let command = arguments.first else {
    if World.current.size > 1 {
      writeError(
        "skellab: the REPL runs in one process; under mpirun run a script: "
          + "mpirun -np \(World.current.size) skellab run FILE.skl\n")
      return .usage
    }
    if isatty(0) != 0 && isatty(1) != 0 {
      return REPL(session: Session(interpreter: makeInterpreter(), out: writeOut, err: writeError))
        .run()
    }
    return runStandardInput()
  }
  switch command {
  case "--version", "-V":
    writeOut(
      version + "\n" + "BLAS kernels: OpenBLAS \(BLASCore.description)\n"
        + "MPI: "
        + (World.mpiBuilt
          ? "built in (\(World.current.transport))" : "not built (swift build --traits MPI)")
        + "\n")
    return .success
  case "help", "--help", "-h":
    let registry = Library.registry()
    if arguments.count > 1, arguments[1] == "--markdown" {
      writeOut(Help.markdown(registry: registry))
      return .success
    }
    let text =
      arguments.count > 1
      ? Help.text(named: arguments[1], registry: registry)
      : usage + "\n\n" + Help.text(for: .nil, registry: registry)
    writeOut(text + "\n")
    return .success
  case "-e":
    guard arguments.count == 2 else {
      writeError("skellab: -e takes one argument\n\(usage)\n")
      return .usage
    }
    let session = Session(interpreter: makeInterpreter(), out: writeOut, err: writeError)
    return status(of: session.execute(arguments[1], name: "<-e>"))
  case "check":
    guard arguments.count == 2 else {
      writeError("skellab: check takes one file\n\(usage)\n")
      return .usage
    }
    return check(arguments[1])
  case "run":
    guard arguments.count >= 2 else {
      writeError("skellab: run needs a file\n\(usage)\n")
      return .usage
    }
    var parameters: [String: String] = [:]
    var rest = arguments.dropFirst(2)
    while let flag = rest.popFirst() {
      guard flag == "--set", let pair = rest.popFirst(), let equals = pair.firstIndex(of: "="),
        equals != pair.startIndex
      else {
        writeError("skellab: expected --set name=value, got '\(flag)'\n\(usage)\n")
        return .usage
      }
      parameters[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
    }
    return runFile(arguments[1], parameters: parameters)
  default:
    writeError("skellab: unknown command '\(command)'\n\(usage)\n")
    return .usage
  }
}

// Scripts may recurse and nest deeply: run on a thread with a large stack, and keep SIGINT
// away from the waiting main thread so that it interrupts the REPL's wait for input.
unblockAllSignals()
nonisolated(unsafe) var exitStatus = Status.success
let finished = DispatchSemaphore(value: 0)
let worker = Thread {
  setInterruptsBlocked(false)
  exitStatus = main(Array(CommandLine.arguments.dropFirst()))
  if World.current.size > 1 {
    // A rank that failed alone would leave the others waiting in their next exchange: the job
    // ends with it. After a clean run the ranks leave together.
    if exitStatus == .success {
      World.finish()
    } else {
      // Rank 0 ends the job at once. Another rank leaves that to rank 0: after its report of an
      // error every rank met (wait 3 s, so that it is reported once), or after saving the step
      // every rank stopped at when the job was interrupted (wait as long as it takes, up to 10
      // minutes; ending the job first would make mpirun kill rank 0 in the middle of its
      // checkpoint). A signal that comes while waiting means the job is being interrupted.
      if World.current.rank != 0 {
        let start = DispatchTime.now().uptimeNanoseconds
        var interrupted = false
        while true {
          interrupted = exitStatus.stoppedBySignal || terminationRequested
          let limit: UInt64 = interrupted ? 600_000_000_000 : 3_000_000_000
          if DispatchTime.now().uptimeNanoseconds - start >= limit { break }
          usleep(20_000)
        }
        if interrupted { exit(exitStatus.rawValue) }
      }
      skellab_write_stderr(printable(heldErrors))
      World.current.abort(
        "skellab: rank \(World.current.rank) stopped (status \(exitStatus.rawValue)); ending the job",
        status: exitStatus.rawValue)
    }
  }
  finished.signal()
}
worker.stackSize = 512 << 20
worker.start()
setInterruptsBlocked(true)
finished.wait()
exit(exitStatus.rawValue)
