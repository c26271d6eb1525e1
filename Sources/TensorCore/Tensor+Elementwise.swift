import Foundation

// Element-wise arithmetic with NumPy broadcasting, comparisons, selection and unary maths.
// Each primitive's forward is followed by its gradient.

extension Tensor {
  /// Applies `f` to broadcast pairs of `a` and `b` (no gradient recording).
  package static func broadcastKernel(
    _ a: Tensor, _ b: Tensor, op: String, _ f: @escaping @Sendable (Float, Float) -> Float
  ) throws -> Tensor {
    try broadcastKernel(a, b, op: op, BinaryClosure(f))
  }

  /// Applies `f` to broadcast pairs of `a` and `b` (no gradient recording), specialised on `F`.
  package static func broadcastKernel<F: BinaryFunction>(
    _ a: Tensor, _ b: Tensor, op: String, _ f: F
  ) throws -> Tensor {
    if a.shape == b.shape, a.isContiguous, b.isContiguous {
      return Tensor(validShape: a.shape) { out in
        Kernels.zip(a.storage.base + a.offset, b.storage.base + b.offset, out, count: a.count, f)
      }
    }
    let shape = try Shape.broadcast(a.shape, b.shape, op: op)
    let sa = Shape.broadcastStrides(shape: a.shape, strides: a.strides, to: shape)
    let sb = Shape.broadcastStrides(shape: b.shape, strides: b.strides, to: shape)
    let (pa, pb) = (SendablePointer(a.storage.base), SendablePointer(b.storage.base))
    return Tensor(validShape: shape) { out in
      let target = SendablePointer(out)
      forEachRunInParallel(shape: shape, strides: [sa, sb], offsets: [a.offset, b.offset]) {
        offsets, steps, n, position in
        let x = pa.base + offsets[0]
        let y = pb.base + offsets[1]
        let o = target.base + position
        switch (steps[0], steps[1]) {
        case (1, 1): for j in 0..<n { o[j] = f(x[j], y[j]) }
        case (1, 0):
          let s = y[0]
          for j in 0..<n { o[j] = f(x[j], s) }
        case (0, 1):
          let s = x[0]
          for j in 0..<n { o[j] = f(s, y[j]) }
        default:
          let (u, v) = (steps[0], steps[1])
          for j in 0..<n { o[j] = f(x[j * u], y[j * v]) }
        }
      }
    }
  }

  /// Sums a broadcast gradient back to `target` (the shape of the input it flows to).
  package func sum(toShape target: [Int]) throws -> Tensor {
    if shape == target { return self }
    let lead = rank - target.count
    var axes = Array(0..<Swift.max(lead, 0))
    for i in 0..<target.count where target[i] == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
    let reduced = axes.isEmpty ? self : try sum(axes: axes, keepDim: true)
    return try reduced.reshaped(target)
  }

  /// Element-wise sum with broadcasting.
  public static func + (a: Tensor, b: Tensor) throws -> Tensor {
    let out = try broadcastKernel(a, b, op: "add", AddFunction())
    // The backward needs the shapes alone: capturing a and b would keep their buffers.
    let (aShape, bShape) = (a.shape, b.shape)
    return Autograd.record("add", out, [a, b]) { g in
      [try g.sum(toShape: aShape), try g.sum(toShape: bShape)]
    }
  }

  /// Element-wise difference with broadcasting.
  public static func - (a: Tensor, b: Tensor) throws -> Tensor {
    let out = try broadcastKernel(a, b, op: "sub", SubtractFunction())
    let (aShape, bShape) = (a.shape, b.shape)
    return Autograd.record("sub", out, [a, b]) { g in
      [try g.sum(toShape: aShape), try (-g).sum(toShape: bShape)]
    }
  }

  /// Element-wise product with broadcasting.
  public static func * (a: Tensor, b: Tensor) throws -> Tensor {
    let out = try broadcastKernel(a, b, op: "mul", MultiplyFunction())
    // Each side's gradient needs the other side's values: keep only those that will be used.
    let (aShape, bShape) = (a.shape, b.shape)
    let y = a.requiresGrad ? b.detached() : nil
    let x = b.requiresGrad ? a.detached() : nil
    return Autograd.record("mul", out, [a, b]) { g in
      [
        try y.map { try (g * $0).sum(toShape: aShape) },
        try x.map { try (g * $0).sum(toShape: bShape) },
      ]
    }
  }

  /// Element-wise quotient with broadcasting.
  public static func / (a: Tensor, b: Tensor) throws -> Tensor {
    let out = try broadcastKernel(a, b, op: "div", DivideFunction())
    let (aShape, bShape, wantA) = (a.shape, b.shape, a.requiresGrad)
    let y = b.detached()
    let x = b.requiresGrad ? a.detached() : nil
    return Autograd.record("div", out, [a, b]) { g in
      [
        wantA ? try (g / y).sum(toShape: aShape) : nil,
        try x.map { try (-(g * $0) / (y * y)).sum(toShape: bShape) },
      ]
    }
  }

