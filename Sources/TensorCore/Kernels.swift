/// A float function of one argument, as a type, so that generic kernels specialise on it and
/// the compiler inlines and vectorises the loop (a closure would stay an opaque call).
package protocol UnaryFunction: Sendable {
  func callAsFunction(_ x: Float) -> Float
}

/// A float function of two arguments, as a type (see `UnaryFunction`).
package protocol BinaryFunction: Sendable {
  func callAsFunction(_ a: Float, _ b: Float) -> Float
}

/// A gradient rule `(x, y, g) -> dx` for a unary op, as a type (see `UnaryFunction`).
package protocol GradientFunction: Sendable {
  func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float
}

/// Wraps a closure for rarely used ops where speed does not matter.
package struct UnaryClosure: UnaryFunction {
  let body: @Sendable (Float) -> Float
  package init(_ body: @escaping @Sendable (Float) -> Float) { self.body = body }
  package func callAsFunction(_ x: Float) -> Float { body(x) }
}

/// Wraps a closure for rarely used ops where speed does not matter.
package struct BinaryClosure: BinaryFunction {
  let body: @Sendable (Float, Float) -> Float
  package init(_ body: @escaping @Sendable (Float, Float) -> Float) { self.body = body }
  package func callAsFunction(_ a: Float, _ b: Float) -> Float { body(a, b) }
}

/// Wraps a closure for rarely used gradient rules where speed does not matter.
package struct GradientClosure: GradientFunction {
  let body: @Sendable (Float, Float, Float) -> Float
  package init(_ body: @escaping @Sendable (Float, Float, Float) -> Float) { self.body = body }
  package func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float { body(x, y, g) }
}

package struct AddFunction: BinaryFunction {
  package init() {}
  @inline(__always) package func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b }
}
package struct SubtractFunction: BinaryFunction {
  @inline(__always) package func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b }
}
package struct MultiplyFunction: BinaryFunction {
  @inline(__always) package func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b }
}
package struct DivideFunction: BinaryFunction {
  @inline(__always) package func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b }
}
/// `a·x + b` for scalars a and b (scalar multiply, add, negate in one kernel).
package struct AffineFunction: UnaryFunction {
  package init(scale: Float, shift: Float) {
    self.scale = scale
    self.shift = shift
  }
  let scale: Float
  let shift: Float
  @inline(__always) package func callAsFunction(_ x: Float) -> Float { x * scale + shift }
}

