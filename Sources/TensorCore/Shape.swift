import Foundation

/// Shape arithmetic shared by every op: element counts, strides, axes and broadcasting.
/// Every function throws a `TensorError` naming `op` when a user-supplied value is wrong.
package enum Shape {
  /// Moves a multi-index to the next element in row-major order (the last axis fastest);
  /// returns false after the last element.
  @inline(__always)
  package static func advance(_ index: inout [Int], in shape: [Int]) -> Bool {
    var axis = shape.count - 1
    while axis >= 0 {
      index[axis] += 1
      if index[axis] < shape[axis] { return true }
      index[axis] = 0
      axis -= 1
    }
    return false
  }

  /// Row-major strides for `shape`: the last axis is contiguous.
  package static func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var running = 1
    for axis in stride(from: shape.count - 1, through: 0, by: -1) {
      strides[axis] = running
      running &*= max(shape[axis], 1)
    }
    return strides
  }

  /// The most bytes one tensor may take: half of physical memory. A larger request is an error
  /// naming the shape, not an allocation failure that ends the process.
  package static let maximumBytes = Int(min(ProcessInfo.processInfo.physicalMemory / 2, 1 << 40))

  /// The number of elements of `shape`; throws on a negative size or an overflowing product.
  package static func elementCount(_ shape: [Int], op: String) throws -> Int {
    var count = 1
    for size in shape {
      guard size >= 0 else {
        throw TensorError(op, "shape \(shapeString(shape)) has a negative size \(size)")
      }
      let (product, overflow) = count.multipliedReportingOverflow(by: size)
      guard !overflow, product <= maximumBytes / MemoryLayout<Float>.stride else {
        throw TensorError(
          op,
          "shape \(shapeString(shape)) needs more memory than one tensor may take "
            + "(\(maximumBytes >> 20) MiB)")
      }
      count = product
    }
    return count
  }

  /// Maps a possibly negative `axis` into `0..<rank`.
  package static func normalizeAxis(_ axis: Int, rank: Int, op: String) throws -> Int {
    let resolved = axis < 0 ? axis + rank : axis
    guard resolved >= 0, resolved < rank else {
      throw TensorError(op, "axis \(axis) is out of range for a tensor of rank \(rank)")
    }
    return resolved
  }

  /// Normalises a list of axes, rejecting repeats; `nil` means every axis.
  package static func normalizeAxes(_ axes: [Int]?, rank: Int, op: String) throws -> [Int] {
    guard let axes else { return Array(0..<rank) }
    var seen = Set<Int>()
    var result: [Int] = []
    for axis in axes {
      let resolved = try normalizeAxis(axis, rank: rank, op: op)
      guard seen.insert(resolved).inserted else {
        throw TensorError(op, "axis \(axis) is repeated in \(axes)")
      }
      result.append(resolved)
    }
    return result.sorted()
  }

  /// The NumPy broadcast of two shapes: align on the right, sizes equal or 1.
  package static func broadcast(_ a: [Int], _ b: [Int], op: String) throws -> [Int] {
    let rank = max(a.count, b.count)
    var result = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
      let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
      let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
      if da == db || db == 1 {
        result[i] = da
      } else if da == 1 {
        result[i] = db
      } else {
        throw TensorError(
          op,
          "shapes \(shapeString(a)) and \(shapeString(b)) cannot be broadcast together "
            + "(axis \(i - rank): \(da) vs \(db))")
      }
    }
    return result
  }

  /// Strides that read a tensor of `shape`/`strides` as if it had the larger `target` shape
  /// (broadcast axes get stride 0).
  package static func broadcastStrides(shape: [Int], strides: [Int], to target: [Int]) -> [Int] {
    var result = [Int](repeating: 0, count: target.count)
    let lead = target.count - shape.count
    for i in 0..<shape.count where shape[i] != 1 || target[lead + i] == 1 {
      result[lead + i] = shape[i] == 1 ? 0 : strides[i]
    }
    return result
  }
}

/// Visits every element of `shape` in row-major order, in runs along the innermost axis after
/// merging axes that are contiguous for every operand. For each run, `body` receives each
/// operand's element offset, each operand's stride along the run and the run length; the
/// output index advances by the run length. (Buffer pointers, valid during the call: arrays
/// cost a retain and a release per run, which dominated copies with runs of 3 coordinates.)
package func forEachRun(
  shape: [Int], strides: [[Int]], offsets: [Int],
  _ body: (
    _ offsets: UnsafeBufferPointer<Int>, _ runStrides: UnsafeBufferPointer<Int>, _ length: Int
  ) -> Void
) {
  let runs = RunLayout(shape: shape, strides: strides)
  if shape.contains(0) { return }
  runs.walk(0..<runs.count, from: offsets) { offsets, steps, n, _ in body(offsets, steps, n) }
}

