// skellab-bench model: whole-model steps against scripts/pytorch-bench/bench.py.
//
//   skellab-bench model [--configs tiny,small,paper] [--modes s2v_train,mamp_train,pcm3_train,encode]
//                       [--threads 2] [--iters N] [--torch default.jsonl,passive.jsonl]
//
// Each (config, mode) runs in a fresh child process so that its peak RSS is its own, and prints
// one JSON line (median ms per step, sequences/s, peak RSS). The machine's sgemm ceiling is
// measured first. With --torch (bench.py's --out files from the same session, any number: its
// default thread-wait policy and OMP_WAIT_POLICY=PASSIVE), a table follows: PyTorch's best time
// under each policy, the ratio SkelLab / PyTorch's fastest path (below 1: SkelLab is faster),
// SkelLab's GFLOP/s (PyTorch's counted GFLOP of the step over SkelLab's time) and its share of
// the sgemm ceiling, and peak RSS against PyTorch's increase over its import.
import CBLAS
import Evaluation
import Foundation
import NN
import Optim
import SSL
import SkeletonData
import TensorCore

/// The configurations of shared/bench/model.py.
let benchConfigs:
  [String: (dim: Int, depth: Int, heads: Int, decoderDepth: Int, frames: Int, batch: Int)] = [
    "tiny": (64, 2, 4, 1, 32, 16),
    "small": (128, 4, 4, 2, 64, 32),
    "paper": (256, 8, 8, 3, 120, 8),
  ]

/// The PCM3 configurations of the PyTorch reference (model.py's PCM3_CONFIGS; `paper` at batch
/// 8, bench.py's `--paper-batch 8`).
let pcm3BenchConfigs:
  [String: (
    hidden: Int, layers: Int, dim: Int, queue: Int, prompt: Int, prediction: Int, frames: Int,
    segments: ClosedRange<Int>, batch: Int
  )] = [
    "tiny": (64, 2, 32, 256, 16, 32, 32, 3...5, 16),
    "small": (256, 3, 128, 4096, 64, 128, 64, 7...11, 32),
    "paper": (1024, 3, 128, 16384, 256, 512, 64, 7...11, 8),
  ]

