import CReadline
import CSystem
import Foundation
import ScriptCore

/// The interactive front end: GNU readline (callback interface) with history and completion.
/// Ctrl-C at the prompt clears the line; while a statement runs it sets the interrupt flag
/// that the interpreter checks at safe points; Ctrl-D exits.
final class REPL {
  let session: Session
  let historyPath: String

  init(session: Session) {
    self.session = session
    historyPath =
      ProcessInfo.processInfo.environment["SKELLAB_HISTORY"]
      ?? (NSHomeDirectory() as NSString).appendingPathComponent(".skellab_history")
  }

  func run() -> Status {
    REPLState.session = session
    skellab_rl_configure(complete)
    using_history()
    // append_history needs the file to exist: each statement is appended as it runs, so a
    // crash or a kill loses no history.
    if !FileManager.default.fileExists(atPath: historyPath) {
      _ = FileManager.default.createFile(atPath: historyPath, contents: nil)
    }
    _ = read_history(historyPath)
    stifle_history(5000)
    writeOut("\(version) — :help for commands, help() for builtins, Ctrl-D to leave\n")
    var pending = ""
    while true {
      REPLState.line = nil
      REPLState.done = false
      let prompt = pending.isEmpty ? "skl> " : "...> "
      rl_callback_handler_install(prompt, lineHandler)
      var interrupted = false
      let wake = skellab_interrupt_fd()
      while !REPLState.done {
        var readSet = fd_set()
        fdZero(&readSet)
        fdSet(0, &readSet)
        if wake >= 0 { fdSet(wake, &readSet) }
        let ready = select(max(0, wake) + 1, &readSet, nil, nil, nil)
        if Interrupt.isPending {
          // Ctrl-C at the prompt (the handler also woke us through the pipe).
          skellab_drain_interrupt_fd()
          Interrupt.clear()
          interrupted = true
          break
        }
        if ready <= 0 || !fdIsSet(0, &readSet) {
          if wake >= 0 { skellab_drain_interrupt_fd() }
          continue
        }
        rl_callback_read_char()
      }
      if interrupted, terminationRequested {
        rl_callback_handler_remove()
        writeOut("\n")
        return .ofInterruption  // SIGTERM/SIGHUP at the prompt: the history is already saved
      }
      if interrupted {
        rl_callback_handler_remove()
        // Ctrl-C at the prompt: drop the line (and any unfinished block).
        rl_free_line_state()
        rl_replace_line("", 0)
        writeOut("\n")
        pending = ""
        continue
      }
      guard let line = REPLState.line else {  // Ctrl-D
        writeOut("\n")
        break
      }
      pending += pending.isEmpty ? line : "\n" + line
      if Parser.isIncomplete(pending) { continue }
      let chunk = pending
      pending = ""
      if !chunk.trimmingCharacters(in: .whitespaces).isEmpty {
        add_history(chunk)
        _ = append_history(1, historyPath)
      }
      var size = winsize()
      session.interpreter.registry.helpWidth =
        ioctl(1, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) - 1 : nil
      let outcome = session.submit(chunk)
      if outcome == .quit { break }
      if outcome == .interrupted, terminationRequested { return .ofInterruption }
    }
    if write_history(historyPath) != 0 { _ = history_truncate_file(historyPath, 5000) }
    return .success
  }
}

/// State shared with readline's C callbacks (which cannot capture context).
enum REPLState {
  nonisolated(unsafe) static var session: Session?
  nonisolated(unsafe) static var line: String?
  nonisolated(unsafe) static var done = false
  nonisolated(unsafe) static var matches: [String] = []
}

private let lineHandler: @convention(c) (UnsafeMutablePointer<CChar>?) -> Void = { raw in
  // Remove the handler here, as Python's readline module does: otherwise readline redraws
  // the prompt as soon as this returns, before the statement's output.
  rl_callback_handler_remove()
  REPLState.done = true
  if let raw {
    REPLState.line = String(cString: raw)
    free(raw)
  } else {
    REPLState.line = nil
  }
}

/// readline asks for completions of `text` (its word, `start..<end` of the line buffer).
private let complete:
  @convention(c) (UnsafePointer<CChar>?, Int32, Int32) -> UnsafeMutablePointer<
    UnsafeMutablePointer<CChar>?
  >? = {
    text, start, end in
    skellab_rl_completion_flags()
    guard let session = REPLState.session, let buffer = skellab_rl_line_buffer() else { return nil }
    let line = String(cString: buffer)
    let before = String(line.utf8.prefix(Int(end))) ?? line
    let (ourStart, candidates) = Completion.candidates(
      before: before, interpreter: session.interpreter)
    let readlineStart = Int(start)
    let utf8 = Array(before.utf8)
    let ours = before.unicodeScalars.prefix(ourStart).reduce(0) { $0 + UTF8.width($1) }
    var adjusted: [String] = candidates
    if ours < readlineStart {
      let cut = readlineStart - ours
      adjusted = candidates.compactMap { c in
        c.utf8.count >= cut ? String(c.utf8.dropFirst(cut)) : nil
      }
    } else if ours > readlineStart {
      let prefix = String(decoding: utf8[readlineStart..<min(ours, utf8.count)], as: UTF8.self)
      adjusted = candidates.map { prefix + $0 }
    }
    REPLState.matches = adjusted
    if adjusted.isEmpty { return nil }
    return rl_completion_matches(text, generator)
  }

private let generator:
  @convention(c) (UnsafePointer<CChar>?, Int32) -> UnsafeMutablePointer<CChar>? = {
    _, state in
    let index = Int(state)
    guard index < REPLState.matches.count else { return nil }
    return strdup(REPLState.matches[index])
  }

/// fd_set helpers (the C macros are not visible to Swift).
func fdZero(_ set: inout fd_set) {
  withUnsafeMutableBytes(of: &set) { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
}

func fdIsSet(_ fd: Int32, _ set: inout fd_set) -> Bool {
  withUnsafeMutableBytes(of: &set) { bytes in
    let words = bytes.bindMemory(to: Int.self)
    return words[Int(fd) / Int.bitWidth] & (1 << (Int(fd) % Int.bitWidth)) != 0
  }
}

func fdSet(_ fd: Int32, _ set: inout fd_set) {
  withUnsafeMutableBytes(of: &set) { bytes in
    let words = bytes.bindMemory(to: Int.self)
    words[Int(fd) / Int.bitWidth] |= 1 << (Int(fd) % Int.bitWidth)
  }
}

/// Blocks (or unblocks) SIGINT on the calling thread. The main thread blocks it and the
/// session thread unblocks it, so the signal always reaches the session (and interrupts its
/// wait for input); new threads may start with signals blocked.
/// Clears the signal mask inherited from the parent (a test runner or a shell may start us with
/// signals blocked, and then SIGTERM would not end the process).
func unblockAllSignals() {
  var none = sigset_t()
  sigemptyset(&none)
  pthread_sigmask(SIG_SETMASK, &none, nil)
}

func setInterruptsBlocked(_ blocked: Bool) {
  var set = sigset_t()
  sigemptyset(&set)
  sigaddset(&set, SIGINT)
  sigaddset(&set, SIGTERM)
  sigaddset(&set, SIGHUP)
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nil)
}
