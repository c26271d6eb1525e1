import Foundation
import NN
import SkeletonData
import TensorCore

/// Which tokens an encoder sees: `keep` `[B, K]` token indices in the order the encoder gets
/// them, `restore` `[B, L]` (for each position, the row of [visible; mask tokens] that goes
/// there — the decoder's input), and `mask` `[B, L]` (1 = hidden).
public struct TokenMask: Sendable {
  public let keep: Tensor
  public let restore: Tensor
  public let mask: Tensor

  /// Visible tokens per sequence.
  public var visibleCount: Int { keep.shape[1] }

  /// The masks of the sequences `rows`.
  func rows(_ rows: [Int]) throws -> TokenMask {
    TokenMask(
      keep: try keep.indexSelect(axis: 0, indices: rows),
      restore: try restore.indexSelect(axis: 0, indices: rows),
      mask: try mask.indexSelect(axis: 0, indices: rows))
  }
}

/// The maskings of methods.md §4 (MAE "argsort of scores" mechanics).
public enum Masking {
  /// `floor(L · (1 − ratio))` evaluated in double precision, as both references do
  /// (`1 − 0.9 = 0.09999999999999998`, so 750 tokens keep 74 and 40 keep 3).
  public static func keepCount(tokens: Int, ratio: Double) -> Int {
    Int((Double(tokens) * (1 - ratio)).rounded(.towardZero))
  }

  /// The mask that keeps the `keep` lowest-scoring tokens of each row of `scores` `[B][L]`,
  /// visible in ascending score order (a stable argsort, as `torch.argsort` gives for distinct
  /// scores).
  public static func fromScores(_ scores: [[Double]], keep: Int) throws -> TokenMask {
    guard let l = scores.first?.count, keep >= 0, keep <= l else {
      throw TensorError("mask", "cannot keep \(keep) of \(scores.first?.count ?? 0) tokens")
    }
    let b = scores.count
    guard scores.allSatisfy({ $0.count == l }) else {
      throw TensorError("mask", "every row of scores needs \(l) tokens")
    }
    // Each row's tokens in ascending score order, rows sorted on every thread. Sorting (score,
    // token) pairs runs the same comparisons as sorting tokens by their scores, without an
    // array lookup per comparison.
    var order = [Int](repeating: 0, count: b * l)
    order.withUnsafeMutableBufferPointer { buffer in
      guard let base = buffer.baseAddress else { return }  // rows of no tokens
      let sorted = SendablePointer(base)
      parallelChunks(b, grain: Swift.max(1, 1024 / Swift.max(l, 1))) { rows in
        for row in rows {
          var pairs = scores[row].enumerated().map { ($0.element, $0.offset) }
          pairs.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
          for (rank, (_, token)) in pairs.enumerated() { sorted.base[row * l + rank] = token }
        }
      }
    }
    var keepIndices = [Float](repeating: 0, count: b * keep)
    var restore = [Float](repeating: 0, count: b * l)
    var mask = [Float](repeating: 1, count: b * l)
    for row in 0..<b {
      for rank in 0..<l {
        let token = order[row * l + rank]
        restore[row * l + token] = Float(rank)
        if rank < keep {
          keepIndices[row * keep + rank] = Float(token)
          mask[row * l + token] = 0
        }
      }
    }
    return TokenMask(
      keep: try Tensor(shape: [b, keep], scalars: keepIndices),
      restore: try Tensor(shape: [b, l], scalars: restore),
      mask: try Tensor(shape: [b, l], scalars: mask))
  }

  /// §4.1: scores from U(0, 1).
  public static func random(
    batch: Int, tokens: Int, ratio: Double, generator: inout RandomGenerator
  ) throws
    -> TokenMask
  {
    let scores = (0..<batch).map { _ in (0..<tokens).map { _ in generator.nextDouble() } }
    return try fromScores(scores, keep: keepCount(tokens: tokens, ratio: ratio))
  }

