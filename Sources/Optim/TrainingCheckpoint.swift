import Foundation
import NN
import TensorCore

/// A resumable training checkpoint in one safetensors file: the model's parameters and buffers
/// under their own names (so other tools read it as a plain state dict), the optimiser's state
/// under `optimizer/<parameter>.<slot>`, and the step, the optimiser's kind and the global
/// random generator's state in the metadata. Written atomically (temporary, then rename).
public enum TrainingCheckpoint {
  /// Saves `model` and, when given, `optimizer` with extra `metadata`.
  public static func save(
    path: String, model: Module, optimizer: Optimizer? = nil, metadata: [String: String] = [:]
  ) throws {
    try AtomicFile.write(
      encode(model: model, optimizer: optimizer, metadata: metadata), to: path, op: "safetensors")
  }

  /// The bytes `save` writes.
  public static func encode(
    model: Module, optimizer: Optimizer? = nil, metadata: [String: String] = [:]
  ) throws -> Data {
    var values: [String: SafeTensors.Value] = [:]
    for (name, tensor) in model.stateDict() { values[name] = .float32(tensor) }
    var meta = metadata
    meta["format"] = "skellab-checkpoint-1"
    meta["rng_state"] = randomText(Random.state)
    if let optimizer {
      for (name, tensor) in optimizer.stateTensors() {
        values[WeightFile.optimizerPrefix + name] = .float32(tensor)
      }
      meta["optimizer"] = String(describing: type(of: optimizer))
      meta["optimizer_step"] = String(optimizer.stepCount)
    }
    return try SafeTensors.encode(values, metadata: meta)
  }

  /// Restores `model` (strictly) and, when given, `optimizer` and the global random state from
  /// a checkpoint written by `save`. Returns the file's metadata.
  @discardableResult
  public static func restore(path: String, model: Module, optimizer: Optimizer? = nil) throws
    -> [String: String]
  {
    try restore(try SafeTensors.read(path: path), name: path, model: model, optimizer: optimizer)
  }

  /// `restore` from the bytes `encode` made (or a checkpoint file's); errors name them `name`.
  @discardableResult
  public static func restore(
    data: Data, name: String = "the checkpoint", model: Module, optimizer: Optimizer? = nil
  ) throws -> [String: String] {
    try restore(
      try SafeTensors.parse(data, name: name), name: name, model: model, optimizer: optimizer)
  }

  static func restore(
    _ file: SafeTensors.File, name path: String, model: Module, optimizer: Optimizer?
  ) throws -> [String: String] {
    var weights: [String: Tensor] = [:]
    var state: [String: Tensor] = [:]
    for name in file.names {
      if name.hasPrefix(WeightFile.optimizerPrefix) {
        state[String(name.dropFirst(WeightFile.optimizerPrefix.count))] = try file.tensor(name)
      } else {
        weights[name] = try file.tensor(name)
      }
    }
    if let optimizer {
      let kind = String(describing: type(of: optimizer))
      guard file.metadata["optimizer"] == kind,
        let step = file.metadata["optimizer_step"].flatMap(Int.init)
      else {
        throw TensorError(
          "checkpoint",
          "\(path): holds no \(kind) state (found \(file.metadata["optimizer"] ?? "none"))")
      }
      try model.load(weights)
      try optimizer.loadState(state, stepCount: step)
    } else {
      try model.load(weights)
    }
    if let words = file.metadata["rng_state"].flatMap(randomState) {
      Random.state = words
    }
    return file.metadata
  }

  /// A random generator's state as checkpoint metadata: four words in hex, comma-separated.
  public static func randomText(_ words: [UInt64]) -> String {
    words.map { String($0, radix: 16) }.joined(separator: ",")
  }

  /// The state `randomText` wrote, or nil when the text does not hold four words.
  public static func randomState(_ text: String) -> [UInt64]? {
    let words = text.split(separator: ",").compactMap { UInt64($0, radix: 16) }
    return words.count == 4 ? words : nil
  }
}