  /// `a` raised to the power `b`, element-wise with broadcasting.
  public static func pow(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    let out = try broadcastKernel(a, b, op: "pow") { Foundation.pow($0, $1) }
    let (x, y, z) = (a.detached(), b.detached(), out.detached())
    return Autograd.record("pow", out, [a, b]) { g in
      [
        a.requiresGrad
          ? try (g * y * broadcastKernel(x, y - 1, op: "pow") { Foundation.pow($0, $1) })
            .sum(toShape: a.shape) : nil,
        b.requiresGrad
          ? try (g * z * x.map { $0 > 0 ? Foundation.log($0) : ($0 == 0 ? 0 : .nan) })
            .sum(toShape: b.shape) : nil,
      ]
    }
  }

  /// Element-wise negation.
  public static prefix func - (a: Tensor) -> Tensor {
    let out = a.map(AffineFunction(scale: -1, shift: 0))
    return Autograd.record("neg", out, [a]) { g in [-g] }
  }

  /// Adds a scalar to every element.
  public static func + (a: Tensor, s: Float) -> Tensor {
    Autograd.record("add", a.map(AffineFunction(scale: 1, shift: s)), [a]) { g in [g] }
  }
  /// Adds a scalar to every element.
  public static func + (s: Float, a: Tensor) -> Tensor { a + s }
  /// Subtracts a scalar from every element.
  public static func - (a: Tensor, s: Float) -> Tensor { a + (-s) }
  /// Subtracts every element from a scalar.
  public static func - (s: Float, a: Tensor) -> Tensor { -a + s }

  /// Multiplies every element by a scalar.
  public static func * (a: Tensor, s: Float) -> Tensor {
    Autograd.record("mul", a.map(AffineFunction(scale: s, shift: 0)), [a]) { g in [g * s] }
  }
  /// Multiplies every element by a scalar.
  public static func * (s: Float, a: Tensor) -> Tensor { a * s }
  /// Divides every element by a scalar.
  public static func / (a: Tensor, s: Float) -> Tensor {
    Autograd.record("div", a.map(AffineFunction(scale: 1 / s, shift: 0)), [a]) { g in [g / s] }
  }
  /// Divides a scalar by every element.
  public static func / (s: Float, a: Tensor) -> Tensor {
    let x = a.detached()
    let out = a.map { s / $0 }
    return Autograd.record("div", out, [a]) { g in
      [try g * x.map { -s / ($0 * $0) }]
    }
  }

  /// Applies `f` to every element (no gradient recording); the result is contiguous.
  package func map(_ f: @escaping @Sendable (Float) -> Float) -> Tensor { map(UnaryClosure(f)) }

  /// Applies `f` to every element (no gradient recording), specialised on `F`.
  package func map<F: UnaryFunction>(_ f: F) -> Tensor {
    let source = contiguous()
    return Tensor(validShape: shape) { out in
      Kernels.map(source.storage.base + source.offset, out, count: count, f)
    }
  }

  /// A unary op: `forward` per element, and the gradient computed from the input, the output
  /// and the upstream gradient per element.
  package func unary(
    _ op: String, _ forward: @escaping @Sendable (Float) -> Float,
    backward: @escaping @Sendable (_ x: Float, _ y: Float, _ g: Float) -> Float
  ) -> Tensor {
    unary(op, UnaryClosure(forward), GradientClosure(backward))
  }

  /// A unary op specialised on its function types, so both loops vectorise.
  package func unary<F: UnaryFunction, G: GradientFunction>(_ op: String, _ forward: F, _ rule: G)
    -> Tensor
  {
    let out = map(forward)
    let (x, y) = (detached().contiguous(), out)
    return Autograd.record(op, out, [self]) { g in
      let gc = g.contiguous()
      let dx = Tensor(validShape: x.shape) { dst in
        Kernels.gradient(
          x.storage.base + x.offset, y.storage.base + y.offset, gc.storage.base + gc.offset, dst,
          count: x.count, rule)
      }
      return [dx]
    }
  }

