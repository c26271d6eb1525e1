import TensorCore

/// A trainable tensor with identity: modules hold parameters, optimisers update them in place.
public final class Parameter {
  /// The current value, a leaf that requires gradients.
  public var value: Tensor

  public init(_ value: Tensor) { self.value = value.requiringGrad() }

  /// The gradient accumulated by the last backward passes, or nil.
  public var grad: Tensor? { value.grad }
}

/// A layer or a model: parameters and sub-modules registered in declaration order, so that
/// dotted names (`blocks.0.attn.qkv.weight`) are stable and match the PyTorch state dicts.
open class Module {
  /// Parameters and sub-modules in registration order, as PyTorch's state dict lists them.
  private enum Slot {
    case parameter(String, Parameter)
    case child(String, Module)
  }
  private var slots: [Slot] = []
  /// Training mode (dropout, drop path and batch statistics act only in training).
  public var training = true

  public init() {}

  /// Registers a parameter under `name` and returns it.
  @discardableResult
  public func parameter(_ name: String, _ value: Tensor) -> Parameter {
    let p = Parameter(value)
    slots.append(.parameter(name, p))
    return p
  }

  /// Registers an existing parameter object under `name` (layers that keep typed references).
  public func registerExisting(_ name: String, _ parameter: Parameter) {
    slots.append(.parameter(name, parameter))
  }

  /// Registers a sub-module under `name` and returns it.
  @discardableResult
  public func child<M: Module>(_ name: String, _ module: M) -> M {
    slots.append(.child(name, module))
    return module
  }

  /// Every parameter with its dotted name, in declaration order.
  public func namedParameters(prefix: String = "") -> [(name: String, parameter: Parameter)] {
    var result: [(name: String, parameter: Parameter)] = []
    for slot in slots {
      switch slot {
      case .parameter(let name, let parameter): result.append((prefix + name, parameter))
      case .child(let name, let module):
        result += module.namedParameters(prefix: prefix + name + ".")
      }
    }
    return result
  }

  /// The number of trainable values.
  public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.parameter.value.count } }

  /// Sets training or inference mode on this module and every sub-module.
  public func setTraining(_ flag: Bool) {
    training = flag
    for case .child(_, let module) in slots { module.setTraining(flag) }
  }

  /// Loads parameters by name. Strict loading throws one error listing the missing, unexpected
  /// and shape-mismatched names; otherwise the names that did not load are returned.
  @discardableResult
  public func load(_ state: [String: Tensor], strict: Bool = true) throws -> [String] {
    let named = namedParameters()
    let known = Set(named.map(\.name))
    var missing: [String] = []
    var mismatched: [String] = []
    for (name, parameter) in named {
      guard let value = state[name] else {
        missing.append(name)
        continue
      }
      guard value.shape == parameter.value.shape else {
        mismatched.append(
          "\(name): \(shapeString(value.shape)) in the state, \(shapeString(parameter.value.shape)) in the model"
        )
        continue
      }
      parameter.value = value.contiguous().requiringGrad()
    }
    let unexpected = state.keys.filter { !known.contains($0) }.sorted()
    let problems =
      missing.map { "missing \($0)" } + unexpected.map { "unexpected \($0)" } + mismatched
    if strict && !problems.isEmpty {
      throw TensorError("load", "\(problems.count) problem(s): " + problems.joined(separator: "; "))
    }
    return problems
  }
}