/// Low-level loops over raw buffers. Shapes are validated by the ops that call them.
package enum Kernels {
  /// Copies a strided view into a contiguous row-major buffer, split across threads.
  package static func copy(
    from source: UnsafeMutablePointer<Float>, shape: [Int], strides: [Int], offset: Int,
    to destination: UnsafeMutablePointer<Float>
  ) {
    let (from, to) = (SendablePointer(source), SendablePointer(destination))
    forEachRunInParallel(shape: shape, strides: [strides], offsets: [offset]) {
      offsets, runStrides, n, position in
      let src = from.base + offsets[0]
      let dst = to.base + position
      let step = runStrides[0]
      if step == 1 {
        dst.update(from: src, count: n)
      } else {
        for j in 0..<n { dst[j] = src[j * step] }
      }
    }
  }

  /// `out[i] = f(x[i])` over `count` contiguous elements, split across threads.
  package static func map<F: UnaryFunction>(
    _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int, _ f: F
  ) {
    let src = SendablePointer(UnsafeMutablePointer(mutating: x))
    let dst = SendablePointer(out)
    parallelChunks(count) { range in
      let (s, d) = (src.base, dst.base)
      for i in range { d[i] = f(s[i]) }
    }
  }

  /// `x[i] = f(x[i])` over `count` contiguous elements, in place, split across threads (one
  /// pointer, so the loop vectorises; `map` with the same source and target would not).
  package static func apply<F: UnaryFunction>(_ x: UnsafeMutablePointer<Float>, count: Int, _ f: F)
  {
    let data = SendablePointer(x)
    parallelChunks(count) { range in
      applySerially(data.base + range.lowerBound, count: range.count, f)
    }
  }

  /// `x[i] = f(x[i])` over `count` contiguous elements on the calling thread (inside a
  /// thread's share of a larger job).
  package static func applySerially<F: UnaryFunction>(
    _ x: UnsafeMutablePointer<Float>, count: Int, _ f: F
  ) {
    for i in 0..<count { x[i] = f(x[i]) }
  }

  /// The rows a product with beta = 1 then adds to, on the calling thread: each of `rows` rows
  /// of `width` floats at `target` starts as the same row of `residual` plus `bias`, or as
  /// either alone; it stays as it is where `residual` is `target` itself and there is no bias.
  package static func startRows(
    _ target: UnsafeMutablePointer<Float>, rows: Int, width: Int,
    residual: UnsafePointer<Float>?, bias: UnsafePointer<Float>?
  ) {
    switch (residual, bias) {
    case (let residual?, let bias?):
      for row in 0..<rows {
        let (to, from) = (target + row * width, residual + row * width)
        for j in 0..<width { to[j] = from[j] + bias[j] }
      }
    case (let residual?, nil):
      if residual != UnsafePointer(target) { target.update(from: residual, count: rows * width) }
    case (nil, let bias?):
      for row in 0..<rows { (target + row * width).update(from: bias, count: width) }
    case (nil, nil):
      break
    }
  }

  /// `out[i] = f(x[i], y[i])` over `count` contiguous elements, split across threads.
  package static func zip<F: BinaryFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
    count: Int, _ f: F
  ) {
    let a = SendablePointer(UnsafeMutablePointer(mutating: x))
    let b = SendablePointer(UnsafeMutablePointer(mutating: y))
    let dst = SendablePointer(out)
    parallelChunks(count) { range in
      let (p, q, d) = (a.base, b.base, dst.base)
      for i in range { d[i] = f(p[i], q[i]) }
    }
  }

  /// `dx[i] = rule(x[i], y[i], g[i])` over `count` contiguous elements, split across threads.
  package static func gradient<G: GradientFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
    _ out: UnsafeMutablePointer<Float>, count: Int, _ rule: G
  ) {
    let (px, py, pg) = (
      SendablePointer(UnsafeMutablePointer(mutating: x)),
      SendablePointer(UnsafeMutablePointer(mutating: y)),
      SendablePointer(UnsafeMutablePointer(mutating: g))
    )
    let dst = SendablePointer(out)
    parallelChunks(count) { range in
      let (a, b, c, d) = (px.base, py.base, pg.base, dst.base)
      for i in range { d[i] = rule(a[i], b[i], c[i]) }
    }
  }
}

