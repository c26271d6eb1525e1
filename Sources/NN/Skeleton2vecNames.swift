import TensorCore

/// Skeleton2vec checkpoints name the encoder differently (methods.md §2.5); this maps a
/// Skeleton2vec state dict onto our (MAMP) names, so that its weights load by name.
public enum Skeleton2vecNames {
  /// Maps `encoder_embedding.*`, `encoder.layers.{i}.*` and `encoder_norm.*` (after `prefix`,
  /// e.g. `auto_encoder.` or `ema.model.`) to `joints_embed.proj.*`, `pos_embed`, `temp_embed`,
  /// `blocks.{i}.*` and `norm.*`. Channel-first positional embeddings are moved channel-last;
  /// `queries`/`keys`/`values` are concatenated into the packed `qkv` (in that order).
  /// Entries that are not the encoder's are left out.
  public static func encoderState(_ state: [String: Tensor], prefix: String = "") throws
    -> [String: Tensor]
  {
    var result: [String: Tensor] = [:]
    var split: [String: [String: Tensor]] = [:]  // "blocks.i.attn.qkv.weight" -> parts
    for (fullName, tensor) in state where fullName.hasPrefix(prefix) {
      let name = String(fullName.dropFirst(prefix.count))
      if name.hasPrefix("encoder_embedding.projection.1.") {
        result["joints_embed.proj." + name.dropFirst("encoder_embedding.projection.1.".count)] =
          tensor
      } else if name == "encoder_embedding.spatio_pos_emb"
        || name == "encoder_embedding.temporal_pos_emb"
      {
        // [1, D, 1, V] -> [1, 1, V, D] and [1, D, TP, 1] -> [1, TP, 1, D]
        guard tensor.rank == 4 else {
          throw TensorError(
            "skeleton2vec", "\(fullName) has shape \(shapeString(tensor.shape)), expected rank 4")
        }
        result[name.hasSuffix("spatio_pos_emb") ? "pos_embed" : "temp_embed"] =
          try tensor.permuted([0, 2, 3, 1]).contiguous()
      } else if name.hasPrefix("encoder_norm.") {
        result["norm." + name.dropFirst("encoder_norm.".count)] = tensor
      } else if name.hasPrefix("encoder.layers.") {
        let rest = name.dropFirst("encoder.layers.".count)
        guard let dot = rest.firstIndex(of: ".") else { continue }
        let index = rest[..<dot]
        let inner = String(rest[rest.index(after: dot)...])
        let parts = inner.split(separator: ".").map(String.init)
        if parts.count == 3, parts[0] == "attn", ["queries", "keys", "values"].contains(parts[1]) {
          split["blocks.\(index).attn.qkv.\(parts[2])", default: [:]][parts[1]] = tensor
        } else {
          result["blocks.\(index).\(inner)"] = tensor
        }
      }
    }
    for (name, parts) in split {
      guard let q = parts["queries"], let k = parts["keys"], let v = parts["values"] else {
        throw TensorError(
          "skeleton2vec", "\(name): needs queries, keys and values; found \(parts.keys.sorted())")
      }
      result[name] = try Tensor.concat([q, k, v], axis: 0)
    }
    return result
  }
}
