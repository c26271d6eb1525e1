import Foundation
import ScriptCore
import ScriptLibrary
import TensorCore
import TestSupport
import Testing

/// A golden `.skl` file: statements, each group followed by the output it must print
/// (`# expect: text`) or the error it must raise (`# error: message`). `# case: name` starts
/// a fresh interpreter. Within a case, units run one after another like REPL entries, so an
/// error does not stop the case. `SKELLAB_RECORD=1` rewrites the expectations from what runs.
struct GoldenFile {
  struct Unit {
    var code: [String] = []
    var firstLine = 1
    var expected: [String] = []
    var expectedError: String? = nil
    var hasExpectations = false
  }

  struct Case {
    var name: String
    var header: [String] = []
    var units: [Unit] = []
  }

  let path: String
  var cases: [Case] = []

  init(path: String) throws {
    self.path = path
    let text = try String(contentsOfFile: path, encoding: .utf8)
    var current = Case(name: "main")
    var unit = Unit()
    var lineNumber = 0
    func closeUnit() {
      if !unit.code.isEmpty || unit.hasExpectations { current.units.append(unit) }
      unit = Unit()
      unit.firstLine = lineNumber + 1
    }
    for line in text.components(separatedBy: "\n").dropLast(text.hasSuffix("\n") ? 1 : 0) {
      lineNumber += 1
      if line.hasPrefix("# case:") {
        closeUnit()
        if !current.units.isEmpty || current.name != "main" { cases.append(current) }
        current = Case(name: line.dropFirst(7).trimmingCharacters(in: .whitespaces))
        current.header = [line]
        unit.firstLine = lineNumber + 1
        continue
      }
      if line.hasPrefix("# expect:") || line.hasPrefix("# error:") {
        if line.hasPrefix("# expect:") {
          var value = String(line.dropFirst(9))
          if value.hasPrefix(" ") { value.removeFirst() }
          unit.expected.append(value)
        } else {
          unit.expectedError = String(line.dropFirst(8)).trimmingCharacters(in: .whitespaces)
        }
        unit.hasExpectations = true
        continue
      }
      if unit.hasExpectations { closeUnit() }
      if unit.code.isEmpty { unit.firstLine = lineNumber }
      unit.code.append(line)
    }
    closeUnit()
    cases.append(current)
  }

  /// What one unit printed and the first line of its error, if any.
  struct Outcome {
    var output: [String]
    var error: String?
  }

  func run() -> [[Outcome]] {
    cases.map { testCase in
      let interpreter = Interpreter(registry: Library.registry())
      var printed = ""
      interpreter.output = { printed += $0 }
      let directory = (path as NSString).deletingLastPathComponent
      // Each case has a random stream of its own: suites running in parallel draw from the
      // global one.
      return Random.withSeed(0) {
        testCase.units.map { unit in
          printed = ""
          // Pad with empty lines so that diagnostics carry the file's own line numbers.
          let text =
            String(repeating: "\n", count: unit.firstLine - 1) + unit.code.joined(separator: "\n")
          let source = Source(
            name: (path as NSString).lastPathComponent, text: text, directory: directory)
          var failure: String? = nil
          do {
            try interpreter.run(source) { value in printed += value.repr + "\n" }
          } catch let scriptError as ScriptError {
            failure = scriptError.message
          } catch {
            failure = "\(error)"
          }
          var lines = printed.components(separatedBy: "\n")
          if lines.last == "" { lines.removeLast() }
          return Outcome(output: lines, error: failure)
        }
      }
    }
  }

  /// The file with every unit's expectations replaced by what it did.
  func recorded(_ outcomes: [[Outcome]]) -> String {
    var lines: [String] = []
    for (testCase, caseOutcomes) in zip(cases, outcomes) {
      lines += testCase.header
      for (unit, outcome) in zip(testCase.units, caseOutcomes) {
        lines += unit.code
        lines += outcome.output.map { $0.isEmpty ? "# expect:" : "# expect: \($0)" }
        if let error = outcome.error { lines.append("# error: \(error)") }
      }
    }
    return lines.joined(separator: "\n") + "\n"
  }
}

/// The folder of golden files (Tests/Golden).
let goldenFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().appendingPathComponent("Golden").path

let goldenFiles: [String] =
  ((try? FileManager.default.contentsOfDirectory(atPath: goldenFolder)) ?? [])
  .filter { $0.hasSuffix(".skl") && !$0.hasPrefix("_") }.sorted()

@Suite("Golden scripts", .timed)
struct GoldenTests {
  @Test func goldenFilesExist() {
    #expect(goldenFiles.count >= 6, "expected the golden .skl files in \(goldenFolder)")
  }

  @Test(arguments: goldenFiles)
  func golden(file: String) throws {
    let path = (goldenFolder as NSString).appendingPathComponent(file)
    let golden = try GoldenFile(path: path)
    let outcomes = golden.run()
    if ProcessInfo.processInfo.environment["SKELLAB_RECORD"] == "1" {
      try golden.recorded(outcomes).write(toFile: path, atomically: true, encoding: .utf8)
      return
    }
    var checked = 0
    for (testCase, caseOutcomes) in zip(golden.cases, outcomes) {
      for (unit, outcome) in zip(testCase.units, caseOutcomes) {
        let place = "\(file):\(unit.firstLine) (case \(testCase.name))"
        #expect(outcome.output == unit.expected, "\(Comment(rawValue: place)): output differs")
        #expect(outcome.error == unit.expectedError, "\(Comment(rawValue: place)): error differs")
        checked += 1
      }
    }
    #expect(checked > 0, "no statements in \(file)")
  }
}
