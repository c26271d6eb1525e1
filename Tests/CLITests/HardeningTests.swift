import Foundation
import TensorCore
import TestSupport
import Testing

/// Scripts crafted to crash the interpreter, and signals during a batch `fit`: each ends with a
/// clear error or a saved checkpoint and the documented exit status, never a trap.
@Suite("Hardening", .timed, .heavy)
struct HardeningTests {
  func folder(_ name: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.path + "/skellab-hard-\(name)-\(getpid())"
    try? FileManager.default.removeItem(atPath: path)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  /// One-liners that trapped or allocated without bound: each is now a script error (status 1)
  /// whose message names the argument or the problem.
  @Test(arguments: [
    ("print(len(range(-9223372036854775807, 9223372036854775807, 9223372036854775807)))", ""),
    ("x = range(9223372036854775806, 9223372036854775807, 9223372036854775807)", ""),
    ("x = range(-9223372036854775807 - 1, 9223372036854775807)", "too large"),
    ("e = encoder(dim=2**30)", "argument 'dim' of encoder"),
    ("e = encoder(depth=100000000)", "argument 'depth' of encoder"),
    (
      "c = classifier(encoder(dim=16, depth=1, heads=2, frames=8), classes=1000000000)",
      "argument 'classes' of classifier"
    ),
    ("d = dataset(\"synthetic\", subjects=1000000)", "argument 'subjects' of dataset"),
    ("a = augment(dataset(\"synthetic\"), crop=1000000000)", "argument 'crop' of augment"),
    (
      "h = fit(mae(encoder(dim=8, depth=1, heads=2, frames=8)), dataset(\"synthetic\", subjects=1), epochs=2**62)",
      "steps"
    ),
    ("s = dataset(\"synthetic\", subjects=1)[0]\nshow(s.x / 0 * 0)", "NaN"),
  ])
  func scriptsThatCrashedAreErrors(script: String, expected: String) throws {
    let run = try runSkellab(["-e", script])
    #expect(run.status == 0 || run.status == 1, "\(script): status \(run.status) \(run.stderr)")
    if !expected.isEmpty {
      #expect(run.status == 1 && run.stderr.contains(expected), "\(script): \(run.stderr)")
    }
  }

  /// A 2-million-term expression (a stack overflow in `run` and in `check`), a NUL byte, and a
  /// `check` of 10,000 undefined names (quadratic: over a minute).
  @Test func hostileScriptFiles() throws {
    let root = try folder("scripts")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let long = root + "/long.skl"
    try ("x = " + Array(repeating: "1", count: 2_000_000).joined(separator: "+") + "\n")
      .write(toFile: long, atomically: true, encoding: .utf8)
    for command in ["run", "check"] {
      let run = try runSkellab([command, long])
      #expect(
        run.status == 1 && run.stderr.contains("chains more than"), "\(run.stderr.prefix(300))")
    }
    let nul = root + "/nul.skl"
    try Data("x = 1\ny = \u{0} 2\n".utf8).write(to: URL(fileURLWithPath: nul))
    let nulRun = try runSkellab(["run", nul])
    #expect(nulRun.status == 1)
    #expect(
      nulRun.stderr.contains("unexpected character U+0000")
        && nulRun.stderr.contains("nul.skl:2:5"), "\(nulRun.stderr)")
    let undefined = root + "/undefined.skl"
    try (0..<10_000).map { "a\($0) = b\($0)" }.joined(separator: "\n")
      .write(toFile: undefined, atomically: true, encoding: .utf8)
    let start = Date()
    let check = try runSkellab(["check", undefined])
    #expect(check.status == 1 && check.stderr.contains("10000 error(s)"))
    #expect(Date().timeIntervalSince(start) < 60)
  }

  /// A 13 MB safetensors header of 200k one-element entries took 900 MB to read; measured in
  /// its own process (the test process's peak is shared by the suites running beside it).
  @Test func manySmallSafetensorsEntriesStayInMemoryBounds() throws {
    let root = try folder("safetensors")
    defer { try? FileManager.default.removeItem(atPath: root) }
    var header = "{"
    for i in 0..<200_000 {
      header +=
        "\"w\(i)\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\(4 * i),\(4 * i + 4)]},"
    }
    header.removeLast()
    header += "}"
    var data = Data((0..<8).map { UInt8(header.utf8.count >> (8 * $0) & 0xFF) })
    data.append(Data(header.utf8))
    data.append(Data(count: 800_000))
    let path = root + "/many.safetensors"
    try data.write(to: URL(fileURLWithPath: path))
    let run = try runSkellab([
      "-e",
      "before = memory().peak\nw = load(\"\(path)\")\nprint(len(keys(w)))\nprint(memory().peak - before)",
    ])
    #expect(run.status == 0, "\(run.stderr)")
    let lines = run.stdout.split(separator: "\n")
    #expect(lines.first == "200000")
    let grown = Double(lines.last ?? "") ?? .infinity
    // AddressSanitizer's shadow memory adds about as much again (scripts/sanitize.sh says so).
    let bound = ProcessInfo.processInfo.environment["SKELLAB_SANITIZER"] == "address" ? 1200.0 : 400
    #expect(grown < bound, "reading grew the peak by \(grown) MiB")
  }

  /// "did you mean" knows user-defined names and script functions' keyword arguments.
  @Test func suggestionsCoverUserNames() throws {
    let run = try runSkellab(["-e", "depth = 3\nx = dpeth + 1"])
    #expect(run.stderr.contains("did you mean 'depth'?"), "\(run.stderr)")
    let keyword = try runSkellab(["-e", "def g(alpha)\n  return alpha\nend\ng(alpah=2)"])
    #expect(keyword.stderr.contains("did you mean 'alpha'?"), "\(keyword.stderr)")
  }

  /// `--set` of a name the script never reads: before any work when the names are visible,
  /// at the end when a name is computed.
  @Test func unreadSetNamesAreErrors() throws {
    let root = try folder("set")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let plain = root + "/plain.skl"
    try "epochs = param(\"epochs\", 3)\nprint(\"ran {epochs}\")\n".write(
      toFile: plain, atomically: true, encoding: .utf8)
    let typo = try runSkellab(["run", plain, "--set", "epochz=5"])
    #expect(typo.status == 2 && !typo.stdout.contains("ran"), "\(typo.stdout)")
    #expect(typo.stderr.contains("'epochz'") && typo.stderr.contains("did you mean 'epochs'?"))
    let good = try runSkellab(["run", plain, "--set", "epochs=5"])
    #expect(good.status == 0 && good.stdout == "ran 5\n", "\(good.stderr)")
    let dynamic = root + "/dynamic.skl"
    try "name = \"ep\" + \"ochs\"\nprint(param(name, 1))\n".write(
      toFile: dynamic, atomically: true, encoding: .utf8)
    let late = try runSkellab(["run", dynamic, "--set", "epochz=5"])
    #expect(late.status == 1 && late.stdout == "1\n", "\(late.stdout)")
    #expect(late.stderr.contains("'epochz'"), "\(late.stderr)")
  }

  /// SIGTERM, SIGHUP and SIGINT during a batch `fit`: the step reached is saved and the exit
  /// status says which signal; a resumed run finishes with every step once in metrics.jsonl
  /// and no temporary left. SIGKILL (no chance to save) resumes from the last checkpoint.
  @Test(
    arguments: [(SIGTERM, 143), (SIGHUP, 129), (SIGINT, 130), (SIGKILL, -1)] as [(Int32, Int32)])
  func signalsDuringFitSaveTheRun(signal: Int32, status: Int32) throws {
    let root = try folder("signal-\(signal)")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let script = root + "/train.skl"
    try """
    seed(1)
    enc = encoder(dim=8, depth=1, heads=2, frames=8)
    t = mae(enc)
    ds = dataset("synthetic", subjects=1, frames=16)
    h = fit(t, ds, epochs=param("epochs", 100000), batch=4, run="\(root)/run", checkpoint_every=1000000)
    print("steps {len(h.loss)} at {t.step}")
    """.write(toFile: script, atomically: true, encoding: .utf8)
    let (process, _, errors) = try startSkellab(["run", script])
    // Wait for the first steps (the run folder's config appears before the first step).
    let deadline = Date().addingTimeInterval(60)
    while !FileManager.default.fileExists(atPath: root + "/run/config.json"), Date() < deadline {
      Thread.sleep(forTimeInterval: 0.1)
    }
    Thread.sleep(forTimeInterval: 1.5)
    kill(process.processIdentifier, signal)
    process.waitUntilExit()
    let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    if signal == SIGKILL {
      #expect(process.terminationReason == .uncaughtSignal)
    } else {
      #expect(process.terminationStatus == status, "\(stderr.suffix(400))")
      #expect(stderr.contains("saved \(root)/run/checkpoint.safetensors"), "\(stderr.suffix(400))")
      #expect(FileManager.default.fileExists(atPath: root + "/run/checkpoint.safetensors"))
    }
    // Resume with a short schedule that the saved step may already pass: every step once.
    let resumed = try runSkellab(["run", script, "--set", "epochs=30"])
    let metrics = (try? String(contentsOfFile: root + "/run/metrics.jsonl", encoding: .utf8)) ?? ""
    let steps = metrics.split(separator: "\n").compactMap { line -> Int? in
      guard let range = line.range(of: "\"step\": ") else { return nil }
      return Int(line[range.upperBound...].prefix { $0.isNumber })
    }
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(!steps.isEmpty && steps == Array(1...(steps.last ?? 1)), "\(steps.prefix(20))")
    // A checkpoint already past the shorter schedule counts as finished.
    #expect(resumed.stdout.contains("steps \(steps.count) at \(steps.count)"), "\(resumed.stdout)")
    let left = try FileManager.default.contentsOfDirectory(atPath: root + "/run")
    #expect(!left.contains { $0.contains(".tmp-") }, "\(left)")
  }

  /// SIGTERM during a batch evaluation (a linear probe with run=): the epoch and batch reached
  /// are saved, the exit status is 143, and the same script resumes and finishes.
  @Test func aSignalDuringAnEvaluationSavesIt() throws {
    let root = try folder("signal-probe")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let script = root + "/probe.skl"
    try """
    seed(1)
    enc = encoder(dim=8, depth=1, heads=2, frames=8)
    ds = split(dataset("synthetic", subjects=2, frames=16), "xsub")
    r = linear_probe(enc, ds, epochs=param("epochs", 100000), batch=16, run="\(root)/probe")
    print("epochs {len(r.epochs)}")
    """.write(toFile: script, atomically: true, encoding: .utf8)
    let (process, _, errors) = try startSkellab(["run", script])
    // The first epoch's checkpoint shows that training runs.
    let deadline = Date().addingTimeInterval(120)
    while !FileManager.default.fileExists(atPath: root + "/probe/checkpoint.safetensors"),
      Date() < deadline
    {
      Thread.sleep(forTimeInterval: 0.1)
    }
    Thread.sleep(forTimeInterval: 0.5)
    kill(process.processIdentifier, SIGTERM)
    process.waitUntilExit()
    let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(process.terminationStatus == 143, "\(stderr.suffix(400))")
    #expect(
      stderr.contains("linear probe stopped at epoch")
        && stderr.contains("saved \(root)/probe/checkpoint.safetensors"), "\(stderr.suffix(400))")
    let saved = try SafeTensors.read(path: root + "/probe/checkpoint.safetensors").metadata
    let reached = Int(saved["epoch"] ?? "") ?? 0
    #expect(reached >= 1)
    // Resumed with a schedule just past the epoch reached: it continues, and finishes.
    let resumed = try runSkellab(["run", script, "--set", "epochs=\(reached + 2)"])
    #expect(resumed.status == 0, "\(resumed.stderr.suffix(400))")
    #expect(resumed.stderr.contains("resumed linear probe"), "\(resumed.stderr.suffix(400))")
    #expect(resumed.stdout.contains("epochs \(reached + 2)"), "\(resumed.stdout)")
    let lines = try String(contentsOfFile: root + "/probe/epochs.jsonl", encoding: .utf8)
    #expect(lines.split(separator: "\n").count == reached + 2)
    let left = try FileManager.default.contentsOfDirectory(atPath: root + "/probe")
    #expect(!left.contains { AtomicFile.isTemporary($0) }, "\(left)")
  }
}
