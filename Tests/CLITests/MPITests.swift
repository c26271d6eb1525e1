import Foundation
import TensorCore
import TestSupport
import Testing

/// Runs of the `skellab` binary under `mpirun`: what N ranks compute against one process.
enum MPI {
  /// Whether the binary was built with the MPI trait.
  static let built: Bool = {
    (try? runSkellab(["--version"]))?.stdout.contains("MPI: built in") ?? false
  }()

  /// `mpirun`, when on PATH.
  static let launcher: String? = {
    let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
    return paths.map { "\($0)/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
  }()

  /// Whether the MPI tests run: with the trait and mpirun, or required by scripts/test.sh.
  static let available = built && launcher != nil
  static let required = ProcessInfo.processInfo.environment["SKELLAB_TEST_MPI"] == "1"

  /// The environment of a launch: root allowed (CI containers), one BLAS thread per rank.
  static var environment: [String: String] {
    ProcessInfo.processInfo.environment.merging([
      "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
      "OPENBLAS_NUM_THREADS": "1", "SKELLAB_THREADS": "1",
    ]) { $1 }
  }

  /// The command line of `ranks` processes running `arguments` (1: the binary alone).
  static func command(_ ranks: Int, _ arguments: [String]) -> (String, [String]) {
    guard ranks > 1, let launcher else { return (skellabBinary, arguments) }
    return (
      launcher,
      ["-np", "\(ranks)", "--oversubscribe", "--bind-to", "none", skellabBinary] + arguments
    )
  }

  /// A job started in the background: its launcher's pid.
  struct Job {
    let pid: pid_t
    /// Whether it still runs (reaps it when it has ended).
    var isRunning: Bool { mutating get { poll() } }
    private(set) var status: Int32?
    /// Whether `wait` had to kill it.
    private(set) var timedOut = false

    init(pid: pid_t) { self.pid = pid }

    private mutating func poll() -> Bool {
      guard status == nil else { return false }
      var raw: Int32 = 0
      guard waitpid(pid, &raw, WNOHANG) == pid else { return true }
      // The exit status, or 128 + the signal that ended it.
      status = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
      return false
    }

    /// Waits for the end (at most `limit` seconds, then SIGKILL) and returns the status.
    mutating func wait(limit: Double) -> Int32 {
      let deadline = Date().addingTimeInterval(limit)
      while isRunning, Date() < deadline { usleep(20_000) }
      if isRunning {
        timedOut = true
        kill(pid, SIGKILL)
        while isRunning { usleep(20_000) }
      }
      return status ?? -1
    }
  }

  /// Starts `ranks` processes; standard output and error go to files in `folder`. Spawned with
  /// an empty signal mask and default dispositions: the test runner's threads block signals,
  /// and a launcher that inherited that mask would never see a SIGTERM.
  static func start(_ ranks: Int, _ arguments: [String], folder: String, name: String) throws
    -> Job
  {
    let (executable, argv) = command(ranks, arguments)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(
      &actions, 1, "\(folder)/\(name).out", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(
      &actions, 2, "\(folder)/\(name).err", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var none = sigset_t()
    sigemptyset(&none)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    // The shell changes to `folder`, then becomes the launcher (keeping the mask).
    let all = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", folder, executable] + argv
    let environment = MPI.environment.map { "\($0)=\($1)" }
    var cArguments = all.map { strdup($0) } + [nil]
    var cEnvironment = environment.map { strdup($0) } + [nil]
    defer {
      for p in cArguments { free(p) }
      for p in cEnvironment { free(p) }
    }
    var pid: pid_t = 0
    let status = posix_spawn(&pid, "/bin/sh", &actions, &attributes, &cArguments, &cEnvironment)
    guard status == 0 else {
      throw CocoaError(.executableLoad, userInfo: [NSFilePathErrorKey: executable])
    }
    return Job(pid: pid)
  }

  /// Runs `ranks` processes to their end (at most `limit` seconds: a hang fails the test
  /// instead of stalling the suite).
  static func run(
    _ ranks: Int, _ arguments: [String], folder: String, name: String, limit: Double = 300
  ) throws -> SkellabRun {
    var job = try start(ranks, arguments, folder: folder, name: name)
    let status = job.wait(limit: limit)
    if job.timedOut { fail("\(name): still running after \(limit) s; killed") }
    return SkellabRun(
      status: status,
      stdout: (try? String(contentsOfFile: "\(folder)/\(name).out", encoding: .utf8)) ?? "",
      stderr: (try? String(contentsOfFile: "\(folder)/\(name).err", encoding: .utf8)) ?? "")
  }

  /// The losses of a run folder's metrics.jsonl, in step order.
  static func losses(_ folder: String) throws -> [Double] {
    try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8)
      .split(separator: "\n").map { line in
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return object?["loss"] as? Double ?? .nan
      }
  }

  /// Every tensor of a safetensors file.
  static func tensors(_ path: String) throws -> [String: [Float]] {
    let file = try SafeTensors.read(path: path)
    var all: [String: [Float]] = [:]
    for name in file.names { all[name] = try file.tensor(name).scalars }
    return all
  }

  /// The largest difference between the same tensors of two files, relative to the largest
  /// magnitude of the first file's tensor, and where it is. The key third of a transformer's
  /// `qkv.bias` is left out and returned apart (its largest absolute difference): its exact
  /// gradient is zero (softmax ignores a shift of every score), so AdamW turns the rounding
  /// noise of its gradient into steps of up to the learning rate, in one process as in many.
  static func largestDifference(_ a: String, _ b: String) throws -> (
    relative: Double, name: String, keyBias: Double
  ) {
    let (x, y) = (try tensors(a), try tensors(b))
    #expect(Set(x.keys) == Set(y.keys))
    var worst = (0.0, "")
    var keyBias = 0.0
    for (name, u) in x {
      guard let v = y[name], v.count == u.count else {
        fail("\(name): missing or of another size in \(b)")
        continue
      }
      var differences = zip(u, v).map { Double(abs($0 - $1)) }
      if name.hasSuffix("attn.qkv.bias") {
        let d = u.count / 3
        keyBias = max(keyBias, differences[d..<(2 * d)].max() ?? 0)
        differences.replaceSubrange(d..<(2 * d), with: repeatElement(0, count: d))
      }
      let scale = Double(u.map { abs($0) }.max() ?? 0)
      let relative = (differences.max() ?? 0) / (scale > 0 ? scale : 1)
      if relative > worst.0 { worst = (relative, name) }
    }
    return (worst.0, worst.1, keyBias)
  }

  /// The pid of rank `rank` among the processes `mpirun` (pid `launcher`) started.
  static func pid(ofRank rank: Int, under launcher: Int32) -> Int32? {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    for entry in entries {
      guard let pid = Int32(entry), pid != launcher,
        let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ"),
        let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
      else { continue }
      let variables = environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
      let command = String(decoding: cmdline, as: UTF8.self)
      if command.hasPrefix(skellabBinary), variables.contains("OMPI_COMM_WORLD_RANK=\(rank)"),
        isDescendant(pid, of: launcher)
      {
        return pid
      }
    }
    return nil
  }

  static func isDescendant(_ pid: Int32, of ancestor: Int32) -> Bool {
    var current = pid
    for _ in 0..<16 {
      guard let stat = try? String(contentsOfFile: "/proc/\(current)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
      else { return false }
      let fields = stat[stat.index(after: close)...].split(separator: " ")
      guard fields.count > 1, let parent = Int32(fields[1]) else { return false }
      if parent == ancestor { return true }
      if parent <= 1 { return false }
      current = parent
    }
    return false
  }
}

/// A new folder holding the pretraining script of these tests, and the script's path.
private func fitFolder(_ name: String) throws -> (folder: String, script: String) {
  let folder = try temporaryFolder(name)
  try fitScript().write(toFile: folder + "/fit.skl", atomically: true, encoding: .utf8)
  return (folder, folder + "/fit.skl")
}

/// A folder with an evaluation script: a tiny random encoder over synthetic data, then `body`.
private func evaluationFolder(_ name: String, _ body: String) throws
  -> (folder: String, script: String)
{
  let folder = try temporaryFolder(name)
  let script = """
    seed(0)
    data = dataset("synthetic", subjects=2, frames=16, split="xsub")
    enc = encoder(dim=16, depth=2, heads=2, frames=16)

    """
  try (script + body).write(toFile: folder + "/eval.skl", atomically: true, encoding: .utf8)
  return (folder, folder + "/eval.skl")
}

/// The pretraining script of these tests: a tiny encoder, a few steps on synthetic data.
private func fitScript() -> String {
  """
  method = param("method", "mamp")
  seed(0)
  data = dataset("synthetic", subjects=1, frames=16)
  if method == "pcm3" or method == "pcm3pp"
    enc = gru_encoder(hidden=16, layers=1, joints=25, bodies=2, frames=16)
    clip = nil
    if method == "pcm3pp"
      clip = 0.5
    end
    t = pcm3(enc, queue=48, dim=8, prediction=16, clip=clip)
    lr = 0.01
  else
    enc = encoder(dim=16, depth=2, heads=2, frames=16)
    lr = 0.001
    if method == "skeleton2vec"
      t = skeleton2vec(enc)
    end
    if method == "mamp"
      t = mamp(enc)
    end
    if method == "mae"
      t = mae(enc)
    end
  end
  run = param("run", "run")
  h = fit(t, data, epochs=int(param("epochs", 1)), batch=int(param("batch", 8)), lr=lr, run=run, checkpoint_every=int(param("every", 4)))
  print(h)
  save(run + "/final.safetensors", enc)
  """
}

@Suite("MPI", .timed, .heavy, .serialized)
struct MPITests {
  @Test func theRequiredMPIBuildIsHere() {
    guard MPI.required else { return }
    #expect(MPI.built, "scripts/test.sh builds the release pass with --traits MPI")
    #expect(MPI.launcher != nil, "mpirun is not on PATH (scripts/setup.sh --mpi installs it)")
  }

  /// Two ranks against one process with the same global batch: the same loss curve and final
  /// weights up to float summation order (the ranks' gradients are summed instead of computed in
  /// one product), and two 2-rank runs give the same bits.
  @Test(
    .enabled(if: MPI.available, "needs the MPI build and mpirun"),
    arguments: ["skeleton2vec", "mamp", "mae", "pcm3", "pcm3pp"])
  func twoRanksTrainAsOneProcess(method: String) throws {
    let (folder, script) = try fitFolder("mpi-fit-\(method)")
    var runs: [String: SkellabRun] = [:]
    for (name, ranks) in [("one", 1), ("two", 2), ("again", 2)] {
      runs[name] = try MPI.run(
        ranks, ["run", script, "--set", "method=\(method)", "--set", "run=\(name)"],
        folder: folder, name: name)
      #expect(runs[name]?.status == 0, "\(name): \(runs[name]?.stderr ?? "")")
    }
    guard runs.values.allSatisfy({ $0.status == 0 }) else { return }
    // print prints once, from rank 0.
    #expect(runs["two"]!.stdout.components(separatedBy: "History ").count == 2)
    let one = try MPI.losses(folder + "/one")
    let two = try MPI.losses(folder + "/two")
    #expect(one.count == two.count && one.count >= 10)
    let worst = zip(one, two).map { abs($0 - $1) / max(abs($0), 1e-6) }.max() ?? .infinity
    #expect(worst <= 2e-5, "largest relative loss difference \(worst)")
    let weights = try MPI.largestDifference(
      folder + "/one/final.safetensors", folder + "/two/final.safetensors")
    #expect(
      weights.relative <= 1e-5,
      "largest weight difference \(weights.relative) (relative), in \(weights.name)")
    // The key bias: at most the learning rate (1e-3) per step on rounding noise.
    #expect(weights.keyBias <= 1e-3 * Double(one.count), "key bias \(weights.keyBias)")
    // Two 2-rank runs: the same bits (the sums go in rank order).
    #expect(try MPI.losses(folder + "/again") == two)
    #expect(
      FileManager.default.contents(atPath: folder + "/again/checkpoint.safetensors")
        == FileManager.default.contents(atPath: folder + "/two/checkpoint.safetensors"))
  }

  /// A rank killed mid-run ends the job within seconds; its checkpoint resumes on one process
  /// and on two, and a 2-rank resume ends bit-identical to a 2-rank run never stopped.
  @Test(.enabled(if: MPI.available, "needs the MPI build and mpirun"))
  func aKilledRankEndsTheJobAndItsRunResumes() throws {
    let (folder, script) = try fitFolder("mpi-kill")
    let settings = ["--set", "method=mamp", "--set", "epochs=12", "--set", "every=5"]
    let whole = try MPI.run(
      2, ["run", script, "--set", "run=whole"] + settings, folder: folder, name: "whole")
    #expect(whole.status == 0, "\(whole.stderr)")
    var stopped = try MPI.start(
      2, ["run", script, "--set", "run=killed"] + settings, folder: folder, name: "killed")
    // Kill rank 1 once a few checkpoints are written.
    var victim: Int32?
    let started = Date()
    while stopped.isRunning, Date().timeIntervalSince(started) < 120 {
      let lines =
        (try? String(contentsOfFile: folder + "/killed/metrics.jsonl", encoding: .utf8))?
        .split(separator: "\n").count ?? 0
      if lines >= 10, let pid = MPI.pid(ofRank: 1, under: stopped.pid) {
        victim = pid
        kill(pid, SIGKILL)
        break
      }
      usleep(10_000)
    }
    #expect(victim != nil, "rank 1 was not found running with 10 steps logged")
    let killedAt = Date()
    while stopped.isRunning, Date().timeIntervalSince(killedAt) < 60 { usleep(20_000) }
    let seconds = Date().timeIntervalSince(killedAt)
    let ended = !stopped.isRunning
    #expect(ended && seconds < 15, "the job still ran \(seconds) s after the kill")
    #expect(stopped.wait(limit: 1) != 0)
    let lines = try MPI.losses(folder + "/killed").count
    let total = try MPI.losses(folder + "/whole").count
    #expect(lines >= 10 && lines < total, "the kill came at \(lines) of \(total) steps")
    // Resume the same folder on one process and on two (copies of it).
    let files = FileManager.default
    try files.copyItem(atPath: folder + "/killed", toPath: folder + "/resumed1")
    try files.copyItem(atPath: folder + "/killed", toPath: folder + "/resumed2")
    for (name, ranks) in [("resumed1", 1), ("resumed2", 2)] {
      let run = try MPI.run(
        ranks, ["run", script, "--set", "run=\(name)"] + settings, folder: folder, name: name)
      #expect(run.status == 0, "\(name): \(run.stderr)")
      #expect(run.stderr.contains("resumed mamp from"), "\(name): \(run.stderr)")
    }
    #expect(try MPI.losses(folder + "/resumed2") == MPI.losses(folder + "/whole"))
    #expect(
      files.contents(atPath: folder + "/resumed2/final.safetensors")
        == files.contents(atPath: folder + "/whole/final.safetensors"))
    let difference = try MPI.largestDifference(
      folder + "/whole/final.safetensors", folder + "/resumed1/final.safetensors")
    #expect(
      difference.relative <= 1e-5,
      "one-process resume: \(difference.relative) (relative) in \(difference.name)")
    #expect(difference.keyBias <= 1e-3 * Double(total), "key bias \(difference.keyBias)")
  }

  /// Three ranks share a batch of 8 as 3, 3 and 2 samples: the step is still the whole batch's
  /// (each rank's loss weighted by its share), and the job says how the batch was shared.
  @Test(.enabled(if: MPI.available, "needs the MPI build and mpirun"))
  func unevenSharesTrainAsOneProcess() throws {
    let (folder, script) = try fitFolder("mpi-uneven")
    let one = try MPI.run(1, ["run", script, "--set", "run=one"], folder: folder, name: "one")
    let three = try MPI.run(
      3, ["run", script, "--set", "run=three"], folder: folder, name: "three")
    #expect(one.status == 0 && three.status == 0, "\(three.stderr)")
    #expect(three.stderr.contains("they take 3, 3, 2 samples of each batch"), "\(three.stderr)")
    let (a, b) = (try MPI.losses(folder + "/one"), try MPI.losses(folder + "/three"))
    #expect(a.count == b.count && !a.isEmpty)
    let worst = zip(a, b).map { abs($0 - $1) / max(abs($0), 1e-6) }.max() ?? .infinity
    #expect(worst <= 2e-5, "largest relative loss difference \(worst)")
    let weights = try MPI.largestDifference(
      folder + "/one/final.safetensors", folder + "/three/final.safetensors")
    #expect(weights.relative <= 1e-5, "\(weights.relative) (relative) in \(weights.name)")
  }

  /// SIGTERM or SIGUSR1 to mpirun stops every rank at the same step; rank 0 saves that step, as
  /// a single process does, and the run resumes from it.
  @Test(
    .enabled(if: MPI.available, "needs the MPI build and mpirun"), arguments: [SIGTERM, SIGUSR1])
  func aSignalToMpirunSavesTheStepReached(signal: Int32) throws {
    let (folder, script) = try fitFolder("mpi-signal-\(signal)")
    // No periodic checkpoint: the only one can be the stop's.
    let settings = ["--set", "method=mamp", "--set", "epochs=100", "--set", "every=100000"]
    var job = try MPI.start(
      2, ["run", script, "--set", "run=term"] + settings, folder: folder, name: "term")
    // Two epochs are done: the run is well under way.
    let started = Date()
    while job.isRunning, Date().timeIntervalSince(started) < 120,
      !((try? String(contentsOfFile: folder + "/term.err", encoding: .utf8))?
        .contains("epoch 2/100") ?? false)
    {
      usleep(10_000)
    }
    let running = job.isRunning
    #expect(running, "the run ended before it could be stopped")
    kill(job.pid, signal)
    let signalled = Date()
    while job.isRunning, Date().timeIntervalSince(signalled) < 60 { usleep(20_000) }
    let stopped = !job.isRunning
    #expect(stopped, "mpirun still ran a minute after signal \(signal)")
    let status = job.wait(limit: 1)
    #expect(status != 0)
    // The checkpoint is the step the ranks stopped at (its metrics with it), not the last
    // periodic one. (mpirun may drop what the ranks print once it is ending the job, so the
    // files tell.)
    let logged = try MPI.losses(folder + "/term").count
    let saved = try SafeTensors.read(path: folder + "/term/checkpoint.safetensors")
      .metadata["step"]
    #expect(saved == "\(logged)" && logged >= 24, "saved \(saved ?? "-"), logged \(logged)")
    if signal == SIGUSR1 {
      // mpirun passes SIGUSR1 on and lets the job end by itself: exit 138, the message kept.
      let errors = (try? String(contentsOfFile: folder + "/term.err", encoding: .utf8)) ?? ""
      #expect(status == 138)
      #expect(errors.contains("stopped at step \(logged) of"), "\(errors)")
    }
    let resumed = try MPI.run(
      2, ["run", script, "--set", "run=term"] + settings, folder: folder, name: "resumed")
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(resumed.stderr.contains("resumed mamp from"), "\(resumed.stderr)")
  }

  /// Feature extraction shares its batches between the ranks: KNN, the linear probe and
  /// fine-tuning give what one process gives.
  @Test(.enabled(if: MPI.available, "needs the MPI build and mpirun"))
  func evaluationMatchesOneProcess() throws {
    let (folder, script) = try evaluationFolder(
      "mpi-eval",
      """
      k = knn(enc, data, k=1)
      p = linear_probe(enc, data, epochs=3, batch=8)
      f = finetune(enc, data, epochs=1, batch=8, hidden=16)
      print("knn {k.accuracy:.10f} probe {p.accuracy:.10f} finetune {f.accuracy:.10f} loss {f.epochs[0].loss:.5f}")
      print("ranks {world_size()}")
      """)
    let one = try MPI.run(1, ["run", script], folder: folder, name: "one")
    let two = try MPI.run(2, ["run", script], folder: folder, name: "two")
    #expect(one.status == 0 && two.status == 0, "\(one.stderr)\n\(two.stderr)")
    let first = { (text: String) in text.split(separator: "\n").first { $0.hasPrefix("knn") } }
    #expect(first(one.stdout) != nil && first(one.stdout) == first(two.stdout))
    #expect(one.stdout.contains("ranks 1") && two.stdout.contains("ranks 2"))
  }

  /// A probe's run folder resumes under two ranks as under one: rank 0 reads the checkpoint once
  /// and sends it to the other rank, and both continue to the same result.
  @Test(.enabled(if: MPI.available, "needs the MPI build and mpirun"))
  func aProbeResumesOnTwoRanksAsOnOne() throws {
    let (folder, script) = try evaluationFolder(
      "mpi-probe-resume",
      """
      p = linear_probe(enc, data, epochs=param("epochs", 1), batch=8, run=param("run", "probe"))
      print("probe {p.accuracy:.10f} loss {p.epochs[0].loss:.6f}")
      """)
    let first = try MPI.run(
      2, ["run", script, "--set", "run=first"], folder: folder, name: "first")
    #expect(first.status == 0, "\(first.stderr)")
    let files = FileManager.default
    try files.copyItem(atPath: folder + "/first", toPath: folder + "/one")
    try files.copyItem(atPath: folder + "/first", toPath: folder + "/two")
    var lines: [String] = []
    for (name, ranks) in [("one", 1), ("two", 2)] {
      let run = try MPI.run(
        ranks, ["run", script, "--set", "run=\(name)", "--set", "epochs=2"], folder: folder,
        name: name)
      #expect(run.status == 0, "\(name): \(run.stderr)")
      #expect(run.stderr.contains("resumed linear probe from"), "\(name): \(run.stderr)")
      lines.append(
        run.stdout.split(separator: "\n").first { $0.hasPrefix("probe") }.map(String.init) ?? "")
    }
    #expect(!lines[0].isEmpty && lines[0] == lines[1], "\(lines)")
  }

  /// A batch the ranks cannot share is refused before any work, naming both numbers.
  @Test(.enabled(if: MPI.available, "needs the MPI build and mpirun"))
  func aBatchSmallerThanTheJobIsRefused() throws {
    let (folder, script) = try fitFolder("mpi-batch")
    let run = try MPI.run(
      3, ["run", script, "--set", "batch=2", "--set", "run=small"], folder: folder, name: "small")
    #expect(run.status != 0)
    #expect(
      run.stderr.contains("a batch of 2 samples cannot be shared by 3 processes"), "\(run.stderr)")
  }
}

/// A binary without the trait, started by mpirun as one of several processes, says so instead
/// of running the script alone on every rank.
@Suite("MPI launch", .timed)
struct MPILaunchTests {
  @Test func aBuildWithoutMPIRefusesAnMPIJob() throws {
    guard !MPI.built else { return }
    let run = try runSkellab(["-e", "1"], environment: ["OMPI_COMM_WORLD_SIZE": "2"])
    #expect(run.status == 2)
    #expect(run.stderr.contains("built without MPI"), "\(run.stderr)")
    #expect(run.stderr.contains("--traits MPI"))
  }
}
