/// An error a user or a file can cause: a shape, an axis, an argument or a file that is wrong.
///
/// The message starts with the op in brackets and shows the actual shapes, for example
/// `[matmul] [32, 128] @ [64, 10]: inner dimensions 128 and 64 differ`.
public struct TensorError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The op or reader that failed (`matmul`, `reshape`, `safetensors`).
  public let op: String
  /// What went wrong, with the shapes, axes or values involved.
  public let message: String

  /// Creates an error for `op` with a message that names the shapes involved.
  public init(_ op: String, _ message: String) {
    self.op = op
    self.message = message
  }

  public var description: String { "[\(op)] \(message)" }
}

/// Formats a shape as `[2, 3]`, the form every error message uses.
package func shapeString(_ shape: [Int]) -> String {
  "[" + shape.map(String.init).joined(separator: ", ") + "]"
}
