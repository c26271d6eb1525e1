import Foundation
import SkeletonData
import TensorCore

/// MAMP's regression target and loss (methods.md §5).
public enum MotionTarget {
  /// The motion `x[t+1] − x[t]` (last frame 0) of `[B, T, V, C]`, each token's segment flattened
  /// (u, c) frame-major: `[B, TP·V, u·C]`; with `normalize`, each token standardised with the
  /// **unbiased** variance: `(y − mean)/√(var + 1e-6)`. `motion: false` gives the positions (MAE).
  public static func target(
    _ x: Tensor, segment u: Int, motion: Bool = true, normalize: Bool = true
  ) throws
    -> Tensor
  {
    guard x.rank == 4, x.shape[1] % u == 0 else {
      throw TensorError(
        "target", "expects [B, T, V, C] with T divisible by \(u), got \(shapeString(x.shape))")
    }
    let (b, t, v, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let source = motion ? try Transforms.motion(x) : x
    let y = try source.reshaped([b, t / u, u, v, c]).permuted([0, 1, 3, 2, 4]).contiguous()
      .reshaped([b, t / u * v, u * c])
    guard normalize else { return y }
    let mean = try y.mean(axes: [-1], keepDim: true)
    let variance = try y.variance(axes: [-1], keepDim: true, unbiased: true)
    return try (y - mean) / (variance + 1e-6).sqrt()
  }

  /// The per-token mean squared error averaged over the hidden tokens (`mask` 1):
  /// `Σ mask·mean_c((pred − target)²) / Σ mask`.
  public static func maskedLoss(_ prediction: Tensor, _ target: Tensor, mask: Tensor) throws
    -> Tensor
  {
    guard prediction.shape == target.shape, mask.shape == Array(prediction.shape.dropLast()) else {
      throw TensorError(
        "masked_mse",
        "prediction \(shapeString(prediction.shape)), target \(shapeString(target.shape)) and mask \(shapeString(mask.shape)) do not fit"
      )
    }
    let d = try prediction - target
    let perToken = try (d * d).mean(axes: [-1])
    let hidden = try mask.sum().item()
    guard hidden > 0 else { throw TensorError("masked_mse", "the mask hides no token") }
    return try (perToken * mask).sum() * (1 / hidden)
  }
}

/// Skeleton2vec's contextual targets (methods.md §6).
public enum ContextualTarget {
  /// How each teacher layer is normalised before averaging.
  public enum LayerNormalization: String, Sendable, CaseIterable {
    /// Per sequence and channel over the tokens (the official NTU configs).
    case instanceNorm = "instance"
    /// Per token over the channels (the early variant).
    case layerNorm = "layer"
  }

  /// The average of the last `topK` hidden states `[B, L, D]`, each normalised (biased variance,
  /// eps 1e-5, no affine), then layer-normalised over channels when `normalizeTargets`. The
  /// targets are constants: no gradient flows back into the hidden states.
  public static func build(
    hidden: [Tensor], topK: Int, perLayer: LayerNormalization = .instanceNorm, eps: Float = 1e-5,
    normalizeTargets: Bool = true
  ) throws -> Tensor {
    guard topK > 0, topK <= hidden.count else {
      throw TensorError("targets", "top_k \(topK) is outside 1...\(hidden.count) teacher layers")
    }
    let average = try Tensor.meanOfStandardized(
      Array(hidden.suffix(topK)), over: perLayer == .instanceNorm ? .tokens : .channels, eps: eps)
    return normalizeTargets ? try average.layerNorm(eps: eps) : average
  }
}
