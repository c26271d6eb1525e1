import Foundation
import ScriptCore
import TensorCore

/// A tensor as the language holds it: a reference to a value, so that `t.requires_grad = true`
/// and `t[0] = 1` act on the variable's tensor.
final class TensorObject: ScriptObject {
  var tensor: Tensor

  init(_ tensor: Tensor) { self.tensor = tensor }

  var typeName: String { "Tensor" }

  func display() -> String { TensorDisplay.format(tensor) }
}

extension Value {
  /// Wraps a tensor as a script value.
  static func tensor(_ t: Tensor) -> Value { .object(TensorObject(t)) }
}

/// NumPy-style printing: a `Tensor[2, 3] f32` header (with `requires_grad` when set), then
/// nested rows with long axes elided (`…`); above `threshold` elements only the shape and
/// summary statistics. Integer-valued tensors (labels, counts) print without `.0`.
enum TensorDisplay {
  /// What `print_options` sets.
  struct Options: Sendable, Equatable {
    var threshold = 1000
    var edge = 3
    /// Digits after the point; nil prints each value in the shortest form that reads back.
    var precision: Int?
  }

  /// Set by `print_options`, read when a tensor is shown. They belong to the thread that runs
  /// the interpreter (a session runs its statements on one thread), so two sessions in one
  /// process — tests side by side — do not see each other's options.
  static var options: Options {
    get { Thread.current.threadDictionary[key] as? Options ?? Options() }
    set { Thread.current.threadDictionary[key] = newValue }
  }
  private static let key = "skellab.print_options"

  static func format(_ t: Tensor) -> String {
    let options = self.options
    let header =
      "Tensor[" + t.shape.map(String.init).joined(separator: ", ") + "] f32"
      + (t.requiresGrad ? " requires_grad" : "")
    let values = t.scalars
    if t.count == 0 { return header + "\n[]" }
    if t.count > options.threshold {
      let n = Double(values.count)
      let mean = values.reduce(0.0) { $0 + Double($1) } / n
      let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n
      let low = values.min() ?? 0
      let high = values.max() ?? 0
      return header
        + "  mean \(number(mean))  std \(number(variance.squareRoot()))  min \(element(low))  max \(element(high))"
    }
    let integral = values.allSatisfy { $0.isFinite && $0 == $0.rounded() && abs($0) < 16_777_216 }
    let texts = values.map { x -> String in
      if integral { return String(Int(x)) }
      if let digits = options.precision, x.isFinite { return String(format: "%.\(digits)f", x) }
      return element(x)
    }
    let width = texts.map(\.count).max() ?? 1
    if t.rank == 0 { return header + "\n" + texts[0] }
    let strides = stridesOf(t.shape)
    let edgeItems = options.edge
    func render(_ axis: Int, _ offset: Int, _ indent: Int) -> String {
      let n = t.shape[axis]
      let shown: [Int?] =
        n > 2 * edgeItems ? Array(0..<edgeItems) + [nil] + Array((n - edgeItems)..<n) : Array(0..<n)
      if axis == t.rank - 1 {
        let items = shown.map { i -> String in
          guard let i else { return "…" }
          let text = texts[offset + i]
          return String(repeating: " ", count: width - text.count) + text
        }
        return "[" + items.joined(separator: ", ") + "]"
      }
      let separator =
        ",\n" + String(repeating: "\n", count: max(0, t.rank - axis - 2))
        + String(repeating: " ", count: indent + 1)
      let rows = shown.map { i -> String in
        guard let i else { return "…" }
        return render(axis + 1, offset + i * strides[axis], indent + 1)
      }
      return "[" + rows.joined(separator: separator) + "]"
    }
    return header + "\n" + render(0, 0, 0)
  }

  static func stridesOf(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var running = 1
    for axis in stride(from: shape.count - 1, through: 0, by: -1) {
      strides[axis] = running
      running *= shape[axis]
    }
    return strides
  }

  /// One float32 element: shortest text that reads back as the same float32.
  static func element(_ x: Float) -> String {
    if x.isNaN { return "nan" }
    if x.isInfinite { return x < 0 ? "-inf" : "inf" }
    var text = "\(x)"
    if !text.contains(".") && !text.contains("e") { text += ".0" }
    return text
  }

  static func number(_ x: Double) -> String { String(format: "%.6g", x) }
}
