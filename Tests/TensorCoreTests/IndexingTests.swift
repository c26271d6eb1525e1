import TensorCore
import TestSupport
import Testing

@Suite("Indexing, gather and scatter", .timed)
struct IndexingTests {
  let x: Tensor

  init() throws { x = try Tensor(shape: [3, 4], scalars: (0..<12).map(Float.init)) }

  @Test func slicingWithStepsAndNegativeIndices() throws {
    #expect(try x[.index(-1)].scalars == [8, 9, 10, 11])
    #expect(try x[.all, .index(1)].scalars == [1, 5, 9])
    #expect(try x[.all, .range(nil, nil, 2)].scalars == [0, 2, 4, 6, 8, 10])
    #expect(try x[.range(-2, nil, 1), .range(1, -1, 1)].scalars == [5, 6, 9, 10])
    #expect(try x[.range(nil, nil, -1), .index(0)].scalars == [8, 4, 0])
    #expect(try x[.index(1), .range(nil, nil, -2)].scalars == [7, 5])
    #expect(try x[.range(5, 10, 1)].shape == [0, 4])
    #expect(try x[.newAxis, .index(0)].shape == [1, 4])
    let error = #expect(throws: TensorError.self) { try x[.index(3)] }
    #expect(error?.description == "[index] index 3 is out of range for axis 0 of size 3 in [3, 4]")
    #expect(throws: TensorError.self) { try x[.range(nil, nil, 0)] }
    #expect(throws: TensorError.self) { try x[.all, .all, .all] }
  }

  @Test func sliceGradient() throws {
    let input = try sampleTensor([4, 5], seed: 30)
    try checkGradients([input], "slice") { t in
      try t[0][.range(1, nil, 2), .range(nil, nil, -2)] * 3
    }
  }

  @Test func assignWritesSelectionOnly() throws {
    var y = x
    try y.assign(Tensor([-1, -2, -3]), at: [.all, .index(0)])
    #expect(try y[.all, .index(0)].scalars == [-1, -2, -3])
    #expect(x.scalars == (0..<12).map(Float.init))
    try y.assign(Tensor(7), at: [.index(2)])
    #expect(try y[.index(2)].scalars == [7, 7, 7, 7])
    #expect(throws: TensorError.self) { try y.assign(Tensor([1, 2]), at: [.index(0)]) }
  }

  @Test func gatherAndScatterAdd() throws {
    let index = try Tensor(shape: [3, 2], scalars: [3, 0, 1, 1, 0, 2])
    let gathered = try x.gather(axis: 1, index: index)
    #expect(gathered.scalars == [3, 0, 5, 5, 8, 10])
    let scattered = try Tensor.zeros([3, 4]).scatterAdd(
      axis: 1, index: index, source: Tensor.ones([3, 2]))
    #expect(scattered.scalars == [1, 0, 0, 1, 0, 2, 0, 0, 1, 0, 1, 0])
    let error = #expect(throws: TensorError.self) {
      try x.gather(axis: 1, index: Tensor(shape: [1, 1], scalars: [4]))
    }
    #expect(error?.op == "gather")
    #expect(throws: TensorError.self) {
      try x.gather(axis: 1, index: Tensor(shape: [3, 1], scalars: [0, 1, 4]))
    }
    #expect(throws: TensorError.self) {
      try x.gather(axis: 1, index: Tensor(shape: [3, 1], scalars: [0, 1.5, 2]))
    }
  }

  @Test func gatherScatterIndexSelectGradients() throws {
    let input = try sampleTensor([2, 5, 3], seed: 31)
    // Masking-style gather: keep tokens 4, 0, 2 of each sequence, every channel.
    let keep = try Tensor(shape: [2, 3, 1], scalars: [4, 0, 2, 1, 1, 3]).expanded(to: [2, 3, 3])
      .contiguous()
    try checkGradients([input], "gather") { t in try t[0].gather(axis: 1, index: keep) }
    let source = try sampleTensor([2, 3, 3], seed: 32)
    try checkGradients([input, source], "scatter_add") { t in
      try t[0].scatterAdd(axis: 1, index: keep, source: t[1])
    }
    try checkGradients([input], "index_select") { t in
      try t[0].indexSelect(axis: 1, indices: [4, -1, 0, 0])
    }
  }

  @Test func indexSelectAndOneHot() throws {
    #expect(try x.indexSelect(axis: 0, indices: [2, 0]).scalars == [8, 9, 10, 11, 0, 1, 2, 3])
    #expect(throws: TensorError.self) { try x.indexSelect(axis: 0, indices: [3]) }
    let labels = try Tensor([2, 0]).oneHot(classes: 3)
    #expect(labels.shape == [2, 3])
    #expect(labels.scalars == [0, 0, 1, 1, 0, 0])
    #expect(throws: TensorError.self) { try Tensor([3]).oneHot(classes: 3) }
  }
}
