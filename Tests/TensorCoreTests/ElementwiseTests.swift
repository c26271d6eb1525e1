import Foundation
import TensorCore
import TestSupport
import Testing

@Suite("Element-wise ops", .timed)
struct ElementwiseTests {
  /// Shape pairs that broadcast: equal, row vector, column vector, scalar, leading axes.
  static let broadcastPairs: [([Int], [Int])] = [
    ([3, 4], [3, 4]), ([3, 4], [4]), ([3, 1], [1, 4]), ([2, 3, 4], [3, 1]), ([2, 1, 4], []),
    ([], [2, 3]),
  ]

  @Test(arguments: broadcastPairs)
  func binaryGradients(shapes: ([Int], [Int])) throws {
    let a = try sampleTensor(shapes.0, seed: 1)
    let b = try sampleTensor(shapes.1, seed: 2) * 0.5 + 2  // away from 0 for division
    try checkGradients([a, b], "add \(shapes)") { t in try t[0] + t[1] }
    try checkGradients([a, b], "sub \(shapes)") { t in try t[0] - t[1] }
    try checkGradients([a, b], "mul \(shapes)") { t in try t[0] * t[1] }
    try checkGradients([a, b], "div \(shapes)") { t in try t[0] / t[1] }
    let positive = a.abs() + 0.5
    try checkGradients([positive, b], "pow \(shapes)") { t in try Tensor.pow(t[0], t[1]) }
  }

  @Test func broadcastValues() throws {
    let a = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
    let column = try Tensor(shape: [2, 1], scalars: [10, 20])
    #expect(try (a + column).scalars == [11, 12, 13, 24, 25, 26])
    #expect(try (a * Tensor([1, 0, -1])).scalars == [1, 0, -3, 4, 0, -6])
    #expect((2 - a).scalars == [1, 0, -1, -2, -3, -4])
    #expect((6 / a).scalars == [6, 3, 2, 1.5, 1.2, 1])
    // A transposed view broadcasts like its values, not its buffer.
    let t = try a.transposed()
    #expect(try (t + Tensor([100, 200])).scalars == [101, 204, 102, 205, 103, 206])
  }

  @Test func broadcastErrorNamesShapes() throws {
    let error = #expect(throws: TensorError.self) {
      try Tensor.zeros([2, 3]) + Tensor.zeros([4])
    }
    #expect(
      error?.description
        == "[add] shapes [2, 3] and [4] cannot be broadcast together (axis -1: 3 vs 4)"
    )
  }

  @Test func scalarOpGradients() throws {
    let a = try sampleTensor([2, 5], seed: 3) * 0.5 + 3
    try checkGradients([a], "scalar ops") { t in
      let sum = try (2 * t[0] + 1) - (t[0] / 4) + (3 / t[0])
      return try sum - (1 - t[0]) * 0.5
    }
    try checkGradients([a], "neg") { t in -t[0] }
  }

  @Test func unaryGradients() throws {
    let x = try sampleTensor([3, 7], seed: 4)
    // Keep inputs away from kinks (0 for abs/relu, the clamp bounds) by more than eps.
    let awayFromZero = try Tensor.where(
      Tensor.less(x.abs(), Tensor(0.1)), x + 0.3, x)
    let positive = x.abs() + 0.2
    try checkGradients([x], "exp") { t in t[0].exp() }
    try checkGradients([positive], "log") { t in t[0].log() }
    try checkGradients([positive], "sqrt") { t in t[0].sqrt() }
    try checkGradients([awayFromZero], "abs") { t in t[0].abs() }
    try checkGradients([x], "tanh") { t in t[0].tanh() }
    try checkGradients([x], "sigmoid") { t in t[0].sigmoid() }
    try checkGradients([awayFromZero], "relu") { t in t[0].relu() }
    try checkGradients([x * 3], "gelu") { t in t[0].gelu() }
    try checkGradients([positive], "pow 3") { t in t[0].pow(3) }
    try checkGradients([positive], "pow -1.5") { t in t[0].pow(-1.5) }
    try checkGradients([x], "pow 2") { t in t[0].pow(2) }
    let awayFromBounds = try Tensor.where(
      Tensor.less((x - 0.5).abs(), Tensor(0.05)), x + 0.2, x)
    try checkGradients([awayFromBounds], "clamp") { t in t[0].clamp(min: -0.5, max: 0.5) }
  }

  @Test func unaryValues() throws {
    let x = try Tensor(shape: [4], scalars: [-2, -0.5, 0, 1.5])
    expectClose(x.exp(), Tensor(x.scalars.map { Foundation.exp($0) }), "exp")
    expectClose(x.sigmoid(), Tensor(x.scalars.map { 1 / (1 + Foundation.exp(-$0)) }), "sigmoid")
    let exactGelu: [Float] = x.scalars.map { v in
      let cdf = 0.5 * (1 + Foundation.erf(Double(v) / 2.0.squareRoot()))
      return Float(Double(v) * cdf)
    }
    expectClose(x.gelu(), Tensor(exactGelu), "gelu")
    #expect(x.relu().scalars == [0, 0, 0, 1.5])
    #expect(x.clamp(min: -1).scalars == [-1, -0.5, 0, 1.5])
    #expect(x.clamp(max: 0).scalars == [-2, -0.5, 0, 0])
    #expect(x.abs().scalars == [2, 0.5, 0, 1.5])
  }

  @Test func comparisonsAndWhere() throws {
    let a = try Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
    let b = try Tensor(shape: [2], scalars: [2, 2])
    #expect(try Tensor.less(a, b).scalars == [1, 0, 0, 0])
    #expect(try Tensor.lessEqual(a, b).scalars == [1, 1, 0, 0])
    #expect(try Tensor.greater(a, b).scalars == [0, 0, 1, 1])
    #expect(try Tensor.greaterEqual(a, b).scalars == [0, 1, 1, 1])
    #expect(try Tensor.equal(a, b).scalars == [0, 1, 0, 0])
    #expect(try Tensor.notEqual(a, b).scalars == [1, 0, 1, 1])
    let picked = try Tensor.where(Tensor.greater(a, b), a, Tensor(-1))
    #expect(picked.scalars == [-1, -1, 3, 4])
    #expect(try a.maskedFill(Tensor([1, 0]), 9).scalars == [9, 2, 9, 4])
    #expect(throws: TensorError.self) { try a.maskedFill(Tensor.ones([3]), 0) }
  }

  @Test func whereGradients() throws {
    let condition = try Tensor(shape: [3, 1], scalars: [1, 0, 1])
    let a = try sampleTensor([3, 4], seed: 5)
    let b = try sampleTensor([4], seed: 6)
    try checkGradients([a, b], "where") { t in try Tensor.where(condition, t[0], t[1]) }
    try checkGradients([a], "masked_fill") { t in try t[0].maskedFill(condition, -2) }
  }
}
