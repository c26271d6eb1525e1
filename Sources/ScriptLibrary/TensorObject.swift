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

/// NumPy-style printing: a `Tensor[2, 3] f32` header, then nested rows with long axes elided
/// (`…`); above 1000 elements only the shape and summary statistics.
enum TensorDisplay {
  static let summaryThreshold = 1000
  static let edgeItems = 3

  static func format(_ t: Tensor) -> String {
    let header = "Tensor[" + t.shape.map(String.init).joined(separator: ", ") + "] f32"
    let values = t.scalars
    if t.count == 0 { return header + "\n[]" }
    if t.count > summaryThreshold {
      let n = Double(values.count)
      let mean = values.reduce(0.0) { $0 + Double($1) } / n
      let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n
      let low = values.min() ?? 0
      let high = values.max() ?? 0
      return header
        + "  mean \(number(mean))  std \(number(variance.squareRoot()))  min \(element(low))  max \(element(high))"
    }
    let texts = values.map(element)
    let width = texts.map(\.count).max() ?? 1
    if t.rank == 0 { return header + "\n" + texts[0] }
    let strides = stridesOf(t.shape)
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
