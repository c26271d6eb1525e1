// skellab-bench: release-mode kernel benchmark.
//
//   swift run -c release skellab-bench [--threads 2] [--iters 50] [--torch ops.jsonl]
//   swift run -c release skellab-bench model ...   (whole models; see ModelBench.swift)
//   swift run -c release skellab-bench data ...    (the data path; see DataBench.swift)
//
// Prints GFLOP/s of TensorCore's matmul path next to raw cblas_sgemm at transformer shapes,
// and the median forward+backward time of layer_norm, gelu, softmax and linear in the shapes
// of shared/bench/ops_bench.py. With --torch (that script's output), adds PyTorch's time and
// the ratio torch/ours (above 1 means SkelLab is faster).
import CBLAS
import Foundation
import TensorCore

struct Options {
  var threads = 2
  var iterations = 50
  var torchPath: String?
}

func parseOptions() -> Options? {
  var options = Options()
  var arguments = CommandLine.arguments.dropFirst()
  while let flag = arguments.popFirst() {
    switch flag {
    case "--threads":
      guard let value = arguments.popFirst().flatMap(Int.init), value > 0 else { return nil }
      options.threads = value
    case "--iters":
      guard let value = arguments.popFirst().flatMap(Int.init), value > 0 else { return nil }
      options.iterations = value
    case "--torch":
      guard let value = arguments.popFirst() else { return nil }
      options.torchPath = value
    default:
      return nil
    }
  }
  return options
}

/// Median wall time in milliseconds of `body` after 5 warm-up calls.
func medianMilliseconds(_ iterations: Int, _ body: () throws -> Void) rethrows -> Double {
  for _ in 0..<5 { try body() }
  var times: [Double] = []
  for _ in 0..<iterations {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
  }
  times.sort()
  return times[times.count / 2]
}

/// PyTorch's `fwd_bwd_ms` per (op, shape) from ops_bench.py's JSON lines.
func loadTorch(_ path: String) throws -> [String: Double] {
  let text = try String(contentsOfFile: path, encoding: .utf8)
  var result: [String: Double] = [:]
  for line in text.split(separator: "\n") {
    guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
      let op = object["op"] as? String, let shape = object["shape"] as? [Int],
      let ms = object["fwd_bwd_ms"] as? Double
    else { continue }
    result["\(op) \(shape)"] = ms
  }
  return result
}

func peakRSSMegabytes() -> Double {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  return Double(usage.ru_maxrss) / 1024
}

func run(_ options: Options) throws {
  try Threading.setThreadCount(options.threads)
  let torch = try options.torchPath.map(loadTorch) ?? [:]
  let iterations = options.iterations
  print("threads \(options.threads), median of \(iterations) after 5 warm-up runs\n")

  // 1. Matmul path versus raw sgemm: y = x · Wᵀ with W stored [out, in] as PyTorch does.
  print("matmul [rows, in] @ [out, in]ᵀ   raw sgemm GFLOP/s   TensorCore GFLOP/s   ratio")
  for (rows, d) in [(16 * 200, 64), (32 * 400, 128), (8 * 750, 256)] {
    for (inner, outer) in [(d, 4 * d), (4 * d, d)] {
      let x = try Tensor.randn([rows, inner])
      let w = try Tensor.randn([outer, inner])
      let flops = 2.0 * Double(rows) * Double(inner) * Double(outer)
      let c = UnsafeMutablePointer<Float>.allocate(capacity: rows * outer)
      defer { c.deallocate() }
      let xs = x.scalars
      let ws = w.scalars
      let raw = medianMilliseconds(iterations) {
        cblas_sgemm(
          CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outer), Int32(inner), 1,
          xs, Int32(inner), ws, Int32(inner), 0, c, Int32(outer))
      }
      let wt = try w.transposed()
      let ours = try medianMilliseconds(iterations) { _ = try x.matmul(wt) }
      let shape = "[\(rows), \(inner)] @ [\(outer), \(inner)]ᵀ"
      print(
        shape.padding(toLength: 34, withPad: " ", startingAt: 0)
          + String(
            format: "%10.1f %20.1f %14.3f", flops / raw / 1e6, flops / ours / 1e6, raw / ours))
    }
  }

  // 2. Forward + backward of the fused kernels, in ops_bench.py's shapes.
  print("\nop (forward+backward)          shape                 ours ms    torch ms   torch/ours")
  func report(_ op: String, _ shape: [Int], _ ms: Double) {
    let key = "\(op) \(shape)"
    let torchMs = torch[key]
    let line =
      op.padding(toLength: 31, withPad: " ", startingAt: 0)
      + "\(shape)".padding(toLength: 20, withPad: " ", startingAt: 0)
      + String(format: "%10.3f", ms)
      + (torchMs.map { String(format: "  %10.3f %12.2f", $0, $0 / ms) }
        ?? "           -            -")
    print(line)
  }
  for (rows, dim) in [(16 * 200, 64), (32 * 400, 128), (8 * 750, 256)] {
    let x = try Tensor.randn([rows, dim]).requiringGrad()
    let g = try Tensor.randn([rows, dim])
    let weight = Tensor.ones([dim]).requiringGrad()
    let bias = Tensor.zeros([dim]).requiringGrad()
    let h = try Tensor.randn([rows, 4 * dim]).requiringGrad()
    let gh = try Tensor.randn([rows, 4 * dim])
    let w1 = try Tensor.randn([4 * dim, dim]).requiringGrad()
    let layerNorm = try medianMilliseconds(iterations) {
      try x.layerNorm(weight: weight, bias: bias, eps: 1e-5).backward(gradient: g)
    }
    report("layer_norm", [rows, dim], layerNorm)
    let gelu = try medianMilliseconds(iterations) { try h.gelu().backward(gradient: gh) }
    report("gelu", [rows, 4 * dim], gelu)
    let linear = try medianMilliseconds(iterations) {
      try x.matmul(w1.transposed()).backward(gradient: gh)
    }
    report("linear_fc1", [rows, dim, 4 * dim], linear)
    let heads = dim < 256 ? 4 : 8
    let tokens = [64: 200, 128: 400, 256: 750][dim] ?? 200
    let batch = rows / tokens
    let s = try Tensor.randn([batch, heads, tokens, tokens]).requiringGrad()
    let gs = try Tensor.randn([batch, heads, tokens, tokens])
    let softmax = try medianMilliseconds(iterations) {
      try s.softmax(axis: -1).backward(gradient: gs)
    }
    report("softmax", [batch, heads, tokens, tokens], softmax)
  }
  print(String(format: "\npeak RSS %.0f MB", peakRSSMegabytes()))
}

if CommandLine.arguments.dropFirst().first == "data" {
  exit(runDataBench(Array(CommandLine.arguments.dropFirst(2))))
}
if CommandLine.arguments.dropFirst().first == "distributed" {
  exit(runDistributedBench(Array(CommandLine.arguments.dropFirst(2))))
}
if CommandLine.arguments.dropFirst().first == "model" {
  exit(runModelBench(Array(CommandLine.arguments.dropFirst(2))))
}
guard let options = parseOptions() else {
  FileHandle.standardError.write(
    Data("usage: skellab-bench [--threads N] [--iters N] [--torch ops.jsonl]\n".utf8))
  exit(2)
}
do {
  try run(options)
} catch {
  FileHandle.standardError.write(Data("skellab-bench: \(error)\n".utf8))
  exit(1)
}
