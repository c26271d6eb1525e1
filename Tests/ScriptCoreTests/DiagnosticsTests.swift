import ScriptCore
import TestSupport
import Testing

@Suite("Diagnostics", .timed)
struct DiagnosticsTests {
  @Test func rendersTheFormatOfSection4() throws {
    let source = Source(name: "pretrain.skl", text: "x = 1\nlogits = feats @ w\n")
    var error = ScriptError(
      .library, "shape mismatch in '@': [32, 128] @ [64, 10]", at: SourceRange(source, 15, 24))
    error.trace = [("linear_head", SourceRange(source, 0, 1))]
    #expect(
      Diagnostics.render(error) == """
        error: shape mismatch in '@': [32, 128] @ [64, 10]
         --> pretrain.skl:2:10
          |
        2 | logits = feats @ w
          |          ^^^^^^^^^
          in linear_head (pretrain.skl:1)
        """)
  }

  @Test func syntaxErrorsAreAllReported() {
    let source = Source(
      name: "bad.skl", text: "a = (1 +\nb = 2\nc = )\nd = 3 3\ndef f(x, x)\nend\ne = ]\n")
    let (_, errors) = Parser.parse(source)
    let lines = errors.compactMap { $0.range.map { $0.source.location($0.start).line } }
    #expect(errors.count >= 3, "got \(errors.map(\.message))")
    #expect(Set(lines).count >= 3, "errors on lines \(lines)")
    #expect(errors.contains { $0.message == "parameter 'x' is repeated" })
  }

  @Test func incompleteInputAsksForMoreLines() {
    #expect(Parser.isIncomplete("def f(x)"))
    #expect(Parser.isIncomplete("xs = [1,"))
    #expect(Parser.isIncomplete("s = \"open"))
    #expect(Parser.isIncomplete("x = 1 +"))
    #expect(Parser.isIncomplete("if a\n  b\nelse"))
    #expect(!Parser.isIncomplete("def f(x)\n  return x\nend"))
    #expect(!Parser.isIncomplete("x = [1, 2]"))
  }

  @Test func closestNameSuggestsTypos() {
    #expect(closestName("dpth", among: ["depth", "heads", "dim"]) == "depth")
    #expect(closestName("lenn", among: ["len", "range"]) == "len")
    #expect(closestName("zzzzzz", among: ["depth"]) == nil)
  }

  @Test func commandLineValuesReadAsLiterals() {
    #expect(Interpreter.literal("3").map(\.repr) == "3")
    #expect(Interpreter.literal("0.5").map(\.repr) == "0.5")
    #expect(Interpreter.literal("-2").map(\.repr) == "-2")
    #expect(Interpreter.literal("true").map(\.repr) == "true")
    #expect(Interpreter.literal("[1, 2]").map(\.repr) == "[1, 2]")
    #expect(Interpreter.literal("\"x\"").map(\.repr) == "\"x\"")
    #expect(Interpreter.literal("runs/a") == nil)
    #expect(Interpreter.literal("3 4") == nil)
    #expect(Interpreter.literal("f(1)") == nil)
  }

  @Test func floatsPrintShortestWithAPointOrExponent() {
    #expect(Value.float(11).description == "11.0")
    #expect(Value.float(0.1).description == "0.1")
    #expect(Value.float(1e-8).description == "1e-08")
    #expect(Value.float(1e16).description == "1e+16")
    #expect(Value.float(-2.5).description == "-2.5")
  }
}
