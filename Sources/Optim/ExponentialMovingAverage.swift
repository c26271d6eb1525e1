import NN
import TensorCore

/// An EMA teacher: `θ_t ← θ_t + (1 − d)·(θ_s − θ_t)` (= `d·θ_t + (1 − d)·θ_s`) for every
/// parameter the teacher and the student share by name.
public enum ExponentialMovingAverage {
  /// Copies the student's parameters into the teacher (the teacher starts as an exact copy)
  /// and freezes the teacher.
  public static func copy(from student: Module, to teacher: Module) throws {
    try teacher.load(
      Dictionary(uniqueKeysWithValues: student.stateDict().map { ($0.name, $0.tensor) }))
    teacher.setFrozen(true)
  }

  /// One EMA update with `1 − d` = `oneMinusDecay`.
  public static func update(teacher: Module, student: Module, oneMinusDecay: Double) throws {
    let sources = Dictionary(
      uniqueKeysWithValues: student.namedParameters().map { ($0.name, $0.parameter) })
    let w = Float(oneMinusDecay)
    for (name, target) in teacher.namedParameters() {
      guard let source = sources[name] else {
        throw TensorError("ema", "the student has no parameter \(name)")
      }
      guard source.value.shape == target.value.shape else {
        throw TensorError(
          "ema",
          "\(name): teacher \(shapeString(target.value.shape)), student "
            + shapeString(source.value.shape))
      }
      let s = source.value.contiguous()
      s.withUnsafeBufferPointer { ss in
        target.value.withUnsafeMutableBufferPointer { ts in
          guard let sb = ss.baseAddress, let tb = ts.baseAddress else { return }  // no elements
          Kernels.movingAverage(tb, toward: sb, count: ts.count, weight: w)
        }
      }
    }
  }
}
