import Foundation
import TensorCore
import Testing

/// Where the tests' data lives, inside the repository: `Tests/Fixtures` (the PyTorch reference
/// cases) and `Tests/Data` (real-data samples and small files). A test whose file is missing
/// fails; it never skips.
public enum TestData {
  /// The package's `Tests` folder (this file is `<root>/Tests/TestSupport/TestSupport.swift`).
  public static let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().path
  /// The package root.
  public static var root: String { (tests as NSString).deletingLastPathComponent }
  public static var fixtures: String { tests + "/Fixtures" }
  /// `Tests/Data/<relative>`.
  public static func path(_ relative: String) -> String { tests + "/Data/" + relative }
  /// MSR Action3D's 567 sequences, as published.
  public static var msr: String { path("msr-action3d/real_world_coordinates") }
  /// The 15 raw NTU RGB+D samples.
  public static var ntu: String { path("ntu-rgbd-samples") }
}

/// One PyTorch reference case of `shared/fixtures`: its tensors and its sidecar scalars.
public struct Fixture {
  public let name: String
  public let file: SafeTensors.File
  public let scalars: [String: Double]

  /// Loads `NAME.safetensors` and `NAME.json`; throws with the path when either is missing.
  public init(_ name: String) throws {
    self.name = name
    let folder = TestData.fixtures
    let tensorsPath = "\(folder)/\(name).safetensors"
    guard FileManager.default.fileExists(atPath: tensorsPath) else {
      throw TensorError("fixture", "missing \(tensorsPath): the fixture is part of the repository")
    }
    file = try SafeTensors.read(path: tensorsPath)
    let sidecar = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(name).json"))
    let json = try JSONSerialization.jsonObject(with: sidecar) as? [String: Any] ?? [:]
    var scalars: [String: Double] = [:]
    for (key, value) in json["scalars"] as? [String: Any] ?? [:] {
      if let number = value as? NSNumber { scalars[key] = number.doubleValue }
    }
    self.scalars = scalars
  }

  /// The tensor stored under `name`.
  public func tensor(_ name: String) throws -> Tensor { try file.tensor(name) }

  /// A scalar of the sidecar (eps, heads, ...); throws when absent.
  public func scalar(_ key: String) throws -> Double {
    guard let value = scalars[key] else {
      throw TensorError("fixture", "\(name).json has no scalar '\(key)'")
    }
    return value
  }
}

/// The largest absolute element difference, after checking the shapes agree.
public func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
  guard a.shape == b.shape else { return .infinity }
  let (x, y) = (a.scalars, b.scalars)
  var worst: Float = 0
  for i in x.indices {
    let d = Swift.abs(x[i] - y[i])
    if d.isNaN || d > worst { worst = d.isNaN ? .infinity : d }
  }
  return worst
}

/// Records a test issue unless `abs(actual - expected) <= atol + rtol·max|expected|` holds for
/// every element. The message shows the shapes, the largest difference and the first
/// mismatching elements.
public func expectClose(
  _ actual: Tensor, _ expected: Tensor, rtol: Float = 1e-5, atol: Float = 1e-6,
  _ label: String = "", sourceLocation: SourceLocation = #_sourceLocation
) {
  guard actual.shape == expected.shape else {
    fail(
      "\(label): shape \(actual.shape) differs from expected \(expected.shape)",
      sourceLocation: sourceLocation)
    return
  }
  let (x, y) = (actual.scalars, expected.scalars)
  let scale = y.reduce(Float(0)) { Swift.max($0, Swift.abs($1)) }
  let limit = atol + rtol * scale
  var mismatches: [String] = []
  var worst: Float = 0
  for i in x.indices {
    let d = Swift.abs(x[i] - y[i])
    if !(d <= limit) {
      worst = d.isNaN ? .infinity : Swift.max(worst, d)
      if mismatches.count < 5 { mismatches.append("[\(i)] \(x[i]) vs \(y[i])") }
    }
  }
  if !mismatches.isEmpty {
    fail(
      "\(label): shape \(actual.shape), max |diff| \(worst) > \(limit) "
        + "(max |expected| \(scale)); first mismatches: \(mismatches.joined(separator: ", "))",
      sourceLocation: sourceLocation)
  }
}

