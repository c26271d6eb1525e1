import Foundation
import ScriptCore
import ScriptLibrary
import TensorCore
import TestSupport
import Testing

/// Thousands of random and mutated programs: each must end (normally or with a ScriptError)
/// within its time limit; a crash would take the test process down, a hang would stop it.
@Suite("Fuzz", .timed, .heavy)
struct FuzzTests {
  static let vocabulary = [
    "def", "end", "if", "elif", "else", "for", "in", "while", "return", "break", "continue",
    "and", "or", "not", "true", "false", "nil", "import", "x", "y", "f", "t", "print", "range",
    "tensor", "zeros", "randn", "sum", "reshape", "len", "(", ")", "[", "]", "{", "}", ",", ":",
    ".", "=", "+=", "+", "-", "*", "/", "%", "@", "**", "==", "<", ">=", "\n", "\n", " ", "0", "1",
    "-1", "2.5", "1e308", "9223372036854775807", "\"s\"", "\"{x}\"", "\"{", "\"", "#", ";",
    "x.shape",
    "[1, 2]", "{a: 1}", "x[0]", "x[::-1]", "f(x)", "f(f(x))", "x = 1", "while true", "g(",
  ]

  /// A small deterministic generator (TensorCore's), so a failure reproduces.
  static func programs(count: Int, seed: UInt64) throws -> [String] {
    var random = RandomGenerator(seed: seed)
    let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Golden").path
    // The golden files' paths under /tmp (`save("/tmp/...")`, `fit(..., run="/tmp/...")`)
    // move to this process's own folder: the golden suite runs those files at the same time,
    // and two runs in one folder remove each other's temporary files.
    let own = FileManager.default.temporaryDirectory
      .appendingPathComponent("skellab-fuzz-\(ProcessInfo.processInfo.processIdentifier)").path
    try FileManager.default.createDirectory(atPath: own, withIntermediateDirectories: true)
    let corpus = try FileManager.default.contentsOfDirectory(atPath: folder)
      .filter { $0.hasSuffix(".skl") }.sorted()
      .map {
        try String(contentsOfFile: (folder as NSString).appendingPathComponent($0), encoding: .utf8)
          .replacingOccurrences(of: "\"/tmp/", with: "\"" + own + "/")
      }
    var result: [String] = []
    for index in 0..<count {
      if index % 2 == 0 {
        // Random token soup.
        let length = try random.nextInt(below: 40) + 1
        var text = ""
        for _ in 0..<length {
          text += vocabulary[try random.nextInt(below: vocabulary.count)] + " "
        }
        result.append(text)
      } else {
        // A golden file with a few mutations: deletions, insertions, duplicated lines.
        var scalars = Array(corpus[try random.nextInt(below: corpus.count)].unicodeScalars)
        for _ in 0..<(try random.nextInt(below: 6) + 1) {
          guard !scalars.isEmpty else { break }
          let at = try random.nextInt(below: scalars.count)
          switch try random.nextInt(below: 3) {
          case 0:
            let end = min(scalars.count, at + (try random.nextInt(below: 20)))
            scalars.removeSubrange(at..<end)
          case 1:
            let token = vocabulary[try random.nextInt(below: vocabulary.count)]
            scalars.insert(contentsOf: token.unicodeScalars, at: at)
          default:
            let end = min(scalars.count, at + (try random.nextInt(below: 80)))
            scalars.insert(contentsOf: scalars[at..<end], at: at)
          }
        }
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars)
        result.append(text)
      }
    }
    return result
  }

  @Test func programsNeverCrashOrHang() throws {
    let cases = try FuzzTests.programs(count: 3000, seed: 2026)
    /// Filled by the worker thread; read after the semaphore says it finished.
    final class Tally: @unchecked Sendable {
      var ok = 0
      var failed = 0
      var timedOut = 0
      var longest = 0.0
    }
    let tally = Tally()
    // Deep recursion and nesting need the stack the CLI gives its session thread.
    let done = DispatchSemaphore(value: 0)
    let worker = Thread {
      for program in cases {
        let interpreter = Interpreter(registry: Library.registry())
        interpreter.output = { _ in }
        let start = DispatchTime.now().uptimeNanoseconds
        interpreter.deadline = start + 200_000_000
        do {
          try interpreter.run(Source(name: "fuzz.skl", text: program)) { _ in }
          tally.ok += 1
        } catch let error as ScriptError {
          if error.message == "time limit reached" {
            tally.timedOut += 1
          } else {
            tally.failed += 1
          }
        } catch {
          tally.failed += 1
        }
        tally.longest = max(
          tally.longest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        _ = Checker.check(Source(name: "fuzz.skl", text: program), registry: interpreter.registry)
      }
      done.signal()
    }
    worker.stackSize = 512 << 20
    worker.start()
    done.wait()
    #expect(tally.ok + tally.failed + tally.timedOut == cases.count)
    #expect(tally.failed > 0 && tally.ok > 0, "ok \(tally.ok), failed \(tally.failed)")
    // The time limit is checked at safe points; no program may run far past it.
    #expect(tally.longest < 5, "a program ran \(tally.longest) s past a 0.2 s limit")
  }
}