func runSingle(config: String, mode: String, iterations: Int?) throws -> [String: Any] {
  guard let c = benchConfigs[config] else { throw TensorError("bench", "unknown config \(config)") }
  Random.seed(0)
  let x = try Tensor.randn([c.batch, c.frames, 25, 3])
  let (warmup, defaultIterations) =
    mode == "pcm3_train"
    ? (config == "tiny" ? (2, 10) : config == "small" ? (1, 5) : (1, 2))
    : config == "tiny" ? (5, 30) : config == "small" ? (3, 15) : (2, 8)
  let iters = iterations ?? defaultIterations
  var step: () throws -> Void
  var parameterCount = 0
  var batchSize = c.batch
  let clock = StageClock()
  switch mode {
  case "encode":
    let encoder = try Encoder(
      flavor: .skeleton2vec, dimension: c.dim, depth: c.depth, heads: c.heads, frames: c.frames,
      segment: 4)
    encoder.setTraining(false)
    parameterCount = encoder.parameterCount
    step = { _ = try Autograd.noGrad { try encoder(x) } }
  case "features":
    // The evaluation protocols' feature extraction: the loader (centre crop of 64-frame
    // synthetic clips, two bodies folded into the batch) and the encoder in inference mode.
    let encoder = try Encoder(
      flavor: .skeleton2vec, dimension: c.dim, depth: c.depth, heads: c.heads, frames: c.frames,
      segment: 4)
    parameterCount = encoder.parameterCount
    let generator = try SyntheticSkeletons(
      seed: 0, subjects: 2, views: 1, repetitions: 1, frames: c.frames)
    let dataset = try SkeletonDataset.synthetic(generator).subset(Array(0..<c.batch))
    step = {
      _ = try Features.extract(
        encoder, dataset, augmentations: Features.testView(encoder), batch: c.batch)
    }
  case "pcm3_train":
    // bench.py's PCM3 step (model.PCM3_CONFIGS, with prompts): three random views made once,
    // the draws (prompt offsets, mixing, the shared body-part mask) every step, the whole
    // loss, backward, SGD (lr 0.02, momentum 0.9, weight decay 1e-4 on every tensor) and the
    // enqueue (inside the loss, as the reference forward).
    guard let p = pcm3BenchConfigs[config] else {
      throw TensorError("bench", "no pcm3 config \(config)")
    }
    let encoder = try GRUEncoder(hidden: p.hidden, layers: p.layers, frames: p.frames)
    let trainer = try PCM3Trainer(
      encoder: encoder, layout: .kinectV2, dimension: p.dim, queue: p.queue,
      prompt: p.prompt, prediction: p.prediction, mixSegments: p.segments)
    parameterCount = trainer.student.namedParameters().filter { !$0.parameter.isFrozen }
      .reduce(0) { $0 + $1.parameter.value.count }
    let views = try Tensor.randn([3 * p.batch, 3, p.frames, 25, 2])
    step = try timedTrainingStep(
      trainer, views, clock: clock,
      optimizer: SGD(
        groups: ParameterGroup.groups(trainer.student, weightDecay: 1e-4, exclusion: .none),
        learningRate: 0.02, momentum: 0.9))
    batchSize = p.batch
  case "mamp_train":
    // bench.py's MAMP step: random masking at 0.9, motion targets, masked MSE, AdamW.
    let encoder = try Encoder(
      flavor: .mamp, dimension: c.dim, depth: c.depth, heads: c.heads, frames: c.frames)
    let trainer = try MaskedPredictionTrainer(
      encoder: encoder, motion: true, decoderDepth: c.decoderDepth, mask: .random(ratio: 0.9))
    parameterCount = trainer.student.parameterCount
    step = try timedTrainingStep(trainer, x, clock: clock)
  case "s2v_train":
    // bench.py's Skeleton2vec step: the EMA teacher on all tokens (top-K = all blocks,
    // instance-norm targets), the student on a random 10% with its decoder, masked MSE,
    // backward, AdamW (no clipping, as bench.py) and the EMA update. "student_fwd" holds the
    // teacher's targets too: both run inside the trainer's loss.
    let encoder = try Encoder(
      flavor: .skeleton2vec, dimension: c.dim, depth: c.depth, heads: c.heads, frames: c.frames,
      segment: 4)
    let trainer = try Skeleton2vecTrainer(
      encoder: encoder, decoderDepth: c.decoderDepth, mask: .random(ratio: 0.9), clipNorm: nil)
    parameterCount = trainer.student.parameterCount
    step = try timedTrainingStep(trainer, x, clock: clock)
  default:
    throw TensorError("bench", "unknown mode \(mode)")
  }
  for _ in 0..<warmup { try step() }
  BufferCache.resetPeak()
  var times: [Double] = []
  for _ in 0..<iters {
    let start = DispatchTime.now().uptimeNanoseconds
    try step()
    times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
  }
  times.sort()
  let median = times[times.count / 2]
  var stageMedians: [String: Double] = [:]
  for (name, values) in clock.stages where !values.isEmpty {
    let recent = values.suffix(iters).sorted()
    stageMedians[name] = (recent[recent.count / 2] * 1000).rounded() / 1000
  }
  return [
    "stage_median_ms": stageMedians,
    "config": config, "mode": mode, "threads": Threading.threadCount, "batch": batchSize,
    "params": parameterCount, "median_ms": (median * 1000).rounded() / 1000,
    "min_ms": (times[0] * 1000).rounded() / 1000, "n": iters,
    "seq_per_s": (Double(batchSize) / median * 1e5).rounded() / 100,
    "peak_rss_mb": (peakRSSMegabytes() * 10).rounded() / 10,
    // Large tensor buffers at their peak over the timed steps: in use, and in use plus cached.
    "peak_tensor_mb": Double(BufferCache.peakBytes.used >> 20),
    "peak_tensor_cached_mb": Double(BufferCache.peakBytes.usedAndCached >> 20),
  ]
}