  /// Per-token mean of |P[t] − P[t−1]| over the `u·C` values of each segment (§4.2 step 2),
  /// with the first segment copying the second: `[B, TP·V]`.
  static func segmentMotion(_ x: Tensor, segment u: Int) throws -> [[Double]] {
    let (b, t, v, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let tp = t / u
    let values = x.contiguous().scalars
    var result = [[Double]](repeating: [Double](repeating: 0, count: tp * v), count: b)
    for s in 0..<b {
      for p in 1..<max(tp, 1) {
        for j in 0..<v {
          var total = 0.0
          for k in 0..<u {
            for ch in 0..<c {
              let now = values[((s * t + p * u + k) * v + j) * c + ch]
              let before = values[((s * t + (p - 1) * u + k) * v + j) * c + ch]
              total += Double(abs(now - before))
            }
          }
          result[s][p * v + j] = total / Double(u * c)
        }
      }
      if tp > 1 { for j in 0..<v { result[s][j] = result[s][v + j] } }
    }
    return result
  }

  /// MAMP's motion-aware masking (§4.2) of `x` `[B, T, V, C]`: `π = softmax(m / (τ·max m +
  /// 1e-10))`, Gumbel scores `log π − log(−log(U + 1e-10) + 1e-10)`, the lowest kept — tokens
  /// that move more are hidden more often. τ ≤ 0 falls back to random masking.
  public static func motionAware(
    _ x: Tensor, segment: Int, ratio: Double, temperature: Double, generator: inout RandomGenerator
  ) throws -> TokenMask {
    guard x.rank == 4, x.shape[1] % segment == 0 else {
      throw TensorError(
        "mask",
        "motion masking needs [B, T, V, C] with T divisible by \(segment), got \(shapeString(x.shape))"
      )
    }
    let tokens = x.shape[1] / segment * x.shape[2]
    guard temperature > 0 else {
      return try random(batch: x.shape[0], tokens: tokens, ratio: ratio, generator: &generator)
    }
    let motion = try segmentMotion(x, segment: segment)
    let scores = motion.map { m -> [Double] in
      let scale = temperature * (m.max() ?? 0) + 1e-10
      let logits = m.map { $0 / scale }
      let peak = logits.max() ?? 0
      let logSum = log(logits.reduce(0) { $0 + exp($1 - peak) }) + peak
      return logits.map { logit in
        let u = generator.nextDouble()
        return (logit - logSum) - log(-log(u + 1e-10) + 1e-10)
      }
    }
    return try fromScores(scores, keep: keepCount(tokens: tokens, ratio: ratio))
  }

  /// Skeleton2vec's motion-aware tube masking (§4.3) of `x` `[B, T, V, C]`: in each tube of
  /// `length` segments the same `floor(V·(1 − ratio))` joints are visible in every segment,
  /// chosen by the lowest `U(0, 1) + motion · intensity`; the encoder sees them segment by
  /// segment. `restore` places the tokens as `placement` says (§3).
  public static func tube(
    _ x: Tensor, segment: Int, ratio: Double, length: Int, motion beta: Double,
    placement: Decoder.Restore = .intended, generator: inout RandomGenerator
  ) throws -> TokenMask {
    guard x.rank == 4, x.shape[1] % segment == 0 else {
      throw TensorError(
        "mask",
        "tube masking needs [B, T, V, C] with T divisible by \(segment), got \(shapeString(x.shape))"
      )
    }
    let (b, v) = (x.shape[0], x.shape[2])
    let tp = x.shape[1] / segment
    guard length > 0, tp % length == 0 else {
      throw TensorError("mask", "tube length \(length) does not divide the \(tp) segments")
    }
    let kept = keepCount(tokens: v, ratio: ratio)
    let tubes = tp / length
    // Intensity: |motion| averaged over each segment's u·C values, then over the tube's
    // segments, divided by the tube's maximum.
    let c = x.shape[3]
    let absMotion = try Transforms.motion(x).abs().contiguous().scalars  // [B, T, V, C]
    var keepIndices = [Float]()
    var ranks = [Float](repeating: 0, count: b * tp * v)
    var mask = [Float](repeating: 1, count: b * tp * v)
    for s in 0..<b {
      for tube in 0..<tubes {
        var intensity = [Double](repeating: 0, count: v)
        for p in (tube * length)..<((tube + 1) * length) {
          for k in 0..<segment {
            for j in 0..<v {
              for ch in 0..<c {
                intensity[j] += Double(
                  absMotion[((s * x.shape[1] + p * segment + k) * v + j) * c + ch])
              }
            }
          }
        }
        let scale = (intensity.max() ?? 0) + 1e-6 * Double(length * segment * c)
        let scores = intensity.map { generator.nextDouble() + beta * $0 / scale }
        let order = (0..<v).sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : $0 < $1 }
        for p in (tube * length)..<((tube + 1) * length) {
          for (rank, j) in order.enumerated() {
            ranks[(s * tp + p) * v + j] = Float(rank)
            if rank < kept {
              keepIndices.append(Float(p * v + j))
              mask[(s * tp + p) * v + j] = 0
            }
          }
        }
      }
    }
    let rowRestore = try Tensor(shape: [b, tp, v], scalars: ranks)
    return TokenMask(
      keep: try Tensor(shape: [b, tp * kept], scalars: keepIndices),
      restore: try Decoder.tubeRestoreIndex(
        rowRestore: rowRestore, keptPerRow: kept, mode: placement),
      mask: try Tensor(shape: [b, tp * v], scalars: mask))
  }
}