  /// e^x, element-wise (vectorised).
  public func exp() -> Tensor {
    unary("exp", ExpFunction(), ExpGradient())
  }
  /// Natural logarithm, element-wise.
  public func log() -> Tensor {
    unary("log", { Foundation.log($0) }, backward: { x, _, g in g / x })
  }
  /// Square root, element-wise.
  public func sqrt() -> Tensor {
    unary("sqrt", { $0.squareRoot() }, backward: { _, y, g in g * 0.5 / y })
  }
  /// Absolute value, element-wise (gradient 0 at 0, as PyTorch).
  public func abs() -> Tensor {
    unary("abs", { Swift.abs($0) }, backward: { x, _, g in x > 0 ? g : (x < 0 ? -g : 0) })
  }
  /// Hyperbolic tangent, element-wise.
  public func tanh() -> Tensor {
    unary("tanh", TanhFunction(), TanhGradient())
  }
  /// Logistic sigmoid 1/(1+e^-x), element-wise.
  public func sigmoid() -> Tensor {
    unary("sigmoid", SigmoidFunction(), SigmoidGradient())
  }
  /// max(x, 0), element-wise (gradient 0 at 0, as PyTorch).
  public func relu() -> Tensor {
    unary("relu", ReluFunction(), ReluGradient())
  }
  /// x raised to a scalar power, element-wise.
  public func pow(_ exponent: Float) -> Tensor {
    if exponent == 2 {
      return unary("pow", { $0 * $0 }, backward: { x, _, g in 2 * x * g })
    }
    return unary(
      "pow", { Foundation.pow($0, exponent) },
      backward: { x, _, g in exponent == 0 ? 0 : g * exponent * Foundation.pow(x, exponent - 1) })
  }
  /// Limits every element to `[min, max]` (either bound optional). The gradient passes where the
  /// input lies inside the closed interval, as in PyTorch.
  public func clamp(min low: Float? = nil, max high: Float? = nil) -> Tensor {
    let lo = low ?? -.infinity
    let hi = high ?? .infinity
    return unary(
      "clamp", { Swift.min(Swift.max($0, lo), hi) },
      backward: { x, _, g in x >= lo && x <= hi ? g : 0 })
  }

  /// Exact GELU, `0.5·x·(1 + erf(x/√2))`, with a vectorised erf.
  public func gelu() -> Tensor {
    unary("gelu", GeluFunction(), GeluGradient())
  }

  /// GELU written over this tensor's own buffer when no gradient is recorded through it and the
  /// buffer is its alone (a product's fresh output in inference or a teacher's pass): one
  /// buffer instead of two, the same values as `gelu()`. Otherwise `self = gelu()`.
  public mutating func applyGELU() {
    guard node == nil, isContiguous, offset == 0, storage.count == count,
      isKnownUniquelyReferenced(&storage)
    else {
      self = gelu()
      return
    }
    Kernels.apply(storage.base, count: count, GeluFunction())
  }

  // MARK: Comparisons (results are 0/1 tensors; no gradient)

  /// 1 where `a == b`, else 0 (broadcasting).
  public static func equal(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    try broadcastKernel(a, b, op: "eq") { $0 == $1 ? 1 : 0 }
  }
  /// 1 where `a != b`, else 0 (broadcasting).
  public static func notEqual(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    try broadcastKernel(a, b, op: "ne") { $0 != $1 ? 1 : 0 }
  }
  /// 1 where `a < b`, else 0 (broadcasting).
  public static func less(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    try broadcastKernel(a, b, op: "lt") { $0 < $1 ? 1 : 0 }
  }
  /// 1 where `a <= b`, else 0 (broadcasting).
  public static func lessEqual(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    try broadcastKernel(a, b, op: "le") { $0 <= $1 ? 1 : 0 }
  }
  /// 1 where `a > b`, else 0 (broadcasting).
  public static func greater(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    try broadcastKernel(a, b, op: "gt") { $0 > $1 ? 1 : 0 }
  }
  /// 1 where `a >= b`, else 0 (broadcasting).
  public static func greaterEqual(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    try broadcastKernel(a, b, op: "ge") { $0 >= $1 ? 1 : 0 }
  }

  // MARK: Selection

  /// Takes `a` where `condition` is non-zero and `b` elsewhere, broadcasting all three.
  /// Gradients flow to `a` and `b` through the positions each was taken from.
  public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
    let shape = try Shape.broadcast(
      Shape.broadcast(condition.shape, a.shape, op: "where"), b.shape, op: "where")
    let mask = try broadcastKernel(
      condition, Tensor.full(shape, 0), op: "where"
    ) { c, _ in c != 0 ? 1 : 0 }
    let taken = try broadcastKernel(mask, a, op: "where") { m, x in m != 0 ? x : 0 }
    let out = try broadcastKernel(
      taken,
      try broadcastKernel(mask, b, op: "where") { m, y in
        m != 0 ? 0 : y
      }, op: "where", +)
    return Autograd.record("where", out, [a, b]) { g in
      [
        a.requiresGrad ? try (g * mask).sum(toShape: a.shape) : nil,
        b.requiresGrad ? try (g * (1 - mask)).sum(toShape: b.shape) : nil,
      ]
    }
  }

  /// This tensor with `value` wherever `mask` (broadcast to this shape) is non-zero.
  public func maskedFill(_ mask: Tensor, _ value: Float) throws -> Tensor {
    let shape = try Shape.broadcast(self.shape, mask.shape, op: "masked_fill")
    guard shape == self.shape else {
      throw TensorError(
        "masked_fill",
        "mask of shape \(shapeString(mask.shape)) does not broadcast to \(shapeString(self.shape))")
    }
    return try Tensor.where(mask, Tensor.full([], value), self)
  }
}