/// The stage times (ms) of the training steps so far, by stage name.
final class StageClock {
  var stages: [String: [Double]] = [:]
}

/// One timed training step of `trainer` on `x` `[B, T, V, 3]` as bench.py takes it: the loss,
/// backward, AdamW (lr 1e-3, betas 0.9/0.95, weight decay 0.05) and, when the trainer has a
/// teacher, its after-step (Skeleton2vec's EMA update), each stage's time recorded in `clock`.
func timedTrainingStep(
  _ trainer: any Pretrainer, _ x: Tensor, clock: StageClock, optimizer given: Optimizer? = nil
)
  throws -> () throws -> Void
{
  let ema = trainer.teacher != nil
  let optimizer =
    try given
    ?? AdamW(
      groups: ParameterGroup.groups(trainer.student, weightDecay: 0.05), learningRate: 1e-3,
      beta2: 0.95)
  // [B, T, V, 3] -> [B, C, T, V, 1]; a rank-5 batch (PCM3's stacked views) goes in as it is.
  let batch = x.rank == 5 ? x : try x.permuted([0, 3, 1, 2]).unsqueezed(axis: -1).contiguous()
  var generator = RandomGenerator(seed: 1)
  var count = 0
  let names = ["student_fwd", "backward", "optimizer"] + (ema ? ["ema"] : [])
  for name in names { clock.stages[name] = [] }
  return {
    var marks = [DispatchTime.now().uptimeNanoseconds]
    let loss = try trainer.loss(batch, generator: &generator)
    marks.append(DispatchTime.now().uptimeNanoseconds)
    optimizer.zeroGrad()
    try loss.backward()
    marks.append(DispatchTime.now().uptimeNanoseconds)
    try optimizer.step()
    marks.append(DispatchTime.now().uptimeNanoseconds)
    count += 1
    if ema {
      try trainer.afterStep(count, of: 1_000_000)
      marks.append(DispatchTime.now().uptimeNanoseconds)
    }
    for (i, name) in names.enumerated() {
      clock.stages[name]?.append(Double(marks[i + 1] - marks[i]) / 1e6)
    }
  }
}

/// One bench.py measurement: median ms per step, peak RSS and the RSS after `import torch`,
/// and the GFLOP its FlopCounterMode counted for the step.
struct TorchStep {
  let ms: Double
  let rss: Double
  let floor: Double
  let gflop: Double?
  let attention: String
  let policy: String
}

/// bench.py's JSON lines from one or more files, by "config/mode".
func loadTorchSteps(_ paths: [String]) throws -> [String: [TorchStep]] {
  var result: [String: [TorchStep]] = [:]
  for path in paths {
    for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
      guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let config = o["config"] as? String, let mode = o["mode"] as? String,
        let ms = o["median_ms"] as? Double
      else { continue }
      result["\(config)/\(mode)", default: []].append(
        TorchStep(
          ms: ms, rss: o["peak_rss_mb"] as? Double ?? 0,
          floor: o["rss_after_import_mb"] as? Double ?? 0, gflop: o["gflop_per_step"] as? Double,
          attention: o["attn"] as? String ?? "-",
          policy: o["omp_wait_policy"] as? String ?? "default"))
    }
  }
  return result
}

/// The machine's sgemm ceiling in GFLOP/s: the median of square 1024³ products with `threads`
/// BLAS threads (SkelLab's matrix products all go through the same OpenBLAS).
func sgemmCeiling(threads: Int) -> Double {
  let n = 1024
  var a = [Float](repeating: 0, count: n * n)
  var b = [Float](repeating: 0, count: n * n)
  var c = [Float](repeating: 0, count: n * n)
  for i in 0..<(n * n) {
    a[i] = Float(i % 7) * 0.1
    b[i] = Float(i % 5) * 0.1
  }
  let ms = medianMilliseconds(10) {
    cblas_sgemm(
      CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, &a, Int32(n),
      &b, Int32(n), 0, &c, Int32(n))
  }
  return 2 * Double(n * n * n) / (ms / 1000) / 1e9
}

