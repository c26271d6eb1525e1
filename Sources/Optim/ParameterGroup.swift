import Foundation
import NN
import TensorCore

/// Parameters that share a learning-rate scale and a weight decay (PyTorch's param groups).
public struct ParameterGroup {
  public var names: [String]
  public var parameters: [Parameter]
  public var weightDecay: Float
  /// Multiplies the scheduled learning rate (layer-wise decay).
  public var learningRateScale: Float

  public init(
    names: [String], parameters: [Parameter], weightDecay: Float, learningRateScale: Float = 1
  ) {
    self.names = names
    self.parameters = parameters
    self.weightDecay = weightDecay
    self.learningRateScale = learningRateScale
  }
}

/// Which parameters escape weight decay (methods.md §9.1).
public enum DecayExclusion: String, Sendable, CaseIterable {
  /// Only tensors with ≤ 1 dimension (biases, norm weights, LayerScale).
  case oneDimensional
  /// None: every tensor decays (PCM3's SGD over all parameters).
  case none
  /// MAMP: 1-D tensors and names ending in `.bias`; positional embeddings and the mask token
  /// are decayed.
  case mamp
  /// Skeleton2vec: as MAMP, and the four positional embeddings too (the mask token decays).
  case skeleton2vec

  private static let positional: Set<String> = [
    "pos_embed", "temp_embed", "decoder_pos_embed", "decoder_temp_embed",
  ]

  /// Whether `name` (of a tensor of `shape`) takes no weight decay.
  public func excludes(_ name: String, shape: [Int]) -> Bool {
    if self == .none { return false }
    if shape.count <= 1 { return true }
    switch self {
    case .oneDimensional, .none: return false
    case .mamp: return name.hasSuffix(".bias")
    case .skeleton2vec:
      return name.hasSuffix(".bias") || DecayExclusion.positional.contains(name)
    }
  }
}

/// Layer-wise learning-rate decay for fine-tuning (methods.md §9.1): group 0 is the patch and
/// positional embeddings, group i+1 is block i, group depth+1 the head. The final encoder norm
/// is in group depth+1 (MAMP) or depth (Skeleton2vec).
public struct LayerDecay: Sendable {
  public var factor: Float
  public var depth: Int
  public var flavor: Flavor

  public init(factor: Float, depth: Int, flavor: Flavor = .mamp) {
    self.factor = factor
    self.depth = depth
    self.flavor = flavor
  }

  /// The layer group of a parameter name.
  public func layer(of name: String) -> Int {
    if name == "pos_embed" || name == "temp_embed" || name.hasPrefix("joints_embed.") {
      return 0
    }
    if name.hasPrefix("blocks.") {
      let index = name.dropFirst("blocks.".count).prefix { $0.isNumber }
      return (Int(index) ?? depth - 1) + 1
    }
    if name.hasPrefix("norm.") { return flavor == .mamp ? depth + 1 : depth }
    return depth + 1
  }

  /// The learning-rate scale of a parameter name: `factor^(depth + 1 − layer)`.
  public func scale(of name: String) -> Float {
    Float(Foundation.pow(Double(factor), Double(depth + 1 - layer(of: name))))
  }
}

extension ParameterGroup {
  /// Splits the trainable (not frozen) parameters of `module` into decayed and not-decayed
  /// groups, and with `layerDecay` further by layer, as the reference optimisers do.
  public static func groups(
    _ module: Module, weightDecay: Float, exclusion: DecayExclusion = .mamp,
    layerDecay: LayerDecay? = nil
  ) -> [ParameterGroup] {
    var groups: [ParameterGroup] = []
    var index: [String: Int] = [:]
    for (name, parameter) in module.namedParameters() where !parameter.isFrozen {
      let decay = exclusion.excludes(name, shape: parameter.value.shape) ? 0 : weightDecay
      let scale = layerDecay?.scale(of: name) ?? 1
      let key = "\(decay)/\(scale)"
      if let i = index[key] {
        groups[i].names.append(name)
        groups[i].parameters.append(parameter)
      } else {
        index[key] = groups.count
        groups.append(
          ParameterGroup(
            names: [name], parameters: [parameter], weightDecay: decay, learningRateScale: scale))
      }
    }
    return groups
  }
}
