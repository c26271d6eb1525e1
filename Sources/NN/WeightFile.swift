import Foundation
import TensorCore

/// Reads model weights from the files our users have: safetensors (ours and others'), and
/// PyTorch `.pth`/`.pt` checkpoints as the official MAMP and Skeleton2vec code saves them.
public enum WeightFile {
  /// Prefix of optimiser state inside our training checkpoints (not model weights).
  public static let optimizerPrefix = "optimizer/"

  /// A state dict in our names and how it was found.
  public struct Contents {
    public var state: [String: Tensor]
    /// The file's order of names (PyTorch order for `.pth`, offset order for safetensors).
    public var names: [String]
    /// What the reader did: unwrapped containers, stripped prefixes, mapped names.
    public var notes: [String]
  }

  /// Reads the state dict of `path`. PyTorch checkpoints are unwrapped (`{'model': ...}`,
  /// `{'model': {'sd': ...}}`, `{'state_dict': ...}`), `module.` and `_orig_mod.` prefixes are
  /// stripped, and Skeleton2vec names are mapped to ours (§2.5), taking the part under
  /// `prefix` — by default the EMA teacher `ema.model.` when present (the downstream weights),
  /// else `auto_encoder.`.
  public static func read(path: String, prefix: String? = nil) throws -> Contents {
    var notes: [String] = []
    var ordered: [(String, Tensor)]
    let lower = path.lowercased()
    if lower.hasSuffix(".safetensors") {
      let file = try SafeTensors.read(path: path)
      ordered = try file.names.filter { !$0.hasPrefix(optimizerPrefix) }.map {
        ($0, try file.tensor($0))
      }
    } else if lower.hasSuffix(".pth") || lower.hasSuffix(".pt") || lower.hasSuffix(".ckpt")
      || lower.hasSuffix(".pth.tar")
    {
      var value = try TorchFile.read(path: path)
      for key in ["model", "sd", "state_dict", "model_state"] {
        if let inner = value[key], case .dict = inner {
          notes.append("took '\(key)'")
          value = inner
        }
      }
      guard case .dict(let items) = value else {
        throw TensorError("load_weights", "\(path): holds no dict of tensors")
      }
      ordered = items.compactMap { item in
        guard case .string(let name) = item.key, case .tensor(let t) = item.value else {
          return nil
        }
        return (name, t)
      }
    } else {
      throw TensorError(
        "load_weights",
        "\(path): unknown weight format (expects .safetensors, .pth, .pth.tar or .pt)")
    }
    guard !ordered.isEmpty else {
      throw TensorError("load_weights", "\(path): holds no tensors")
    }
    // DataParallel and torch.compile wrap names; strip them wherever they lead.
    var stripped = Set<String>()
    ordered = ordered.map { name, tensor in
      var n = name
      var changed = true
      while changed {
        changed = false
        for wrapper in ["module.", "_orig_mod."] where n.hasPrefix(wrapper) {
          n.removeFirst(wrapper.count)
          stripped.insert(wrapper)
          changed = true
        }
      }
      return (n, tensor)
    }
    if !stripped.isEmpty { notes.append("stripped " + stripped.sorted().joined(separator: ", ")) }
    let names = ordered.map(\.0)
    var state: [String: Tensor] = [:]
    for (name, tensor) in ordered {
      guard state.updateValue(tensor, forKey: name) == nil else {
        throw TensorError("load_weights", "\(path): '\(name)' appears twice")
      }
    }
    let chosen: String =
      prefix
      ?? (["ema.model.", "auto_encoder.", "encoder_q."].first { p in
        names.contains { $0.hasPrefix(p) }
      } ?? "")
    if Skeleton2vecNames.detect(names, prefix: chosen) {
      state = try Skeleton2vecNames.ourState(state, prefix: chosen)
      notes.append("mapped Skeleton2vec names" + (chosen.isEmpty ? "" : " under '\(chosen)'"))
      return Contents(state: state, names: state.keys.sorted(), notes: notes)
    }
    if !chosen.isEmpty {
      guard names.contains(where: { $0.hasPrefix(chosen) }) else {
        throw TensorError("load_weights", "\(path): no names start with '\(chosen)'")
      }
      state = state.filter { $0.key.hasPrefix(chosen) }.reduce(into: [:]) {
        $0[String($1.key.dropFirst(chosen.count))] = $1.value
      }
      notes.append("took names under '\(chosen)'")
      return Contents(
        state: state,
        names: names.filter { $0.hasPrefix(chosen) }.map { String($0.dropFirst(chosen.count)) },
        notes: notes)
    }
    return Contents(state: state, names: names, notes: notes)
  }
}

extension WeightFile.Contents {
  /// The contents for `module`: a MoCo projector (`fc.*`, PCM3's `encoder_q.fc`) the module
  /// does not have is dropped with a note (evaluation uses the encoder's own features).
  public func fitted(to module: Module) -> WeightFile.Contents {
    let own = Set(module.stateDict().map(\.name))
    let projector = state.keys.filter { $0.hasPrefix("fc.") && !own.contains($0) }
    guard !projector.isEmpty, !own.contains(where: { $0.hasPrefix("fc.") }) else { return self }
    var kept = state
    for name in projector { kept[name] = nil }
    return WeightFile.Contents(
      state: kept, names: names.filter { !projector.contains($0) },
      notes: notes + ["dropped the projector fc.* (the encoder's features are its output)"])
  }
}

extension Module {
  /// Loads weights from a `.safetensors`, `.pth` or `.pt` file by name (see `WeightFile.read`).
  /// Strict loading throws listing every missing, unexpected and mismatched name; otherwise
  /// the names that did not load are returned.
  @discardableResult
  public func loadWeights(path: String, strict: Bool = true, prefix: String? = nil) throws
    -> [String]
  {
    let contents = try WeightFile.read(path: path, prefix: prefix).fitted(to: self)
    do {
      return try load(contents.state, strict: strict)
    } catch let error as TensorError {
      throw TensorError(error.op, "\(path): \(error.message)")
    }
  }

  /// Writes parameters and buffers to a safetensors file atomically (temporary, then rename).
  public func save(path: String, metadata: [String: String] = [:]) throws {
    var values: [String: SafeTensors.Value] = [:]
    for (name, tensor) in stateDict() { values[name] = .float32(tensor) }
    try SafeTensors.write(values, to: path, metadata: metadata)
  }
}
