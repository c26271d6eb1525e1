import Foundation
import ScriptCore
import ScriptLibrary
import TensorCore
import TestSupport
import Testing

/// A tutorial (`tutorials/NN-*.md`) read as what it shows: ```` ```skellab ```` blocks are REPL
/// transcripts (`skl> ` starts a statement, `...> ` continues it, other lines are what it
/// printed, errors included); ```` ```console ```` blocks are shell commands (`$ skellab …`)
/// with their standard output. In expected output a line `...` stands for any lines, and
/// numbers agree within a relative 1e-3 (the printed text around them must be the same).
struct Tutorial {
  enum Step {
    case statement(input: String, expected: [String], line: Int)
    case command(arguments: [String], expected: [String], line: Int)
  }

  let name: String
  var steps: [Step] = []
  /// The file's lines, and for each step the lines (0-based, end exclusive) of its output.
  var lines: [String] = []
  var outputs: [Range<Int>] = []

  init(path: String) throws {
    name = (path as NSString).lastPathComponent
    lines = try String(contentsOfFile: path, encoding: .utf8).components(separatedBy: "\n")
    var block: String? = nil
    var pending: (input: String, arguments: [String], expected: [String], line: Int)? = nil
    var outputStart = 0
    func flush(at end: Int) {
      guard let p = pending, let block else { return }
      outputs.append(outputStart..<end)
      steps.append(
        block == "skellab"
          ? .statement(input: p.input, expected: p.expected, line: p.line)
          : .command(arguments: p.arguments, expected: p.expected, line: p.line))
      pending = nil
    }
    for (index, line) in lines.enumerated() {
      if line.hasPrefix("```") {
        let tag = line.dropFirst(3).trimmingCharacters(in: .whitespaces)
        if block == nil, tag == "skellab" || tag == "console" {
          block = tag
        } else if block != nil {
          flush(at: index)
          block = nil
        }
        continue
      }
      guard let kind = block else { continue }
      if kind == "skellab", line.hasPrefix("skl> ") {
        flush(at: index)
        pending = (String(line.dropFirst(5)), [], [], index + 1)
        outputStart = index + 1
      } else if kind == "skellab", line.hasPrefix("...> "), pending != nil {
        pending?.input += "\n" + line.dropFirst(5)
        outputStart = index + 1
      } else if kind == "console", line.hasPrefix("$ ") {
        flush(at: index)
        pending = ("", Tutorial.words(String(line.dropFirst(2))), [], index + 1)
        outputStart = index + 1
      } else if pending != nil {
        pending?.expected.append(line)
      }
    }
  }

  /// Shell words: spaces separate, double quotes group.
  static func words(_ text: String) -> [String] {
    var result: [String] = []
    var current = ""
    var quoted = false
    for c in text {
      if c == "\"" {
        quoted.toggle()
      } else if c == " " && !quoted {
        if !current.isEmpty { result.append(current) }
        current = ""
      } else {
        current.append(c)
      }
    }
    if !current.isEmpty { result.append(current) }
    return result
  }

  /// True when `actual` matches `expected` (with `...` lines and number tolerance).
  static func matches(_ expected: ArraySlice<String>, _ actual: ArraySlice<String>) -> Bool {
    guard let first = expected.first else { return actual.isEmpty }
    if first == "..." {
      return (actual.startIndex...actual.endIndex).contains {
        matches(expected.dropFirst(), actual[$0...])
      }
    }
    guard let line = actual.first, same(first, line) else { return false }
    return matches(expected.dropFirst(), actual.dropFirst())
  }

  /// A number as the REPL prints one.
  static let number = try? NSRegularExpression(pattern: "-?[0-9]+(\\.[0-9]+)?(e[-+]?[0-9]+)?")

  /// One line: the same text between numbers, and numbers within a relative 1e-3.
  static func same(_ expected: String, _ actual: String) -> Bool {
    if expected == actual { return true }
    guard let pattern = number else { return false }
    func split(_ s: String) -> (String, [Double]) {
      let range = NSRange(s.startIndex..., in: s)
      let numbers = pattern.matches(in: s, range: range).compactMap { m in
        Range(m.range, in: s).flatMap { Double(s[$0]) }
      }
      return (pattern.stringByReplacingMatches(in: s, range: range, withTemplate: "#"), numbers)
    }
    let (a, x) = split(expected)
    let (b, y) = split(actual)
    return a == b && x.count == y.count
      && zip(x, y).allSatisfy { abs($0 - $1) <= 1e-3 * max(1, abs($0)) }
  }
}

