import TensorCore
import TestSupport
import Testing

/// Changes the process-wide thread count, so it runs alone.
@Suite("Threads", .serialized, .timed)
struct ThreadingTests {
  @Test func ownKernelsGiveTheSameBitsForAnyThreadCount() throws {
    let x = try sampleTensor([512, 256], seed: 80, scale: 2)
    let w = try sampleTensor([256], seed: 81)
    let before = Threading.threadCount
    defer { try? Threading.setThreadCount(before) }
    func run() throws -> [[Float]] {
      let leaf = x.requiringGrad()
      let y = try leaf.layerNorm(weight: w, bias: w).gelu().softmax()
      try (y * y).sum().backward()
      return [
        y.scalars, try #require(leaf.grad).scalars, try x.sum(axes: [0]).scalars,
        try x.sum().scalars,
      ]
    }
    try Threading.setThreadCount(1)
    let single = try run()
    try Threading.setThreadCount(2)
    #expect(Threading.threadCount == 2)
    let double = try run()
    for (a, b) in zip(single, double) { #expect(a.map(\.bitPattern) == b.map(\.bitPattern)) }
    #expect(throws: TensorError.self) { try Threading.setThreadCount(0) }
  }

  /// Mid-sized products are shared out by SkelLab's workers (rows of C, or columns when C has few
  /// rows), each part one single-threaded BLAS call over all of k: the same bits as one thread,
  /// for every transpose.
  @Test func sharedProductsGiveTheSameBitsAsOneThread() throws {
    let before = Threading.threadCount
    defer { try? Threading.setThreadCount(before) }
    let a = try sampleTensor([1001, 96], seed: 82)
    let b = try sampleTensor([96, 299], seed: 83)
    let wide = try sampleTensor([37, 96], seed: 84)
    let long = try sampleTensor([96, 2003], seed: 85)
    func run() throws -> [[Float]] {
      [
        try a.matmul(b).scalars,
        try a.transposed().contiguous().transposed().matmul(b).scalars,
        try a.matmul(b.transposed().contiguous().transposed()).scalars,
        try b.transposed().matmul(a.transposed()).scalars,
        try wide.matmul(long).scalars,
        try long.transposed().matmul(wide.transposed()).transposed().contiguous().scalars,
        try Tensor.linear(a, weight: b.transposed().contiguous(), bias: nil).scalars,
      ]
    }
    try Threading.setThreadCount(1)
    let single = try run()
    for threads in [2, 3] {
      try Threading.setThreadCount(threads)
      let shared = try run()
      for (i, (x, y)) in zip(single, shared).enumerated() {
        #expect(x.map(\.bitPattern) == y.map(\.bitPattern), "product \(i), \(threads) threads")
      }
    }
  }
}