/// `forEachRun` with the runs split across threads (at least `grain` elements, or 2,048 runs, a
/// thread: a run costs a call, which outweighs copying a few elements), for copies and
/// element-wise ops over strided or broadcast operands. `body` also receives the run's first
/// element's row-major position, where its output goes.
package func forEachRunInParallel(
  shape: [Int], strides: [[Int]], offsets: [Int], grain: Int = 32_768,
  _ body:
    @escaping @Sendable (
      _ offsets: UnsafeBufferPointer<Int>, _ runStrides: UnsafeBufferPointer<Int>,
      _ length: Int, _ position: Int
    ) -> Void
) {
  let runs = RunLayout(shape: shape, strides: strides)
  if shape.contains(0) { return }
  let runGrain = Swift.max(1, Swift.min(grain / Swift.max(runs.length, 1), 2048))
  parallelChunks(runs.count, grain: runGrain) { range in
    runs.walk(range, from: offsets, body)
  }
}

/// The runs of `forEachRun`: the merged axes and each operand's strides along them.
private struct RunLayout: Sendable {
  /// The merged axes (size-1 axes dropped); the last one is the run.
  let dims: [Int]
  /// Operand k's stride along merged axis a at `k * dims.count + a`.
  let dimStrides: [Int]
  let operands: Int

  init(shape: [Int], strides: [[Int]]) {
    operands = strides.count
    // Drop size-1 axes and merge neighbours that are contiguous for every operand.
    var dims: [Int] = []
    var merged = [[Int]](repeating: [], count: operands)
    for axis in 0..<shape.count where shape[axis] != 1 {
      if let last = dims.last,
        (0..<operands).allSatisfy({
          merged[$0][dims.count - 1] == strides[$0][axis] * shape[axis]
        })
      {
        dims[dims.count - 1] = last * shape[axis]
        for k in 0..<operands { merged[k][merged[k].count - 1] = strides[k][axis] }
      } else {
        dims.append(shape[axis])
        for k in 0..<operands { merged[k].append(strides[k][axis]) }
      }
    }
    self.dims = dims
    dimStrides = merged.flatMap { $0 }
  }

  /// Elements in a run (1 for a single element).
  var length: Int { dims.last ?? 1 }
  /// How many runs there are (1 for a single element).
  var count: Int { dims.dropLast().reduce(1, *) }

  /// Runs `body` for runs `range` (row-major run numbers), starting from operand `offsets`.
  func walk(
    _ range: Range<Int>, from offsets: [Int],
    _ body: (
      _ offsets: UnsafeBufferPointer<Int>, _ runStrides: UnsafeBufferPointer<Int>,
      _ length: Int, _ position: Int
    ) -> Void
  ) {
    guard !range.isEmpty else { return }
    let rank = dims.count
    if rank == 0 {
      let zeros = [Int](repeating: 0, count: operands)
      offsets.withUnsafeBufferPointer { o in zeros.withUnsafeBufferPointer { body(o, $0, 1, 0) } }
      return
    }
    let inner = rank - 1
    let runLength = dims[inner]
    let runStrides = (0..<operands).map { dimStrides[$0 * rank + inner] }
    // The odometer at the range's first run.
    var counter = [Int](repeating: 0, count: inner)
    var current = offsets
    var rest = range.lowerBound
    for axis in stride(from: inner - 1, through: 0, by: -1) {
      counter[axis] = rest % dims[axis]
      rest /= dims[axis]
      for k in 0..<operands { current[k] += counter[axis] * dimStrides[k * rank + axis] }
    }
    // Only what `body` receives goes through buffer pointers (an array argument costs a retain
    // and a release per run).
    runStrides.withUnsafeBufferPointer { runStrides in
      current.withUnsafeMutableBufferPointer { current in
        var position = range.lowerBound * runLength
        for _ in range {
          body(UnsafeBufferPointer(current), runStrides, runLength, position)
          position += runLength
          // Advance the outer counter (odometer), updating every operand's offset.
          var axis = inner - 1
          while axis >= 0 {
            counter[axis] += 1
            for k in 0..<operands { current[k] += dimStrides[k * rank + axis] }
            if counter[axis] < dims[axis] { break }
            for k in 0..<operands { current[k] -= dimStrides[k * rank + axis] * dims[axis] }
            counter[axis] = 0
            axis -= 1
          }
        }
      }
    }
  }
}
