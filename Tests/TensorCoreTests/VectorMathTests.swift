import Foundation
import TensorCore
import TestSupport
import Testing

@Suite("Vectorised maths", .timed)
struct VectorMathTests {
  /// Inputs across the whole float range that matters, including the tails.
  func grid(_ low: Float, _ high: Float, count: Int) -> Tensor {
    Tensor((0..<count).map { low + (high - low) * Float($0) / Float(count - 1) })
  }

  @Test func expIsWithinAFewUlp() throws {
    let x = grid(-87, 88, count: 200_001)
    let ours = x.exp().scalars
    var worst = 0.0
    for (i, v) in x.scalars.enumerated() {
      let exact = Foundation.exp(Double(v))
      worst = Swift.max(worst, Swift.abs(Double(ours[i]) - exact) / exact)
    }
    #expect(worst < 4e-7, "max relative error \(worst)")
    #expect(Tensor([-100, 100, 0]).exp().scalars == [0, .infinity, 1])
  }

  @Test func geluMatchesExactErfOverTheWholeRange() throws {
    let x = grid(-10, 10, count: 100_001)
    let ours = x.gelu().scalars
    var worst = 0.0
    for (i, v) in x.scalars.enumerated() {
      let exact = 0.5 * Double(v) * (1 + Foundation.erf(Double(v) / 2.0.squareRoot()))
      worst = Swift.max(worst, Swift.abs(Double(ours[i]) - exact))
    }
    // Absolute error relative to the magnitude of the inputs (|x| ≤ 10).
    #expect(worst < 5e-6, "max absolute error \(worst)")
  }
}