/// The folder of tutorials (the package's `tutorials/`).
let tutorialFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("tutorials")
  .path

let tutorialFiles: [String] =
  ((try? FileManager.default.contentsOfDirectory(atPath: tutorialFolder)) ?? [])
  .filter { $0.hasSuffix(".md") && $0.first?.isNumber == true }.sorted()

/// Replays every tutorial in a fresh folder (the session's working directory: the tutorials
/// run side by side) and checks every printed value.
@Suite("Tutorials", .timed, .heavy)
struct TutorialTests {
  @Test func theSixTutorialsExist() {
    #expect(tutorialFiles.count >= 6, "expected numbered tutorials in \(tutorialFolder)")
  }

  @Test func matchingAllowsEllipsesAndRoundingOnly() {
    #expect(Tutorial.matches(["a 1.0", "...", "z"], ["a 1.0004", "b", "c", "z"]))
    #expect(!Tutorial.matches(["a 1.0", "z"], ["a 1.01", "z"]))
    #expect(!Tutorial.matches(["loss 1.0"], ["lr 1.0"]))
    #expect(Tutorial.matches(["..."], []))
    #expect(!Tutorial.matches(["x", "..."], ["y"]))
  }

  @Test(arguments: tutorialFiles)
  func tutorial(file: String) throws {
    let tutorial = try Tutorial(path: (tutorialFolder as NSString).appendingPathComponent(file))
    #expect(tutorial.steps.count > 3, "\(file) shows too little")
    let folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("skellab-tutorial-\(getpid())-\(file)").path
    try? FileManager.default.removeItem(atPath: folder)
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    // The tutorials read the real data as data/ (Tests/Data of the repository).
    try FileManager.default.createSymbolicLink(
      atPath: folder + "/data", withDestinationPath: TestData.path(""))
    defer { try? FileManager.default.removeItem(atPath: folder) }
    var printed = ""
    // The session works in its own folder (no chdir): the tutorials run side by side.
    let interpreter = Interpreter(registry: Library.registry())
    interpreter.workingDirectory = folder
    let session = Session(interpreter: interpreter, out: { printed += $0 }, err: { printed += $0 })
    var recorded: [[String]] = []
    // A random stream of its own: suites running in parallel draw from the global one.
    try Random.withSeed(0) {
      for step in tutorial.steps {
        let (expected, line): ([String], Int)
        switch step {
        case .statement(let input, let e, let l):
          (expected, line) = (e, l)
          printed = ""
          session.submit(input)
        case .command(let arguments, let e, let l):
          (expected, line) = (e, l)
          #expect(arguments.first == "skellab", "\(file):\(l): only skellab commands run here")
          printed = try runSkellab(
            Array(arguments.dropFirst()),
            environment: ["SKELLAB_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"], directory: folder
          ).stdout
        }
        // Paths resolved against the session's folder read as the user typed them.
        var actual = printed.replacingOccurrences(of: folder + "/", with: "")
          .components(separatedBy: "\n")
        if actual.last == "" { actual.removeLast() }
        recorded.append(actual)
        var wanted = expected
        while wanted.last == "" { wanted.removeLast() }
        #expect(
          Tutorial.matches(wanted[...], actual[...]),
          "\(Comment(rawValue: "\(file):\(line)")): printed\n\(actual.joined(separator: "\n"))\nexpected\n\(wanted.joined(separator: "\n"))"
        )
      }
    }
    // SKELLAB_RECORD=1 writes what ran into the tutorial (review the diff; put `...` back).
    if ProcessInfo.processInfo.environment["SKELLAB_RECORD"] == "1" {
      var lines = tutorial.lines
      for (range, output) in zip(tutorial.outputs, recorded).reversed() {
        lines.replaceSubrange(range, with: output)
      }
      try lines.joined(separator: "\n").write(
        toFile: (tutorialFolder as NSString).appendingPathComponent(file), atomically: true,
        encoding: .utf8)
    }
  }
}