/// Branch-free float32 maths that the compiler vectorises (AVX-512: 16 lanes per instruction).
/// The C library's scalar `expf`/`erff` cost tens of nanoseconds per element and do not
/// vectorise; these stay within a few ulp of them.
package enum VectorMath {
  /// e^x with a degree-6 polynomial after range reduction by ln 2 (within 1 ulp of the
  /// correctly rounded value; 0 below -87.3, +inf above 88.72).
  @inline(__always)
  package static func exp(_ x: Float) -> Float {
    let clamped = min(max(x, -87.33654), 88.72283)
    let (y, shifted) = reduced(clamped)
    // Scale by 2^n in two halves so that n = 128 (x near 88.7) and n = -126 stay finite.
    let ni = Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000
    let half = ni >> 1
    let s1 = Float(bitPattern: UInt32(bitPattern: (half &+ 127) << 23))
    let s2 = Float(bitPattern: UInt32(bitPattern: (ni &- half &+ 127) << 23))
    let result = y * s1 * s2
    return x < -87.33654 ? 0 : (x > 88.72283 ? .infinity : result)
  }

  /// The range reduction and polynomial of `exp` and `expNonPositive`: n = round(x·log2 e)
  /// and y = e^(x − n·ln 2), so that e^x = y·2^n. Returns y and n + 1.5·2^23, whose low
  /// mantissa bits hold n (no float-to-int conversion, which traps on NaN and blocks
  /// vectorising): shifted left by 23 they are n's exponent field.
  ///
  /// Every step is a fused multiply-add (one instruction, correctly rounded, so the bits are
  /// the same on every machine): n from x·log2 e rounded once; x − n·ln 2 with ln 2 in two
  /// parts, the first exact in the product (|n| ≤ 128 has 8 significant bits, 355/512 has 9);
  /// then Horner's rule on a near-minimax polynomial of e^r for |r| ≤ ln 2 / 2 (Chebyshev fit,
  /// error 2·10⁻⁹). Against e^x rounded from double precision, over every seventh float from 0
  /// to -87: at most 1 ulp apart, 0.007 ulp on average (the Cephes form it replaced, degree 7
  /// with the product rounded before the shift: 0.035 ulp, in 25 instructions a vector against
  /// 15).
  @inline(__always)
  private static func reduced(_ clamped: Float) -> (y: Float, shifted: Float) {
    let shifted = (12_582_912 as Float).addingProduct(clamped, 1.442_695_04)
    let n = shifted - 12_582_912
    var r = clamped.addingProduct(-n, 0.693_359_375)
    r = r.addingProduct(-n, -2.121_944_4e-4)
    var p: Float = 1.394_111_895_933_747_3e-3
    p = (8.375_134_319_067_001e-3 as Float).addingProduct(p, r)
    p = (4.166_635_125_875_473e-2 as Float).addingProduct(p, r)
    p = (1.666_641_533_374_786_4e-1 as Float).addingProduct(p, r)
    p = (0.5 as Float).addingProduct(p, r)
    p = (1 as Float).addingProduct(p, r)
    return ((1 as Float).addingProduct(p, r), shifted)
  }

  /// e^x for the arguments that cannot overflow: a softmax row after subtracting its maximum,
  /// the Gaussian density's -x²/2. The same polynomial as `exp`, but one exponent addition
  /// replaces its two-step scaling and its overflow branch, and one comparison serves the
  /// clamp and the zero below it. The bits equal `exp`'s from -86.6 (where 2^n stays normal)
  /// to 88; below -86.6 it gives 0 where `exp` gives at most 2.6e-38; above 88 it gives e^88,
  /// not `exp`'s growth to infinity. A NaN stays NaN.
  @inline(__always)
  package static func expNonPositive(_ x: Float) -> Float {
    let low = x < -86.6
    let (y, shifted) = reduced(low ? -86.6 : min(x, 88))
    // y is in [0.7, 1.5) and n in [-125, 127]: adding n to the exponent field is exact (the
    // 1.5·2^23 in `shifted` leaves only n's bits once shifted left by 23).
    let result = Float(bitPattern: y.bitPattern &+ (shifted.bitPattern << 23))
    return low ? 0 : result
  }

  /// tanh(x): Cephes' odd polynomial x + x³·P(x²) below |x| = 0.625, and
  /// (1 − e)/(1 + e) with e = e^(−2|x|) (at most 0.29, so nothing overflows) above it; within a
  /// few ulp of the C library's `tanhf`, which is a call per element (the PCM3 GRU's gates
  /// spent a fifth of a training step in `tanhf` and `expf`).
  @inline(__always)
  package static func tanh(_ x: Float) -> Float {
    let a = Swift.abs(x)
    let e = expNonPositive(-2 * a)
    let large = (1 - e) / (1 + e)
    let z = x * x
    var p: Float = -5.704_988_727_45e-3
    p = (2.063_908_879_54e-2 as Float).addingProduct(p, z)
    p = (-5.373_971_555_31e-2 as Float).addingProduct(p, z)
    p = (1.333_144_220_36e-1 as Float).addingProduct(p, z)
    p = (-3.333_328_194_22e-1 as Float).addingProduct(p, z)
    let small = x.addingProduct(p * z, x)
    return a < 0.625 ? small : (x < 0 ? -large : large)
  }

  /// The logistic function 1/(1 + e^−x) (`exp` overflows to +inf for x below −88.7, giving 0).
  @inline(__always)
  package static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

  /// erf(x) as x·P(x²)/Q(x²) on [-4, 4] (±1 outside), accurate to a few float32 ulp.
  @inline(__always)
  package static func erf(_ x: Float) -> Float {
    let c = min(max(x, -4), 4)
    let x2 = c * c
    var p: Float = -2.726_142_258_013_06e-10
    p = (2.770_681_424_959_02e-08 as Float).addingProduct(p, x2)
    p = (-2.101_024_020_825_08e-06 as Float).addingProduct(p, x2)
    p = (-5.692_506_394_623_46e-05 as Float).addingProduct(p, x2)
    p = (-7.349_906_303_268_55e-04 as Float).addingProduct(p, x2)
    p = (-2.954_599_808_540_25e-03 as Float).addingProduct(p, x2)
    p = (-1.609_603_332_624_15e-02 as Float).addingProduct(p, x2)
    var q: Float = -1.456_607_184_649_96e-05
    q = (-2.133_740_552_789_05e-04 as Float).addingProduct(q, x2)
    q = (-1.682_826_974_382_03e-03 as Float).addingProduct(q, x2)
    q = (-7.373_329_167_204_68e-03 as Float).addingProduct(q, x2)
    q = (-1.426_473_905_141_89e-02 as Float).addingProduct(q, x2)
    return c * p / q
  }
}
