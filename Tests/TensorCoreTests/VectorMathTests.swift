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

  /// The scalar kernel behind `exp`, `softmax` and attention is at most 1 ulp from e^x rounded
  /// from double precision: every 701st float from 0 to 88 and from 0 to -87 (about 3 million
  /// arguments).
  @Test func expIsWithinOneUlpOfTheRoundedValue() throws {
    var (worst, checked) = (0, 0)
    for (start, end) in [(Float(0), Float(88)), (-Float(0), Float(-87))] {
      for bits in stride(from: start.bitPattern, to: end.bitPattern, by: 701) {
        let x = Float(bitPattern: bits)
        let exact = Float(Foundation.exp(Double(x)))
        guard exact.isNormal else { continue }
        let ours = VectorMath.exp(x)
        worst = Swift.max(worst, Swift.abs(Int(ours.bitPattern) - Int(exact.bitPattern)))
        checked += 1
      }
    }
    #expect(checked > 2_000_000)
    #expect(worst <= 1, "\(worst) ulp")
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

  /// The softmax's exp (arguments after the row maximum is subtracted, and -x²/2) gives the
  /// same bits as `exp` wherever 2^n stays a normal number, and 0 below.
  @Test func expNonPositiveIsExpWhereItCanBe() throws {
    var x: Float = 88
    var compared = 0
    while x >= -86.6 {
      let (general, fast) = (VectorMath.exp(x), VectorMath.expNonPositive(x))
      #expect(general.bitPattern == fast.bitPattern, "x = \(x): \(general) against \(fast)")
      compared += 1
      x -= Float.random(in: 0.000_01...0.002)
    }
    #expect(compared > 50_000)
    for below: Float in [-86.61, -87, -87.4, -100, -.infinity] {
      #expect(VectorMath.expNonPositive(below) == 0)
    }
    #expect(VectorMath.expNonPositive(.nan).isNaN)
    #expect(VectorMath.expNonPositive(0) == 1)
  }

  /// The 16-lane maximum equals a plain scan for every length around the lane width and the
  /// four-vector stride (64), with -inf entries and the largest value in the tail, in any lane
  /// or in any of the four partial maxima.
  @Test func rowMaxIsTheLargest() throws {
    var generator = SystemRandomNumberGenerator()
    for n in Array(0...40) + [63, 64, 65, 79, 127, 128, 129, 200, 255, 400, 401] {
      for position in 0..<Swift.max(n, 1) {
        var values = (0..<n).map { _ in Float.random(in: -5...5, using: &generator) }
        if n > 0 {
          values[position] = 7
          values[(position + 1) % n] = -.infinity
        }
        let peak = values.withUnsafeBufferPointer { Kernels.rowMax($0.baseAddress!, n) }
        #expect(peak == (values.max() ?? -.infinity), "n = \(n), largest at \(position)")
      }
    }
  }

  /// A layer norm's row sum (16 float lanes added pairwise, the tail padded with zeros) is
  /// within float rounding of the double-precision sum for every length around the lane width,
  /// and exact on rows of small integers, whatever lane each lands in.
  @Test func rowSumIsTheSum() throws {
    var generator = SystemRandomNumberGenerator()
    for n in Array(0...40) + [64, 255, 400, 1024] {
      let values = (0..<n).map { _ in Float.random(in: -5...5, using: &generator) }
      let exact = values.reduce(0.0) { $0 + Double($1) }
      let magnitude = values.reduce(0.0) { $0 + Double(Swift.abs($1)) }
      let ours = values.withUnsafeBufferPointer { Kernels.rowSum($0.baseAddress!, n) }
      #expect(Swift.abs(Double(ours) - exact) <= 1e-6 * Swift.max(magnitude, 1), "n = \(n)")
      let integers = (0..<n).map { Float($0 % 7) - 3 }
      let integerSum = integers.withUnsafeBufferPointer { Kernels.rowSum($0.baseAddress!, n) }
      #expect(integerSum == integers.reduce(0, +), "n = \(n), integers")
    }
  }

  /// tanh and the logistic function stay within a few float32 ulp (relative error, and an
  /// absolute floor for values near 0) of double-precision references over the whole range,
  /// including both sides of tanh's switch at |x| = 0.625.
  @Test func tanhAndSigmoidAreWithinAFewUlp() throws {
    let x = grid(-20, 20, count: 400_001)
    var (worstTanh, worstSigmoid) = (0.0, 0.0)
    for v in x.scalars + [0.624_999, 0.625, 0.625_001, -0.625, 1e-6, -1e-30] {
      let exactTanh = Foundation.tanh(Double(v))
      let errorTanh = Swift.abs(Double(VectorMath.tanh(v)) - exactTanh)
      worstTanh = Swift.max(worstTanh, errorTanh / Swift.max(Swift.abs(exactTanh), 1e-30))
      let exactSigmoid = 1 / (1 + Foundation.exp(-Double(v)))
      let errorSigmoid = Swift.abs(Double(VectorMath.sigmoid(v)) - exactSigmoid)
      worstSigmoid = Swift.max(worstSigmoid, errorSigmoid / exactSigmoid)
    }
    #expect(worstTanh < 5e-7, "tanh: max relative error \(worstTanh)")
    #expect(worstSigmoid < 5e-7, "sigmoid: max relative error \(worstSigmoid)")
    #expect(VectorMath.tanh(.infinity) == 1 && VectorMath.tanh(-.infinity) == -1)
    #expect(VectorMath.tanh(.nan).isNaN && VectorMath.tanh(0) == 0)
    #expect(VectorMath.sigmoid(-100) == 0 && VectorMath.sigmoid(100) == 1)
    #expect(Tensor([-3, 0.1, 2]).tanh().scalars == [-3, 0.1, 2].map { VectorMath.tanh($0) })
  }
}
