import TensorCore
import TestSupport
import Testing

@Suite("Shapes and views", .timed)
struct ShapeTests {
  let x: Tensor

  init() throws { x = try Tensor(shape: [2, 3, 4], scalars: (0..<24).map(Float.init)) }

  @Test func bufferOfAStridedViewOutlivesAllocationsInTheBody() throws {
    // The row-major copy of a strided view is 256 KiB, a size the buffer cache reuses: if the
    // copy died once its pointer was taken, the same-sized tensor made inside the body would
    // be written over it.
    let wide = try Tensor(shape: [256, 512], scalars: (0..<(256 * 512)).map { Float($0 % 1000) })
    let view = try wide[.all, .range(0, nil, 2)]
    let expected = (0..<(256 * 256)).map { (i: Int) -> Float in
      let (row, column) = (i / 256, i % 256)
      return Float((row * 512 + column * 2) % 1000)
    }
    let seen = view.withUnsafeBufferPointer { buffer -> [Float] in
      let other = Tensor.full([256, 256], 7)
      #expect(other.count == buffer.count)
      return Array(buffer)
    }
    #expect(seen == expected)
  }

  @Test func reshapeInfersAndChecks() throws {
    #expect(try x.reshaped([6, -1]).shape == [6, 4])
    #expect(try x.reshaped([-1]).scalars == x.scalars)
    let error = #expect(throws: TensorError.self) { try x.reshaped([5, -1]) }
    #expect(error?.description == "[reshape] cannot reshape [2, 3, 4] (24 elements) into [5, -1]")
    #expect(throws: TensorError.self) { try x.reshaped([-1, -1]) }
    #expect(throws: TensorError.self) { try x.reshaped([7, 3]) }
  }

  @Test func permuteAndTransposeAreViews() throws {
    let p = try x.permuted([2, 0, 1])
    #expect(p.shape == [4, 2, 3])
    #expect(!p.isContiguous)
    #expect(try p.element(at: [1, 1, 2]) == x.element(at: [1, 2, 1]))
    let t = try x.transposed()
    #expect(t.shape == [2, 4, 3])
    #expect(try t.element(at: [1, 3, 0]) == x.element(at: [1, 0, 3]))
    #expect(t.contiguous().isContiguous)
    #expect(throws: TensorError.self) { try x.permuted([0, 0, 1]) }
    #expect(throws: TensorError.self) { try x.permuted([0, 1]) }
  }

  @Test func squeezeUnsqueezeExpand() throws {
    let y = try x.unsqueezed(axis: 1)
    #expect(y.shape == [2, 1, 3, 4])
    #expect(try y.squeezed(axis: 1).shape == [2, 3, 4])
    #expect(try Tensor.zeros([1, 3, 1]).squeezed().shape == [3])
    #expect(try x.unsqueezed(axis: -1).shape == [2, 3, 4, 1])
    let error = #expect(throws: TensorError.self) { try x.squeezed(axis: 0) }
    #expect(error?.description == "[squeeze] axis 0 has size 2, not 1, in [2, 3, 4]")
    let row = try Tensor([1, 2, 3]).expanded(to: [2, 3])
    #expect(row.scalars == [1, 2, 3, 1, 2, 3])
    #expect(try Tensor([1, 2, 3]).expanded(to: [2, -1]).shape == [2, 3])
    #expect(throws: TensorError.self) { try Tensor([1, 2]).expanded(to: [2, 3]) }
  }

  @Test func concatStackSplit() throws {
    let a = try Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
    let b = try Tensor(shape: [2, 1], scalars: [5, 6])
    #expect(try Tensor.concat([a, b], axis: 1).scalars == [1, 2, 5, 3, 4, 6])
    #expect(try Tensor.concat([a, a], axis: 0).shape == [4, 2])
    #expect(try Tensor.stack([a, a], axis: 1).shape == [2, 2, 2])
    #expect(try Tensor.stack([a, a], axis: 1).scalars == [1, 2, 1, 2, 3, 4, 3, 4])
    let parts = try x.split(sizes: [1, 2], axis: 1)
    #expect(parts.map(\.shape) == [[2, 1, 4], [2, 2, 4]])
    #expect(try parts[1].element(at: [1, 0, 0]) == 16)
    #expect(try x.split(parts: 2, axis: -1).map(\.shape) == [[2, 3, 2], [2, 3, 2]])
    let error = #expect(throws: TensorError.self) { try Tensor.concat([a, b], axis: 0) }
    #expect(
      error?.description
        == "[concat] tensor 1 has shape [2, 1], expected [2, 2] except along axis 0")
    #expect(throws: TensorError.self) { try x.split(sizes: [1, 1], axis: 1) }
    #expect(throws: TensorError.self) { try Tensor.stack([a, b]) }
  }

  @Test func gradientsThroughViews() throws {
    let input = try sampleTensor([2, 3, 4], seed: 20)
    try checkGradients([input], "reshape") { t in try t[0].reshaped([4, 6]) * 2 }
    try checkGradients([input], "permute") { t in try t[0].permuted([2, 0, 1]).contiguous() }
    try checkGradients([input], "transpose") { t in
      try t[0].transposed(0, 2) * t[0].transposed(0, 2)
    }
    try checkGradients([input], "squeeze/unsqueeze") { t in
      try t[0].unsqueezed(axis: 0).squeezed(axis: 0) * 3
    }
    let row = try sampleTensor([1, 4], seed: 21)
    try checkGradients([row], "expand") { t in try t[0].expanded(to: [3, 4]) * input[.index(0)] }
    let other = try sampleTensor([2, 1, 4], seed: 22)
    try checkGradients([input, other], "concat") { t in try Tensor.concat(t, axis: 1) }
    try checkGradients([input, input * 2], "stack") { t in try Tensor.stack(t, axis: 2) }
    try checkGradients([input], "split") { t in
      let pieces = try t[0].split(sizes: [1, 3], axis: 2)
      return try pieces[0] * pieces[1].sum(axes: [2], keepDim: true)
    }
  }

  @Test func copyOnWrite() throws {
    let a = try Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
    var b = a
    b.withUnsafeMutableBufferPointer { $0[0] = 100 }
    #expect(a.scalars == [1, 2, 3, 4])
    #expect(b.scalars == [100, 2, 3, 4])
    // A view's write does not reach the tensor it was taken from.
    var view = try a.transposed()
    view.withUnsafeMutableBufferPointer { $0[1] = -1 }
    #expect(a.scalars == [1, 2, 3, 4])
    #expect(view.scalars == [1, -1, 2, 4])
  }
}