func runModelBench(_ arguments: [String]) -> Int32 {
  var configs = ["tiny", "small", "paper"]
  var modes = ["s2v_train", "mamp_train", "pcm3_train", "encode"]
  var threads = 2
  var iterations: Int?
  var torchPaths: [String] = []
  var single: (String, String)?
  var rest = arguments[...]
  while let flag = rest.popFirst() {
    switch flag {
    case "--configs": configs = rest.popFirst()?.split(separator: ",").map(String.init) ?? []
    case "--modes": modes = rest.popFirst()?.split(separator: ",").map(String.init) ?? []
    case "--threads": threads = rest.popFirst().flatMap(Int.init) ?? 2
    case "--iters": iterations = rest.popFirst().flatMap(Int.init)
    case "--torch": torchPaths = rest.popFirst()?.split(separator: ",").map(String.init) ?? []
    case "--pieces":
      try? Threading.setThreadCount(threads)
      try? profileAttentionPieces()
      return 0
    case "--profile":
      guard let c = rest.popFirst() else { return 2 }
      do {
        try Threading.setThreadCount(threads)
        try profileEncode(config: c, iterations: iterations ?? 10)
      } catch {
        FileHandle.standardError.write(Data("skellab-bench model: \(error)\n".utf8))
        return 1
      }
      return 0
    case "--single":
      guard let c = rest.popFirst(), let m = rest.popFirst() else { return 2 }
      single = (c, m)
    default:
      FileHandle.standardError.write(Data("skellab-bench model: unknown flag \(flag)\n".utf8))
      return 2
    }
  }
  do {
    try Threading.setThreadCount(threads)
    if let (config, mode) = single {
      let result = try runSingle(config: config, mode: mode, iterations: iterations)
      let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
      print(String(decoding: json, as: UTF8.self))
      return 0
    }
    let torch = try loadTorchSteps(torchPaths)
    let ceiling = sgemmCeiling(threads: threads)
    print(String(format: "sgemm ceiling: %.0f GFLOP/s (1024³, %d threads)", ceiling, threads))
    var rows: [String] = []
    for config in configs {
      for mode in modes {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        child.arguments =
          ["model", "--single", config, mode, "--threads", String(threads)]
          + (iterations.map { ["--iters", String($0)] } ?? [])
        let pipe = Pipe()
        child.standardOutput = pipe
        try child.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        child.waitUntilExit()
        let line = String(decoding: output, as: UTF8.self).trimmingCharacters(
          in: .whitespacesAndNewlines)
        print(line)
        guard child.terminationStatus == 0,
          let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
          let ms = o["median_ms"] as? Double, let rss = o["peak_rss_mb"] as? Double
        else { continue }
        rows.append(
          ratioRow(config, mode, ms: ms, rss: rss, torch[config + "/" + mode] ?? [], ceiling))
      }
    }
    print(
      "\nratio = SkelLab / PyTorch's fastest path (the best of its default thread-wait policy and "
        + "OMP_WAIT_POLICY=PASSIVE, sdpa and math attention); GFLOP/s = PyTorch's counted "
        + "GFLOP of the step / SkelLab's time; memory = SkelLab's peak RSS / PyTorch's peak over "
        + "its import")
    print(
      "config mode         SkelLab ms  default ms  PASSIVE ms  ratio   GFLOP/s  of sgemm  "
        + "RSS MB  torch MB  memory")
    rows.forEach { print($0) }
    return 0
  } catch {
    FileHandle.standardError.write(Data("skellab-bench model: \(error)\n".utf8))
    return 1
  }
}

