// skellab-bench distributed: the data-parallel training step, under mpirun or alone.
//
//   skellab-bench distributed [--config small] [--mode s2v_train|mamp_train] [--iters N]
//   mpirun -np 2 --bind-to none -x OPENBLAS_NUM_THREADS=1 skellab-bench distributed --threads 1
//
// Every rank builds the same trainer (seed 0) and the same global batch; each step is
// `GradientExchange.step` (this rank's share of the batch, its weighted backward, the gradient
// sum over ranks), then AdamW and the EMA update on every rank. Rank 0 prints one JSON line:
// median ms per step, steps/s, and the median time inside the gradient exchange (the
// communication, including waiting for the slowest rank) and its share of the step.
import Distributed
import Foundation
import NN
import Optim
import SSL
import TensorCore

/// A process group that times its sums (the gradient exchange) and forwards everything.
final class TimedCommunicator: Communicator, @unchecked Sendable {
  let inner: any Communicator
  var seconds = 0.0
  init(_ inner: any Communicator) { self.inner = inner }
  var rank: Int { inner.rank }
  var size: Int { inner.size }
  var transport: String { inner.transport }
  func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
    let start = DispatchTime.now().uptimeNanoseconds
    try inner.allReduceSum(values)
    seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
  }
  func allReduceMax(_ values: inout [Double]) throws { try inner.allReduceMax(&values) }
  func allGather(_ block: [Float]) throws -> [[Float]] { try inner.allGather(block) }
  func broadcast(_ bytes: inout [UInt8], root: Int) throws {
    try inner.broadcast(&bytes, root: root)
  }
  func barrier() throws { try inner.barrier() }
  func abort(_ message: String, status: Int32) -> Never { inner.abort(message, status: status) }
}

func runDistributedBench(_ arguments: [String]) -> Int32 {
  var config = "small"
  var mode = "s2v_train"
  var threads = 2
  var iterations: Int?
  var rest = arguments[...]
  while let flag = rest.popFirst() {
    switch flag {
    case "--config": config = rest.popFirst() ?? config
    case "--mode": mode = rest.popFirst() ?? mode
    case "--threads": threads = rest.popFirst().flatMap(Int.init) ?? threads
    case "--iters": iterations = rest.popFirst().flatMap(Int.init)
    default:
      FileHandle.standardError.write(
        Data("skellab-bench distributed: unknown flag \(flag)\n".utf8))
      return 2
    }
  }
  do {
    try World.start()
    defer { World.finish() }
    try Threading.setThreadCount(threads)
    guard let c = benchConfigs[config] else { throw TensorError("bench", "unknown config") }
    Random.seed(0)
    let x = try Tensor.randn([c.batch, c.frames, 25, 3]).permuted([0, 3, 1, 2])
      .unsqueezed(axis: -1).contiguous()
    let trainer: any Pretrainer
    switch mode {
    case "s2v_train":
      trainer = try Skeleton2vecTrainer(
        encoder: Encoder(
          flavor: .skeleton2vec, dimension: c.dim, depth: c.depth, heads: c.heads,
          frames: c.frames, segment: 4),
        decoderDepth: c.decoderDepth, mask: .random(ratio: 0.9), clipNorm: nil)
    case "mamp_train":
      trainer = try MaskedPredictionTrainer(
        encoder: Encoder(
          flavor: .mamp, dimension: c.dim, depth: c.depth, heads: c.heads, frames: c.frames),
        motion: true, decoderDepth: c.decoderDepth, mask: .random(ratio: 0.9))
    default:
      throw TensorError("bench", "unknown mode \(mode) (s2v_train or mamp_train)")
    }
    let optimizer = try AdamW(
      groups: ParameterGroup.groups(trainer.student, weightDecay: 0.05), learningRate: 1e-3,
      beta2: 0.95)
    let group = TimedCommunicator(World.current)
    let parameters = trainer.student.namedParameters().map(\.parameter)
    var generator = RandomGenerator(seed: 1)
    var count = 0
    func step() throws {
      _ = try GradientExchange.step(
        parameters: parameters, samples: c.batch, group: group, op: "bench"
      ) { try trainer.loss(x, generator: &generator) }
      try optimizer.step()
      count += 1
      try trainer.afterStep(count, of: 1_000_000)
    }
    let warmup = config == "tiny" ? 5 : 2
    let iters = iterations ?? (config == "tiny" ? 30 : config == "small" ? 15 : 6)
    for _ in 0..<warmup { try step() }
    var times: [Double] = []
    var exchange: [Double] = []
    for _ in 0..<iters {
      group.seconds = 0
      let start = DispatchTime.now().uptimeNanoseconds
      try step()
      times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
      exchange.append(group.seconds * 1000)
    }
    let median = times.sorted()[times.count / 2]
    let communication = exchange.sorted()[exchange.count / 2]
    let gradientValues = parameters.reduce(0) { $0 + $1.value.count }
    let result: [String: Any] = [
      "config": config, "mode": mode, "ranks": group.size, "threads": Threading.threadCount,
      "transport": group.transport, "global_batch": c.batch, "median_ms": median,
      "steps_per_s": 1000 / median, "exchange_median_ms": communication,
      "exchange_share": communication / median, "gradient_mb": Double(gradientValues * 4) / 1e6,
      "n": iters,
    ]
    if group.rank == 0 {
      let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
      print(String(decoding: json, as: UTF8.self))
    }
    return 0
  } catch {
    FileHandle.standardError.write(Data("skellab-bench distributed: \(error)\n".utf8))
    return 1
  }
}
