import Foundation

/// A seeded xoshiro256** generator whose draws are bit-identical on every machine: it uses
/// only integer operations and IEEE-exact float arithmetic (its logarithm is our own, not the
/// C library's, which may differ in the last bit between platforms).
public struct RandomGenerator: Sendable, Equatable {
  /// The four state words; saving and restoring them resumes the exact stream.
  public var state: [UInt64] {
    get { [s0, s1, s2, s3] }
    set {
      guard newValue.count == 4, newValue.contains(where: { $0 != 0 }) else { return }
      (s0, s1, s2, s3) = (newValue[0], newValue[1], newValue[2], newValue[3])
    }
  }
  private var s0: UInt64
  private var s1: UInt64
  private var s2: UInt64
  private var s3: UInt64

  /// A generator whose stream is fixed by `seed` (expanded with SplitMix64).
  public init(seed: UInt64) {
    var z = seed
    func splitMix() -> UInt64 {
      z &+= 0x9E37_79B9_7F4A_7C15
      var x = z
      x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
      x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
      return x ^ (x >> 31)
    }
    s0 = splitMix()
    s1 = splitMix()
    s2 = splitMix()
    s3 = splitMix()
  }

  /// Restores a generator from `state` (four words, not all zero).
  public init(state: [UInt64]) throws {
    guard state.count == 4, state.contains(where: { $0 != 0 }) else {
      throw TensorError("random", "generator state must be 4 words, not all zero; got \(state)")
    }
    (s0, s1, s2, s3) = (state[0], state[1], state[2], state[3])
  }

  /// The next 64 random bits.
  public mutating func next() -> UInt64 {
    let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
    let t = s1 << 17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = s3 << 45 | s3 >> 19
    return result
  }

  /// A uniform float in [0, 1) with 24 random bits.
  public mutating func nextFloat() -> Float { Float(next() >> 40) * 0x1p-24 }

  /// A uniform double in [0, 1) with 53 random bits.
  public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

  /// A uniform integer in `0..<bound` without modulo bias (Lemire's method).
  public mutating func nextInt(below bound: Int) throws -> Int {
    guard bound > 0 else {
      throw TensorError("random", "upper bound must be positive, got \(bound)")
    }
    let n = UInt64(bound)
    var product = next().multipliedFullWidth(by: n)
    if product.low < n {
      let threshold = (0 &- n) % n
      while product.low < threshold { product = next().multipliedFullWidth(by: n) }
    }
    return Int(product.high)
  }

  /// A standard normal pair by Marsaglia's polar method.
  public mutating func nextNormalPair() -> (Double, Double) {
    while true {
      let u = 2 * nextDouble() - 1
      let v = 2 * nextDouble() - 1
      let s = u * u + v * v
      if s > 0, s < 1 {
        let factor = (-2 * RandomGenerator.portableLog(s) / s).squareRoot()
        return (u * factor, v * factor)
      }
    }
  }

  /// A standard normal draw (uses one pair and keeps no spare, so the state stays four words).
  public mutating func nextNormal() -> Double { nextNormalPair().0 }

  /// A random permutation of `0..<n` (Fisher–Yates).
  public mutating func permutation(_ n: Int) throws -> [Int] {
    guard n >= 0 else { throw TensorError("random", "permutation size must be ≥ 0, got \(n)") }
    var values = Array(0..<n)
    var i = n - 1
    while i > 0 {
      values.swapAt(i, try nextInt(below: i + 1))
      i -= 1
    }
    return values
  }

  /// `k` distinct values of `0..<n` in random order (a partial Fisher–Yates shuffle).
  public mutating func sample(_ k: Int, from n: Int) throws -> [Int] {
    guard n >= 0, k >= 0, k <= n else {
      throw TensorError("random", "cannot sample \(k) distinct values from \(n)")
    }
    var values = Array(0..<n)
    for i in 0..<k { values.swapAt(i, i + (try nextInt(below: n - i))) }
    return Array(values[..<k])
  }

  /// ln(x) for x > 0 from IEEE-exact operations only: x = m·2^e with m in [√½, √2), then
  /// ln m = 2·atanh((m-1)/(m+1)) by its series (|f| ≤ 0.172, so 11 terms reach 1e-18).
  package static func portableLog(_ x: Double) -> Double {
    var exponent = Int(x.exponent)
    var m = x.significand  // in [1, 2)
    if m > 1.414_213_562_373_095_1 {
      m /= 2
      exponent += 1
    }
    let f = (m - 1) / (m + 1)
    let f2 = f * f
    var term = f
    var series = 0.0
    var k = 1.0
    for _ in 0..<12 {
      series += term / k
      term *= f2
      k += 2
    }
    return 2 * series + Double(exponent) * 0.693_147_180_559_945_3
  }
}

/// The process-wide generator behind `randn`, `rand`, initialisation, dropout and shuffling;
/// `seed(n)` fixes every draw after it. `withSeed` gives a task its own stream for a scope
/// (tests running in parallel, or a run that must not disturb the session's stream).
public enum Random {
  /// A generator shared by the code of one scope; every draw happens under `lock`, which is
  /// what makes it safe to share.
  final class Stream: @unchecked Sendable {
    let lock = NSLock()
    var generator: RandomGenerator
    init(_ generator: RandomGenerator) { self.generator = generator }

    func with<R>(_ body: (inout RandomGenerator) throws -> R) rethrows -> R {
      lock.lock()
      defer { lock.unlock() }
      return try body(&generator)
    }
  }

  private static let global = Stream(RandomGenerator(seed: 0))
  @TaskLocal private static var scoped: Stream?

  private static var current: Stream { scoped ?? global }

  /// Restarts the current stream from `seed`.
  public static func seed(_ seed: UInt64) {
    current.with { $0 = RandomGenerator(seed: seed) }
  }

  /// Runs `body` with a stream of its own, started from `seed`; draws inside do not touch the
  /// global stream.
  public static func withSeed<R>(_ seed: UInt64, _ body: () throws -> R) rethrows -> R {
    try $scoped.withValue(Stream(RandomGenerator(seed: seed))) { try body() }
  }

  /// Calls `body` with exclusive access to the current generator.
  public static func withGenerator<R>(_ body: (inout RandomGenerator) throws -> R) rethrows -> R {
    try current.with(body)
  }

  /// The current generator's state (for checkpoints) and its restoration.
  public static var state: [UInt64] {
    get { withGenerator { $0.state } }
    set { withGenerator { $0.state = newValue } }
  }
}