/// Per-op times of one encoder forward (inference) at a config: where the time goes.
func profileEncode(config: String, iterations: Int) throws {
  guard let c = benchConfigs[config] else { throw TensorError("bench", "unknown config \(config)") }
  Random.seed(0)
  let x = try Tensor.randn([c.batch, c.frames, 25, 3])
  let encoder = try Encoder(
    flavor: .skeleton2vec, dimension: c.dim, depth: c.depth, heads: c.heads, frames: c.frames,
    segment: 4)
  var totals: [String: Double] = [:]
  var order: [String] = []
  func time<R>(_ label: String, _ body: () throws -> R) rethrows -> R {
    let start = DispatchTime.now().uptimeNanoseconds
    let result = try body()
    if totals[label] == nil { order.append(label) }
    totals[label, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    return result
  }
  for iteration in 0..<(iterations + 2) {
    if iteration == 2 {
      totals = [:]
      order = []
    }
    try Autograd.noGrad {
      var h = try time("embed") { try encoder.embed(x) }
      for block in encoder.blocks {
        let a = try time("norm1") { try block.norm1(h) }
        let packed = try time("qkv") { try block.attn.qkv(a) }
        let attended = try time("attention") { try Tensor.packedAttention(packed, heads: c.heads) }
        var o = try time("proj") { try block.attn.proj(attended) }
        o = try time("scale+add") { try h + o * (block.gamma1?.value ?? Tensor(1)) }
        let m = try time("norm2") { try block.norm2(o) }
        let f = try time("fc1") { try block.mlp.fc1(m) }
        let g = time("gelu") { f.gelu() }
        let f2 = try time("fc2") { try block.mlp.fc2(g) }
        h = try time("scale+add") { try o + f2 * (block.gamma2?.value ?? Tensor(1)) }
      }
      _ = try time("norm") { try encoder.norm(h) }
    }
  }
  let total = totals.values.reduce(0, +) / Double(iterations)
  print(String(format: "encode %@: %.1f ms per step", config, total))
  for label in order {
    let ms = (totals[label] ?? 0) / Double(iterations)
    print(String(format: "  %-10@ %8.2f ms  %5.1f%%", label, ms, 100 * ms / total))
  }
}

/// Scratch timing of the attention pieces at the small config (development aid).
func profileAttentionPieces() throws {
  let q = try Tensor.randn([128, 400, 32])
  let k = try Tensor.randn([128, 400, 32])
  let s = try Tensor.randn([128, 400, 400])
  let gemm = medianMilliseconds(10) { _ = try? q.matmul(k.transposed()) }
  let pv = medianMilliseconds(10) { _ = try? s.matmul(q) }
  let softmax = medianMilliseconds(10) { _ = try? s.softmax(axis: -1) }
  let qkv = try Tensor.randn([32, 400, 384])
  let fused = medianMilliseconds(10) { _ = try? Tensor.packedAttention(qkv, heads: 4) }
  print(
    String(
      format: "q·kᵀ %.1f ms, p·v %.1f ms, softmax %.1f ms, fused %.1f ms", gemm, pv, softmax, fused)
  )
}

/// One row of the ratio table.
func ratioRow(
  _ config: String, _ mode: String, ms: Double, rss: Double, _ torch: [TorchStep],
  _ ceiling: Double
) -> String {
  func best(_ policy: String?) -> TorchStep? {
    torch.filter { policy == nil || $0.policy == policy }.min { $0.ms < $1.ms }
  }
  func cell(_ step: TorchStep?) -> String {
    step.map { String(format: "%10.1f", $0.ms) } ?? String(repeating: " ", count: 9) + "-"
  }
  func padded(_ text: String, _ width: Int) -> String {
    text + String(repeating: " ", count: max(0, width - text.count))
  }
  var row = padded(config, 7) + padded(mode, 11) + String(format: "%11.1f ", ms)
  row += cell(best("default")) + "  " + cell(best("PASSIVE"))
  guard let fastest = best(nil) else { return row }
  row += String(format: "  %5.2f", ms / fastest.ms)
  if let gflop = fastest.gflop {
    let rate = gflop / (ms / 1000)
    row += String(format: "  %8.1f  %7.0f%%", rate, 100 * rate / ceiling)
  } else {
    row += String(repeating: " ", count: 19)
  }
  let over = fastest.rss - fastest.floor
  row += String(format: "  %6.0f  %8.0f  %6.2f", rss, over, over > 0 ? rss / over : 0)
  return row
}
