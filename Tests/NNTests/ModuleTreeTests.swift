import NN
import TensorCore
import TestSupport
import Testing

/// Every sub-module a model holds is registered in its tree, so that `setTraining`, the state
/// dict and the optimiser reach it (an unregistered Dropout stayed in training mode during
/// evaluation).
@Suite("Module tree", .timed)
struct ModuleTreeTests {
  /// The modules a module's stored properties hold (directly, optional, or in an array).
  static func heldModules(_ module: Module) -> [Module] {
    var held: [Module] = []
    var mirror: Mirror? = Mirror(reflecting: module)
    while let current = mirror, current.subjectType != Module.self {
      for child in current.children {
        if let m = child.value as? Module {
          held.append(m)
        } else if let list = child.value as? [Module] {
          held += list
        } else if let optional = child.value as? Module?, let m = optional {
          held.append(m)
        }
      }
      mirror = current.superclassMirror
    }
    return held
  }

  static func unregistered(_ root: Module) -> [String] {
    let tree = root.namedModules()
    let known = Set(tree.map { ObjectIdentifier($0.module) })
    return tree.flatMap { name, module in
      heldModules(module).filter { !known.contains(ObjectIdentifier($0)) }.map {
        "\(name.isEmpty ? "<root>" : name) holds an unregistered \(type(of: $0))"
      }
    }
  }

  @Test func everyHeldModuleIsRegistered() throws {
    let encoder = try Encoder(
      dimension: 8, depth: 2, heads: 2, segment: 4, frames: 8, joints: 25, layerScale: 1e-4,
      dropPath: 0.1, flavor: .skeleton2vec)
    var models: [Module] = [
      encoder,
      try Decoder(
        encoderDimension: 8, dimension: 8, depth: 1, heads: 2, segments: 2, joints: 25,
        head: .motion(outputs: 12)),
      try GRU(input: 6, hidden: 4, layers: 2, mode: .stepwise),
    ]
    for kind in Classifier.HeadKind.allCases {
      models.append(try Classifier(encoder: encoder, classes: 3, head: kind, hidden: 4))
    }
    for model in models {
      #expect(Self.unregistered(model) == [], "\(type(of: model))")
    }
  }

  /// The fine-tuning head in inference mode is a function of its input (no dropout).
  @Test func aClassifierInInferenceModeIsDeterministic() throws {
    let encoder = try Encoder(dimension: 8, depth: 1, heads: 2, segment: 4, frames: 8, joints: 25)
    let model = try Classifier(encoder: encoder, classes: 3, head: .finetune, hidden: 4)
    model.setTraining(false)
    let x = try Tensor(
      shape: [2, 3, 8, 25, 2], scalars: (0..<(2 * 3 * 8 * 25 * 2)).map { Float($0 % 7) / 7 })
    #expect(try model(x).scalars == model(x).scalars)
  }
}
