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
}