package struct ExpFunction: UnaryFunction {
  package init() {}
  @inline(__always) package func callAsFunction(_ x: Float) -> Float { VectorMath.exp(x) }
}
struct ExpGradient: GradientFunction {
  @inline(__always) func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float { g * y }
}
struct TanhFunction: UnaryFunction {
  @inline(__always) func callAsFunction(_ x: Float) -> Float { VectorMath.tanh(x) }
}
struct TanhGradient: GradientFunction {
  @inline(__always) func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float {
    g * (1 - y * y)
  }
}
struct SigmoidFunction: UnaryFunction {
  @inline(__always) func callAsFunction(_ x: Float) -> Float { 1 / (1 + VectorMath.exp(-x)) }
}
struct SigmoidGradient: GradientFunction {
  @inline(__always) func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float {
    g * y * (1 - y)
  }
}
struct ReluFunction: UnaryFunction {
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x > 0 ? x : 0 }
}
struct ReluGradient: GradientFunction {
  @inline(__always) func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float {
    x > 0 ? g : 0
  }
}
extension Kernels {
  /// GELU's backward with its forward recomputed in the same pass, from one erf per element:
  /// `activation[i] = gelu(x[i])` and `gradient[i] *= gelu'(x[i])`, in place, with the bits of
  /// `GeluFunction` and `GeluGradient` (the same three functions below).
  package static func geluBackward(
    _ x: UnsafePointer<Float>, gradient: UnsafeMutablePointer<Float>,
    activation: UnsafeMutablePointer<Float>, count: Int
  ) {
    let (px, pg, pa) = (
      SendablePointer(UnsafeMutablePointer(mutating: x)), SendablePointer(gradient),
      SendablePointer(activation)
    )
    parallelChunks(count) { range in
      let (x, g, a) = (px.base, pg.base, pa.base)
      for i in range {
        let v = x[i]
        let e = VectorMath.geluErf(v)
        a[i] = VectorMath.gelu(v, erf: e)
        g[i] = g[i] * VectorMath.geluSlope(v, erf: e)
      }
    }
  }
}

extension Kernels {
  /// GELU's backward over x's own buffer, with the product's gradient in `gradient`, which
  /// then takes the activation: `x[i] = gradient[i]·gelu'(x[i])` and `gradient[i] = gelu(x[i])`
  /// (the old x), with the bits of `geluBackward(_:gradient:activation:)`.
  package static func geluBackward(
    replacing x: UnsafeMutablePointer<Float>, exchanging gradient: UnsafeMutablePointer<Float>,
    count: Int
  ) {
    let (px, pg) = (SendablePointer(x), SendablePointer(gradient))
    parallelChunks(count) { range in
      let (x, g) = (px.base, pg.base)
      for i in range {
        let v = x[i]
        let e = VectorMath.geluErf(v)
        x[i] = g[i] * VectorMath.geluSlope(v, erf: e)
        g[i] = VectorMath.gelu(v, erf: e)
      }
    }
  }
}

extension VectorMath {
  /// erf(x/√2), the part GELU and its derivative share.
  @inline(__always) static func geluErf(_ x: Float) -> Float { erf(x * 0.707_106_781_186_547_5) }
  /// GELU from `e = geluErf(x)`: `0.5·x·(1 + e)`.
  @inline(__always) static func gelu(_ x: Float, erf e: Float) -> Float { 0.5 * x * (1 + e) }
  /// d/dx GELU = Φ(x) + x·φ(x), from `e = geluErf(x)`.
  @inline(__always) static func geluSlope(_ x: Float, erf e: Float) -> Float {
    let cdf = 0.5 * (1 + e)
    let pdf = expNonPositive(-0.5 * x * x) * 0.398_942_280_401_432_7
    return cdf + x * pdf
  }
}
/// Exact GELU, `0.5·x·(1 + erf(x/√2))`.
struct GeluFunction: UnaryFunction {
  @inline(__always) func callAsFunction(_ x: Float) -> Float {
    VectorMath.gelu(x, erf: VectorMath.geluErf(x))
  }
}
/// d/dx GELU = Φ(x) + x·φ(x).
struct GeluGradient: GradientFunction {
  @inline(__always) func callAsFunction(_ x: Float, _ y: Float, _ g: Float) -> Float {
    g * VectorMath.geluSlope(x, erf: VectorMath.geluErf(x))
  }
}