/// A deterministic tensor of normal values for test inputs.
public func sampleTensor(_ shape: [Int], seed: UInt64, scale: Float = 1, shift: Float = 0)
  throws -> Tensor
{
  var generator = RandomGenerator(seed: seed)
  return try Tensor.randn(shape, generator: &generator) * scale + shift
}

/// Compares reverse-mode gradients of `function` with central finite differences.
///
/// The scalar checked is `sum(function(inputs) · w)` with fixed random weights `w`, so the
/// whole Jacobian is exercised. Differences are taken in float32 with step `eps` and the
/// weighted sums accumulated in double. Keep inputs small and `eps` away from kinks.
public func checkGradients(
  _ inputs: [Tensor], eps: Float = 1e-2, rtol: Float = 1e-2, atol: Float = 1e-3,
  _ label: String = "", sourceLocation: SourceLocation = #_sourceLocation,
  _ function: ([Tensor]) throws -> Tensor
) throws {
  let leaves = inputs.map { $0.requiringGrad() }
  let output = try function(leaves)
  let weights = try sampleTensor(output.shape, seed: 99)
  try (output * weights).sum().backward()
  let w = weights.scalars
  func objective(_ values: [Tensor]) throws -> Double {
    let out = try Autograd.noGrad { try function(values) }.scalars
    var total = 0.0
    for i in out.indices { total += Double(out[i]) * Double(w[i]) }
    return total
  }
  for (k, input) in inputs.enumerated() {
    guard let analytic = leaves[k].grad else {
      fail("\(label): input \(k) received no gradient", sourceLocation: sourceLocation)
      continue
    }
    guard analytic.shape == input.shape else {
      fail(
        "\(label): gradient of input \(k) has shape \(analytic.shape), input \(input.shape)",
        sourceLocation: sourceLocation)
      continue
    }
    let a = analytic.scalars
    var base = inputs.map { $0.contiguous() }
    var failures: [String] = []
    for j in 0..<input.count {
      let original = base[k].scalars[j]
      base[k].withUnsafeMutableBufferPointer { $0[j] = original + eps }
      let plus = try objective(base)
      base[k].withUnsafeMutableBufferPointer { $0[j] = original - eps }
      let minus = try objective(base)
      base[k].withUnsafeMutableBufferPointer { $0[j] = original }
      let numeric = Float((plus - minus) / (2 * Double(eps)))
      let limit = atol + rtol * Swift.max(Swift.abs(numeric), Swift.abs(a[j]))
      if !(Swift.abs(numeric - a[j]) <= limit), failures.count < 5 {
        failures.append("[\(j)] analytic \(a[j]) vs numeric \(numeric)")
      }
    }
    if !failures.isEmpty {
      fail(
        "\(label): input \(k) of shape \(input.shape): \(failures.joined(separator: "; "))",
        sourceLocation: sourceLocation)
    }
  }
}

/// Records a failure with a message built from plain strings.
public func fail(_ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
  Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
}

/// The built `skellab` binary: beside the test bundle, else the package's debug build.
public var skellabBinary: String {
  let bundle = URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()
  for folder in [bundle, bundle.deletingLastPathComponent()] {
    let candidate = folder.appendingPathComponent("skellab").path
    if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
  }
  let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
  return root.appendingPathComponent(".build/debug/skellab").path
}

/// What a run of the `skellab` binary did.
public struct SkellabRun: Sendable {
  public let status: Int32
  public let stdout: String
  public let stderr: String

  public init(status: Int32, stdout: String, stderr: String) {
    (self.status, self.stdout, self.stderr) = (status, stdout, stderr)
  }
}

