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

  /// Strided copies and broadcast element-wise ops split their runs across threads, each
  /// thread starting its odometer part-way through the axes, and `concat` its rows: every
  /// element lands where the index arithmetic says, for 1 to 3 threads.
  @Test func stridedCopiesAndBroadcastsSplitTheirRuns() throws {
    let before = Threading.threadCount
    defer { try? Threading.setThreadCount(before) }
    let (b, t, v, c) = (32, 64, 25, 3)
    let x = try sampleTensor([b, t, v, c], seed: 86)
    let row = try sampleTensor([1, t, 1, c], seed: 87)
    let values = x.scalars
    let rowValues = row.scalars
    // [b, t, v, c] -> [b, v, t, c]: runs of 3 floats, 51,200 of them.
    var permuted = [Float](repeating: 0, count: x.count)
    // x + row, broadcast over b and v.
    var added = [Float](repeating: 0, count: x.count)
    for i in 0..<b {
      for j in 0..<t {
        for k in 0..<v {
          for l in 0..<c {
            let source = ((i * t + j) * v + k) * c + l
            permuted[((i * v + k) * t + j) * c + l] = values[source]
            added[source] = values[source] + rowValues[j * c + l]
          }
        }
      }
    }
    // concat([x, y], axis 1) with y [b, 5, v, c]: each row of x, then the row of y.
    let y = try sampleTensor([b, 5, v, c], seed: 91)
    var joined = [Float]()
    let (xRow, yRow, yValues) = (t * v * c, 5 * v * c, y.scalars)
    for i in 0..<b {
      joined += values[(i * xRow)..<((i + 1) * xRow)]
      joined += yValues[(i * yRow)..<((i + 1) * yRow)]
    }
    for threads in [1, 2, 3] {
      try Threading.setThreadCount(threads)
      #expect(try Tensor.concat([x, y], axis: 1).scalars == joined, "\(threads) threads")
      #expect(try x.permuted([0, 2, 1, 3]).contiguous().scalars == permuted, "\(threads) threads")
      #expect(try (x + row).scalars == added, "\(threads) threads")
      #expect(try (row + x).scalars == added, "\(threads) threads")
    }
  }

  /// `index_select` gathers rows on every thread, and scatters its gradient on every thread when
  /// no index repeats (each input row takes at most one gradient row); repeated indices add in
  /// order on one thread. Every value as the index arithmetic says, −0 included (0 + −0 is +0).
  @Test func indexSelectSplitsItsRows() throws {
    let before = Threading.threadCount
    defer { try? Threading.setThreadCount(before) }
    let (outer, n, inner) = (6, 700, 40)
    let x = try sampleTensor([outer, n, inner], seed: 88)
    let g = try sampleTensor([outer, 500, inner], seed: 89)
    let gValues = g.scalars.enumerated().map { $0.offset % 97 == 0 ? -0.0 : $0.element }
    let gradient = try Tensor(shape: g.shape, scalars: gValues)
    let distinct = (0..<500).map { ($0 * 7) % n }
    let repeated = (0..<500).map { ($0 * 7) % 300 }
    for indices in [distinct, repeated] {
      var gathered = [Float]()
      var scattered = [Float](repeating: 0, count: x.count)
      let values = x.scalars
      for o in 0..<outer {
        for (j, r) in indices.enumerated() {
          gathered += values[((o * n + r) * inner)..<((o * n + r + 1) * inner)]
          for i in 0..<inner {
            scattered[(o * n + r) * inner + i] += gValues[(o * 500 + j) * inner + i]
          }
        }
      }
      for threads in [1, 2, 3] {
        try Threading.setThreadCount(threads)
        let leaf = x.requiringGrad()
        let y = try leaf.indexSelect(axis: 1, indices: indices)
        #expect(y.scalars == gathered, "\(threads) threads")
        try y.backward(gradient: gradient)
        let dx = try #require(leaf.grad).scalars
        #expect(dx.map(\.bitPattern) == scattered.map(\.bitPattern), "\(threads) threads")
      }
    }
  }

  /// Products from a megaflop up are shared out by SkelLab's workers (rows of C, or columns when
  /// C has few rows), each part one single-threaded BLAS call over all of k: the same bits as
  /// one thread, for every transpose.
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
