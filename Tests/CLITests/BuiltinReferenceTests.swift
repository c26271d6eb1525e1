import Foundation
import TestSupport
import Testing

/// The builtin reference in docs/ is what the registry generates, every builtin has an
/// example, and the examples run.
@Suite("Builtin reference", .timed, .heavy)
struct BuiltinReferenceTests {
  static let committed = TestData.root + "/docs/builtins.md"

  @Test func theCommittedReferenceIsWhatTheRegistryGenerates() throws {
    let generated = try runSkellab(["help", "--markdown"])
    #expect(generated.status == 0)
    let committed = try String(contentsOfFile: Self.committed, encoding: .utf8)
    #expect(
      committed == generated.stdout,
      "docs/builtins.md is stale: regenerate it with `skellab help --markdown > docs/builtins.md`")
  }

  /// Every `### name` section of the reference has a signature and an example block.
  @Test func everyBuiltinHasAnExample() throws {
    let text = try runSkellab(["help", "--markdown"]).stdout
    let sections = text.components(separatedBy: "\n### ").dropFirst()
    #expect(sections.count > 100)
    for section in sections {
      let name = section.prefix { $0 != "\n" }
      #expect(section.components(separatedBy: "```").count >= 5, "\(name) has no example")
    }
  }

  /// The prelude and every example, in order, as one batch script: each runs without error.
  @Test func theExamplesRun() throws {
    let text = try runSkellab(["help", "--markdown"]).stdout
    let blocks = text.components(separatedBy: "```\n").enumerated().filter { $0.offset % 2 == 1 }
      .map(\.element)
    // Blocks alternate within a section: the signature, then the example.
    var script = blocks[0]
    for section in text.components(separatedBy: "\n### ").dropFirst() {
      let parts = section.components(separatedBy: "```\n")
      if parts.count >= 5 { script += parts[3] }
    }
    let folder = try temporaryFolder("examples")
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try script.write(toFile: folder + "/examples.skl", atomically: true, encoding: .utf8)
    let run = try runSkellab(["run", "examples.skl"], directory: folder)
    #expect(run.status == 0, "\(run.stderr.suffix(1500))")
  }
}
