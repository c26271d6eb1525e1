import TensorCore

/// Skeleton2vec checkpoints name the model differently (methods.md §2.5, §3); this maps a
/// Skeleton2vec state dict onto our (MAMP) names, so that its weights load by name.
public enum Skeleton2vecNames {
  /// Name prefixes that move as they are: (Skeleton2vec, ours).
  private static let prefixes: [(String, String)] = [
    ("encoder_embedding.projection.1.", "joints_embed.proj."),
    ("encoder_norm.", "norm."),
    ("decoder_embedding.", "decoder_embed."),
    ("decoder_norm.", "decoder_norm."),
    ("decoder_feat_head.", "decoder_feat_head."),
  ]
  /// Channel-first positional embeddings `[1, D, 1, V]` / `[1, D, TP, 1]`, moved channel-last.
  private static let positional: [String: String] = [
    "encoder_embedding.spatio_pos_emb": "pos_embed",
    "encoder_embedding.temporal_pos_emb": "temp_embed",
    "decoder_spatio_pos_emb": "decoder_pos_embed",
    "decoder_temporal_pos_emb": "decoder_temp_embed",
  ]
  /// Block stacks: `encoder.layers.{i}` and `decoder.layers.{i}`.
  private static let stacks: [(String, String)] = [
    ("encoder.layers.", "blocks."), ("decoder.layers.", "decoder_blocks."),
  ]

  /// Whether `names` look like a Skeleton2vec state dict (after `prefix`).
  public static func detect<S: Sequence>(_ names: S, prefix: String = "") -> Bool
  where S.Element == String {
    names.contains { name in
      name.hasPrefix(prefix + "encoder_embedding.") || name.hasPrefix(prefix + "encoder.layers.")
    }
  }

  /// Maps the entries under `prefix` (e.g. `auto_encoder.` or `ema.model.`) to our names:
  /// `joints_embed.proj.*`, `pos_embed`, `temp_embed`, `blocks.{i}.*`, `norm.*` and the
  /// decoder's `decoder_embed.*`, `mask_token`, `decoder_pos_embed`, `decoder_temp_embed`,
  /// `decoder_blocks.{i}.*`, `decoder_norm.*`, `decoder_feat_head.*`. `queries`/`keys`/`values`
  /// are concatenated into the packed `qkv` (in that order). Other entries are left out.
  public static func ourState(_ state: [String: Tensor], prefix: String = "") throws
    -> [String: Tensor]
  {
    var result: [String: Tensor] = [:]
    var split: [String: [String: Tensor]] = [:]  // "blocks.i.attn.qkv.weight" -> parts
    for (fullName, tensor) in state where fullName.hasPrefix(prefix) {
      let name = String(fullName.dropFirst(prefix.count))
      if name == "mask_token_emb" {
        result["mask_token"] = tensor
      } else if let ours = positional[name] {
        guard tensor.rank == 4 else {
          throw TensorError(
            "skeleton2vec", "\(fullName) has shape \(shapeString(tensor.shape)), expected rank 4")
        }
        result[ours] = try tensor.permuted([0, 2, 3, 1]).contiguous()
      } else if let (theirs, ours) = prefixes.first(where: { name.hasPrefix($0.0) }) {
        result[ours + name.dropFirst(theirs.count)] = tensor
      } else if let (theirs, ours) = stacks.first(where: { name.hasPrefix($0.0) }) {
        let rest = name.dropFirst(theirs.count)
        guard let dot = rest.firstIndex(of: ".") else { continue }
        let index = rest[..<dot]
        let inner = String(rest[rest.index(after: dot)...])
        let parts = inner.split(separator: ".").map(String.init)
        if parts.count == 3, parts[0] == "attn", ["queries", "keys", "values"].contains(parts[1]) {
          split["\(ours)\(index).attn.qkv.\(parts[2])", default: [:]][parts[1]] = tensor
        } else {
          result["\(ours)\(index).\(inner)"] = tensor
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
