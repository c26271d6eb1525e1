import Foundation
import ScriptCore
import TestSupport
import Testing

@Suite("Completion", .timed)
struct CompletionTests {
  func interpreter() throws -> Interpreter {
    let registry = Registry()
    CoreBuiltins.register(in: registry)
    registry.register(
      "encoder",
      [
        BuiltinParameter("dim", .int, default: .int(64)),
        BuiltinParameter("depth", .int, default: .int(2)),
      ],
      doc: "test builtin"
    ) { _, _ in .nil }
    let interpreter = Interpreter(registry: registry)
    try interpreter.run(Source(name: "t", text: "depth_value = 1\nconfig = {lr: 0.1, layers: 2}\n"))
    return interpreter
  }

  @Test func namesKeywordsAndBuiltins() throws {
    let i = try interpreter()
    #expect(Completion.candidates(before: "dep", interpreter: i).candidates == ["depth_value"])
    #expect(Completion.candidates(before: "x = pri", interpreter: i).candidates == ["print"])
    #expect(Completion.candidates(before: "whi", interpreter: i).candidates == ["while"])
    #expect(Completion.candidates(before: "x = pri", interpreter: i).start == 4)
  }

  @Test func keywordArgumentsInsideACall() throws {
    let i = try interpreter()
    #expect(
      Completion.candidates(before: "encoder(de", interpreter: i).candidates.first == "depth=")
    // A keyword already given is not offered again.
    let next = Completion.candidates(before: "encoder(dim=3, d", interpreter: i).candidates
    #expect(next.first == "depth=" && !next.contains("dim="), "\(next)")
    // With nothing typed, only the parameters left: positional ones already filled are not.
    #expect(Completion.candidates(before: "encoder(3, ", interpreter: i).candidates == ["depth="])
    #expect(
      Completion.candidates(before: "print(encoder(d", interpreter: i).candidates.first == "dim=")
  }

  @Test func recordKeysAfterADot() throws {
    let i = try interpreter()
    #expect(
      Completion.candidates(before: "config.l", interpreter: i).candidates.prefix(2) == [
        "lr", "layers",
      ])
  }

  @Test func pathsInsideAString() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "skellab-complete-\(ProcessInfo.processInfo.processIdentifier)")
    try FileManager.default.createDirectory(
      at: folder.appendingPathComponent("runs"), withIntermediateDirectories: true)
    try "x".write(
      to: folder.appendingPathComponent("pretrain.skl"), atomically: true, encoding: .utf8)
    let i = try interpreter()
    let line = "load(\"\(folder.path)/pre"
    let (start, candidates) = Completion.candidates(before: line, interpreter: i)
    #expect(candidates == ["\(folder.path)/pretrain.skl"])
    #expect(start == 6)
    #expect(
      Completion.candidates(before: "load(\"\(folder.path)/ru", interpreter: i).candidates == [
        "\(folder.path)/runs/"
      ])
  }

  @Test func metaCommands() throws {
    let i = try interpreter()
    #expect(Completion.candidates(before: ":sa", interpreter: i).candidates == [":save"])
  }
}
