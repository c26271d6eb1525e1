import Foundation
import TestSupport
import Testing

/// Script files for the command-line tests, in a temporary folder of this process.
struct CLI {
  static func temporaryFile(_ name: String, _ text: String) throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "skellab-cli-\(ProcessInfo.processInfo.processIdentifier)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let url = folder.appendingPathComponent(name)
    try FileManager.default.createDirectory(
      at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    let path = url.path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }
}

@Suite("Command line", .timed, .heavy)
struct CLITests {
  @Test func versionAndHelp() throws {
    let version = try runSkellab(["--version"])
    #expect(version.status == 0)
    #expect(version.stdout.hasPrefix("skellab "))
    let help = try runSkellab(["help", "zeros"])
    #expect(help.status == 0)
    #expect(help.stdout.contains("zeros(shape: Int | List)"))
    let all = try runSkellab(["help"])
    #expect(all.stdout.contains("usage: skellab") && all.stdout.contains("  randn"))
  }

  @Test func usageErrorsExitWithTwo() throws {
    for arguments in [["bogus"], ["run"], ["check"], ["-e"], ["run", "x.skl", "--set", "novalue"]] {
      let result = try runSkellab(arguments)
      #expect(result.status == 2, "\(arguments)")
      #expect(result.stderr.contains("usage: skellab"), "\(arguments)")
      #expect(result.stdout.isEmpty)
    }
  }

  @Test func oneOffEchoesAndFails() throws {
    let ok = try runSkellab(["-e", "x = 20\nx + 22"])
    #expect(ok.status == 0)
    #expect(ok.stdout == "42\n")
    let bad = try runSkellab(["-e", "y = nope"])
    #expect(bad.status == 1)
    #expect(bad.stdout.isEmpty)
    #expect(bad.stderr.contains("error: unknown name 'nope'\n --> <-e>:1:5"))
  }

  @Test func runWithSetValuesReadAsLiterals() throws {
    let script = try CLI.temporaryFile(
      "params.skl",
      """
      epochs = param("epochs", 100)
      lr = param("lr", 0.1)
      name = param("name", "default")
      dims = param("dims", [1])
      print("{epochs} {lr} {name} {dims} {type(epochs)} {type(name)}")
      """)
    let defaults = try runSkellab(["run", script])
    #expect(defaults.status == 0)
    #expect(defaults.stdout == "100 0.1 default [1] Int String\n")
    let set = try runSkellab([
      "run", script, "--set", "epochs=3", "--set", "lr=1e-3", "--set", "name=runs/a", "--set",
      "dims=[64, 128]",
    ])
    #expect(set.status == 0, "\(set.stderr)")
    #expect(set.stdout == "3 0.001 runs/a [64, 128] Int String\n")
  }

  @Test func runReportsTheScriptLineAndCallTrace() throws {
    let script = try CLI.temporaryFile(
      "shapes.skl",
      """
      feats = randn([32, 128])
      w = randn([64, 10])
      def linear_head(x)
        return x @ w
      end
      print("before")
      logits = linear_head(feats)
      print("not reached")
      """)
    let result = try runSkellab(["run", script])
    #expect(result.status == 1)
    #expect(result.stdout == "before\n")
    #expect(
      result.stderr.contains(
        "error: [matmul] [32, 128] @ [64, 10]: inner dimensions 128 and 64 differ"))
    #expect(result.stderr.contains("shapes.skl:4:10"))
    #expect(result.stderr.contains("  in linear_head (\(script):7)"))
    let missing = try runSkellab(["run", "/nonexistent/file.skl"])
    #expect(missing.status == 1)
    #expect(missing.stderr.contains("/nonexistent/file.skl"))
  }

  @Test func checkReportsEveryErrorAndRunsNothing() throws {
    let script = try CLI.temporaryFile(
      "check.skl",
      """
      print("this must not run")
      x = (1 + 2
      y = 3
      z = )
      w = zeros([2], dpth=3)
      q = undefined_var + 1
      def f(a)
        return a + b_unknown
      end
      """)
    let result = try runSkellab(["check", script])
    #expect(result.status == 1)
    #expect(!result.stdout.contains("this must not run"))
    #expect(result.stderr.contains("zeros has no parameter 'dpth'"))
    #expect(result.stderr.contains("unknown name 'undefined_var'"))
    #expect(result.stderr.contains("unknown name 'b_unknown'"))
    #expect(result.stderr.contains("check.skl: "))
    let clean = try CLI.temporaryFile("clean.skl", "x = zeros([2])\nprint(x.sum())\n")
    let ok = try runSkellab(["check", clean])
    #expect(ok.status == 0)
    #expect(ok.stdout.contains("no errors"))
  }

  @Test func standardInputModeStopsAtTheFirstError() throws {
    let ok = try runSkellab(
      [], stdin: "x = 2\ndef f(v)\n  return v * x\nend\nf(21)\n:quit\nprint(\"not reached\")\n")
    #expect(ok.status == 0)
    #expect(ok.stdout == "42\n")
    #expect(!ok.stdout.contains("skl>"))
    let bad = try runSkellab([], stdin: "print(1)\ny = nope\nprint(2)\n")
    #expect(bad.status == 1)
    #expect(bad.stdout == "1\n")
    #expect(bad.stderr.contains("<stdin>"))
  }

  @Test func importFindsStandardLibraryAndSearchPath() throws {
    let folder =
      (try CLI.temporaryFile("lib/mylib.skl", "def seven()\n  return 7\nend\n") as NSString)
      .deletingLastPathComponent
    let script = try CLI.temporaryFile("uses.skl", "import \"mylib\"\nprint(seven())\n")
    let result = try runSkellab(["run", script], environment: ["SKELLAB_PATH": folder])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout == "7\n")
    let stdlib = try runSkellab([
      "-e", "import \"testing\"\nassert_close(tensor([1.0]), tensor([1.0]))\nprint(\"ok\")",
    ])
    #expect(stdlib.status == 0, "\(stdlib.stderr)")
    #expect(stdlib.stdout == "ok\n")
  }

  @Test func interruptedRunExitsWith130() throws {
    let script = try CLI.temporaryFile(
      "forever.skl", "print(\"started\")\nwhile true\n  x = 1\nend\n")
    let (process, out, _) = try startSkellab(["run", script])
    // Wait until the loop runs, then send Ctrl-C's signal.
    let handle = out.fileHandleForReading
    var seen = Data()
    while !String(decoding: seen, as: UTF8.self).contains("started") {
      let chunk = handle.availableData
      if chunk.isEmpty { break }
      seen.append(chunk)
    }
    kill(process.processIdentifier, SIGINT)
    let deadline = Date().addingTimeInterval(10)
    while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    if process.isRunning {
      process.terminate()
      Issue.record("Ctrl-C did not stop the run within 10 s")
    }
    process.waitUntilExit()
    #expect(process.terminationStatus == 130)
  }
}