/// Runs the built `skellab` binary with `arguments` (and `stdin`, extra `environment`, a
/// working `directory`) to its end. Standard error goes through a temporary file, so a chatty
/// run cannot block on a full pipe while standard output is read.
public func runSkellab(
  _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:],
  directory: String? = nil
) throws -> SkellabRun {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: skellabBinary)
  process.arguments = arguments
  if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
  process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
  let errorPath = FileManager.default.temporaryDirectory
    .appendingPathComponent("skellab-stderr-\(UUID().uuidString)").path
  guard FileManager.default.createFile(atPath: errorPath, contents: nil),
    let errorFile = FileHandle(forWritingAtPath: errorPath)
  else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: errorPath]) }
  defer {
    try? errorFile.close()
    try? FileManager.default.removeItem(atPath: errorPath)
  }
  let out = Pipe()
  let input = Pipe()
  process.standardOutput = out
  process.standardError = errorFile
  process.standardInput = input
  try process.run()
  if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
  try input.fileHandleForWriting.close()
  let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return SkellabRun(
    status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
    stderr: (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "")
}

/// The message of the `TensorError` that `body` throws; records an issue (at the caller) when it
/// throws nothing or another kind of error.
public func tensorErrorMessage(
  sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> String {
  do {
    try body()
  } catch let error as TensorError {
    return error.message
  } catch {
    Issue.record("not a TensorError: \(error)", sourceLocation: sourceLocation)
    return ""
  }
  Issue.record("no error", sourceLocation: sourceLocation)
  return ""
}

/// A new empty folder under the temporary directory, unique to this process and `name` (an
/// old one of the same name is removed first).
public func temporaryFolder(_ name: String) throws -> String {
  let path = NSTemporaryDirectory() + "skellab-\(name)-\(getpid())"
  try? FileManager.default.removeItem(atPath: path)
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

/// Records each test's wall time (from when its body starts, not when it was queued) as a line
/// `seconds<TAB>name` appended to `$SKELLAB_TEST_TIMES`; `scripts/test.sh` prints the slowest.
/// Without the variable it does nothing.
public struct Timed: TestTrait, SuiteTrait, TestScoping {
  public var isRecursive: Bool { true }

  public func provideScope(
    for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
  ) async throws {
    guard testCase != nil, let path = ProcessInfo.processInfo.environment["SKELLAB_TEST_TIMES"]
    else {
      try await function()
      return
    }
    let start = DispatchTime.now().uptimeNanoseconds
    defer {
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      let pass = ProcessInfo.processInfo.environment["SKELLAB_TEST_PASS"] ?? "release"
      let line = String(format: "%.2f\t%@\t%@\n", seconds, pass, test.id.description)
      if let handle = FileHandle(forWritingAtPath: path) {
        handle.seekToEndOfFile()
        handle.write(Data(line.utf8))
        try? handle.close()
      }
    }
    try await function()
  }
}

extension Trait where Self == Timed {
  /// Times every test of a suite (see `Timed`).
  public static var timed: Timed { Timed() }
}

/// Whether the heavy suites run: end-to-end training, tutorial replays, fuzzing and CLI runs
/// run once, in the release pass of `scripts/test.sh` (which sets `SKELLAB_TEST_PASS=debug`
/// for the debug pass, where the unit, fixture and golden tests run with bounds checks).
public let heavyTestsRun = ProcessInfo.processInfo.environment["SKELLAB_TEST_PASS"] != "debug"

extension Trait where Self == ConditionTrait {
  /// Runs in the release pass only (see `heavyTestsRun`).
  public static var heavy: ConditionTrait {
    .enabled(if: heavyTestsRun, "a heavy suite: runs in the release pass")
  }
}

/// A skellab process started in the background (for tests that signal it while it runs), its
/// standard output and error as pipes.
public func startSkellab(_ arguments: [String]) throws -> (
  process: Process, output: Pipe, errors: Pipe
) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: skellabBinary)
  process.arguments = arguments
  let (output, errors) = (Pipe(), Pipe())
  process.standardOutput = output
  process.standardError = errors
  try process.run()
  return (process, output, errors)
}
