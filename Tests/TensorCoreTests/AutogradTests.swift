import Foundation
import TensorCore
import TestSupport
import Testing

@Suite("Autograd", .timed)
struct AutogradTests {
  @Test func gradientsAccumulateAcrossBackwardCalls() throws {
    let w = try Tensor(shape: [2], scalars: [1, 2]).requiringGrad()
    try (w * w).sum().backward()
    #expect(w.grad?.scalars == [2, 4])
    try (w * 3).sum().backward()
    #expect(w.grad?.scalars == [5, 7])
    w.grad = nil
    #expect(w.grad == nil)
  }

  /// As in PyTorch: backward frees what the graph saved, so going through it again is a clear
  /// error, unless the first backward retained the graph; leaves stay usable either way.
  @Test func aSecondBackwardThroughTheSameGraphNeedsRetainGraph() throws {
    let w = try Tensor(shape: [2], scalars: [1, 2]).requiringGrad()
    let y = try (w * w).exp().sum()
    try y.backward()
    let first = try #require(w.grad?.scalars)
    #expect(throws: TensorError.self) { try y.backward() }
    do {
      try y.backward()
    } catch let error as TensorError {
      #expect("\(error)".contains("retain_graph"))
    }
    #expect(w.grad?.scalars == first)
    // A new graph from the same leaf works.
    try (w * 3).sum().backward()
    #expect(w.grad?.scalars == [first[0] + 3, first[1] + 3])
    w.grad = nil
    let z = try (w * w).exp().sum()
    try z.backward(retainGraph: true)
    try z.backward()
    #expect(w.grad?.scalars == first.map { 2 * $0 })
    #expect(throws: TensorError.self) { try z.backward() }
  }

  /// A sum or difference keeps neither input for its backward, a product keeps only the side
  /// the other's gradient needs: an intermediate used once is freed while the graph lives.
  @Test func elementwiseOpsKeepOnlyWhatTheirBackwardNeeds() throws {
    let w = Tensor([1, 2, 3]).requiringGrad()
    weak var added: TensorStorage?
    weak var scaled: TensorStorage?
    let loss: Tensor = try {
      let a = w * 2  // [2, 4, 6], an intermediate
      added = a.storage
      let b = try a + Tensor([1, 1, 1])
      let c = try b * Tensor([3, 3, 3])  // b's values are not needed: the constant needs none
      scaled = b.storage
      return try (c - w).sum()
    }()
    #expect(added == nil)
    #expect(scaled == nil)
    try loss.backward()
    #expect(w.grad?.scalars == [5, 5, 5])
  }

  /// A saved tensor's buffer goes to the backward that asks for it only in a pass that frees
  /// the graph, and only when nothing else holds it; otherwise the tensor stays saved.
  @Test func aBackwardThatFreesTheGraphMayTakeASavedBuffer() throws {
    let w = Tensor([1, 2, 3]).requiringGrad()
    for (retain, shared) in [(false, false), (true, false), (false, true)] {
      var held: Tensor?
      let saved = {
        let values = Autograd.noGrad { w.detached() * 2 }
        if shared { held = values }
        return SavedTensor(values, shape: values.shape)
      }()
      #expect(saved.takeBuffer() == nil, "outside a backward")
      var taken: TensorStorage?
      let y = Autograd.record("probe", Autograd.noGrad { w.detached() * 1 }, [w]) { g in
        taken = saved.takeBuffer()
        return [g]
      }
      try y.sum().backward(retainGraph: retain)
      #expect((taken != nil) == (!retain && !shared), "retain \(retain), shared \(shared)")
      let values = taken.map { Array(UnsafeBufferPointer(start: $0.base, count: 3)) }
      #expect((values ?? saved.value.scalars) == [2, 4, 6])
      #expect(held == nil || held?.scalars == [2, 4, 6])
    }
  }

  @Test func sharedSubexpressionsSumTheirGradients() throws {
    let x = Tensor([3]).requiringGrad()
    let y = try x * x  // used twice below
    try (y + y * x).sum().backward()  // 2x² … d/dx (x² + x³) = 2x + 3x²
    #expect(x.grad?.scalars == [33])
  }

  @Test func detachAndNoGradStopGradients() throws {
    let x = Tensor([2]).requiringGrad()
    let z = try x * x.detached()
    try z.sum().backward()
    #expect(x.grad?.scalars == [2])
    let inside = try Autograd.noGrad { try x * x }
    #expect(!inside.requiresGrad)
    #expect(Autograd.isEnabled)
    #expect(!x.detached().requiresGrad)
  }

  @Test func backwardErrors() throws {
    let plain = Tensor.ones([2])
    let noGrad = #expect(throws: TensorError.self) { try plain.sum().backward() }
    #expect(noGrad?.op == "backward")
    let x = Tensor.ones([2]).requiringGrad()
    let notScalar = #expect(throws: TensorError.self) { try (x * 2).backward() }
    #expect(
      notScalar?.description
        == "[backward] backward() needs a one-element tensor, got shape [2]; reduce it (sum or mean) first"
    )
    var computed = x * 2
    #expect(throws: TensorError.self) { try computed.setRequiresGrad(false) }
    var leaf = Tensor.ones([1])
    try leaf.setRequiresGrad(true)
    #expect(leaf.requiresGrad && leaf.isLeaf)
  }

  @Test func deepGraphsDoNotOverflowTheStack() throws {
    let x = Tensor([1]).requiringGrad()
    var y = x
    for _ in 0..<20_000 { y = y * 1.0001 }
    try y.sum().backward()
    let expected = Float(Foundation.pow(1.0001, 20_000.0))
    #expect(Swift.abs(try #require(x.grad).item() - expected) / expected < 1e-3)
  }

  @Test func leafUpdatedInPlaceKeepsTracking() throws {
    var w = Tensor([1, 2]).requiringGrad()
    w.withUnsafeMutableBufferPointer { $0[0] = 5 }
    #expect(w.requiresGrad)
    try (w * w).sum().backward()
    #expect(w.grad?.scalars == [10, 4])
  }

  @Test func composedChainMatchesFiniteDifferences() throws {
    // A small attention-like chain through every kind of op.
    let x = try sampleTensor([2, 3, 4], seed: 60)
    let w = try sampleTensor([4, 4], seed: 61, scale: 0.5)
    try checkGradients([x, w], "attention-like chain") { t in
      let h = try t[0].matmul(t[1]).layerNorm()
      let scores = try h.matmul(h.transposed()).softmax()
      return try scores.matmul(h).gelu().mean(axes: [1])
    }
  }
}
