import Foundation
import TensorCore

/// Class labels and frame counts as files give them, checked before they size or index
/// anything: finite, non-negative integers, labels below `maximum`.
public enum Labels {
  /// The largest number of classes a dataset may have (NTU-120 has 120, Kinetics 400); a label
  /// at or above it is taken for a broken file, not a class table to allocate.
  public static let maximum = 100_000

  /// `value` as a label; `context` names the file (and the entry) in the error.
  public static func label(_ value: Double, _ context: @autoclosure () -> String) throws -> Int {
    guard value.isFinite, value == value.rounded(), value >= 0, value < Double(maximum) else {
      throw TensorError(
        "dataset",
        "\(context()): label \(value) is not an integer in 0..<\(maximum)")
    }
    return Int(value)
  }

  /// An integer label, checked as `label(_:_:)` does.
  public static func label(_ value: Int, _ context: @autoclosure () -> String) throws -> Int {
    guard value >= 0, value < maximum else {
      throw TensorError("dataset", "\(context()): label \(value) is not in 0..<\(maximum)")
    }
    return value
  }

  /// `value` as a count (frames, lengths): a finite, non-negative integer.
  public static func count(_ value: Double, _ context: @autoclosure () -> String) throws -> Int {
    guard value.isFinite, value == value.rounded(), value >= 0, value < 9e15 else {
      throw TensorError(
        "dataset", "\(context()): \(value) is not a non-negative integer count")
    }
    return Int(value)
  }

  /// Generic class names for labels `0..<(largest + 1)`: the table is sized by the labels
  /// present, which `label(_:_:)` has bounded.
  static func names(for labels: [Int]) -> [String] {
    (0..<((labels.max() ?? -1) + 1)).map { "class \($0)" }
  }
}
