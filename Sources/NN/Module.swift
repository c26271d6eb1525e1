import TensorCore

/// A trainable tensor with identity: modules hold parameters, optimisers update them in place.
public final class Parameter {
  /// The current value: a leaf that requires gradients, unless the parameter is frozen.
  public var value: Tensor
  /// A frozen parameter takes no gradient (and optimisers skip it).
  public private(set) var isFrozen = false

  public init(_ value: Tensor) { self.value = value.requiringGrad() }

  /// The gradient accumulated by the last backward passes, or nil.
  public var grad: Tensor? {
    get { value.grad }
    set { value.grad = newValue }
  }

  /// Replaces the value (loading, copying), keeping the frozen state.
  public func assign(_ newValue: Tensor) {
    let dense = newValue.detached().contiguous()
    value = isFrozen ? dense : dense.requiringGrad()
  }

  /// Stops (or restarts) gradient tracking for this parameter.
  public func setFrozen(_ frozen: Bool) {
    isFrozen = frozen
    value = frozen ? value.detached() : value.requiringGrad()
  }
}

/// A tensor a module keeps but does not train (BatchNorm's running statistics).
public final class Buffer {
  public var value: Tensor
  public init(_ value: Tensor) { self.value = value }
}

/// A layer or a model: parameters, buffers and sub-modules registered in declaration order, so
/// that dotted names (`blocks.0.attn.qkv.weight`) are stable and match the PyTorch state dicts.
/// As in PyTorch, a module lists its own parameters, then its own buffers, then its children.
open class Module {
  private var parameters: [(String, Parameter)] = []
  private var buffers: [(String, Buffer)] = []
  private var children: [(String, Module)] = []
  /// Training mode (dropout, drop path and batch statistics act only in training).
  public private(set) var training = true

  public init() {}

  /// Registers a parameter under `name` and returns it.
  @discardableResult
  public func parameter(_ name: String, _ value: Tensor) -> Parameter {
    let p = Parameter(value)
    parameters.append((name, p))
    return p
  }

  /// Registers an existing parameter object under `name` (layers that keep typed references).
  public func registerExisting(_ name: String, _ parameter: Parameter) {
    parameters.append((name, parameter))
  }

  /// Registers an existing buffer object under `name`.
  public func registerExisting(_ name: String, _ buffer: Buffer) {
    buffers.append((name, buffer))
  }

  /// Registers a buffer under `name` and returns it.
  @discardableResult
  public func buffer(_ name: String, _ value: Tensor) -> Buffer {
    let b = Buffer(value)
    buffers.append((name, b))
    return b
  }

  /// Registers a sub-module under `name` and returns it. An empty name merges the child's
  /// names into this module's (MAMP keeps encoder and decoder names side by side).
  @discardableResult
  public func child<M: Module>(_ name: String, _ module: M) -> M {
    children.append((name, module))
    return module
  }

  private func childPrefix(_ prefix: String, _ name: String) -> String {
    name.isEmpty ? prefix : prefix + name + "."
  }

  /// Every parameter with its dotted name, in PyTorch's `named_parameters` order.
  public func namedParameters(prefix: String = "") -> [(name: String, parameter: Parameter)] {
    var result = parameters.map { (name: prefix + $0.0, parameter: $0.1) }
    for (name, module) in children {
      result += module.namedParameters(prefix: childPrefix(prefix, name))
    }
    return result
  }

  /// Whether any parameter of this module or of its descendants records a gradient (a forward
  /// through it builds a graph), without building `namedParameters`' names.
  package var hasGradientParameters: Bool {
    parameters.contains { $0.1.value.requiresGrad }
      || children.contains { $0.1.hasGradientParameters }
  }

  /// Every buffer with its dotted name.
  public func namedBuffers(prefix: String = "") -> [(name: String, buffer: Buffer)] {
    var result = buffers.map { (name: prefix + $0.0, buffer: $0.1) }
    for (name, module) in children {
      result += module.namedBuffers(prefix: childPrefix(prefix, name))
    }
    return result
  }

  /// Every sub-module with its dotted name (this module first, named `prefix`).
  public func namedModules(prefix: String = "") -> [(name: String, module: Module)] {
    var result: [(name: String, module: Module)] = [(prefix, self)]
    for (name, module) in children {
      let dotted = name.isEmpty ? prefix : (prefix.isEmpty ? name : prefix + "." + name)
      result += module.namedModules(prefix: dotted)
    }
    return result
  }

  /// The state dict: parameters and buffers by dotted name, in PyTorch's order per module.
  public func stateDict(prefix: String = "") -> [(name: String, tensor: Tensor)] {
    var result = parameters.map { (name: prefix + $0.0, tensor: $0.1.value.detached()) }
    result += buffers.map { (name: prefix + $0.0, tensor: $0.1.value) }
    for (name, module) in children {
      result += module.stateDict(prefix: childPrefix(prefix, name))
    }
    return result
  }

  /// A 64-bit FNV-1a hash of the state dict (names, shapes and value bits), in hex: two
  /// modules with the same fingerprint hold the same weights (a resumable evaluation checks
  /// that it continues on the encoder it started with).
  public func fingerprint() -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    func mix(_ word: UInt32) {
      for shift in stride(from: 0, to: 32, by: 8) { mix(UInt8(truncatingIfNeeded: word >> shift)) }
    }
    for (name, tensor) in stateDict() {
      for byte in name.utf8 { mix(byte) }
      for size in tensor.shape { mix(UInt32(truncatingIfNeeded: size)) }
      tensor.contiguous().withUnsafeBufferPointer { values in
        for value in values { mix(value.bitPattern) }
      }
    }
    return String(hash, radix: 16)
  }

  /// The number of trainable values.
  public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.parameter.value.count } }

  /// Sets training or inference mode on this module and every sub-module.
  public func setTraining(_ flag: Bool) {
    training = flag
    for (_, module) in children { module.setTraining(flag) }
  }

  /// Freezes (or unfreezes) every parameter of this module and its sub-modules.
  public func setFrozen(_ frozen: Bool) {
    for (_, parameter) in namedParameters() { parameter.setFrozen(frozen) }
  }

  /// Loads parameters and buffers by name. Strict loading throws one error listing the missing,
  /// unexpected and shape-mismatched names; otherwise the names that did not load are returned.
  @discardableResult
  public func load(_ state: [String: Tensor], strict: Bool = true) throws -> [String] {
    var targets: [(name: String, shape: [Int], assign: (Tensor) -> Void)] = []
    for (name, parameter) in namedParameters() {
      targets.append((name, parameter.value.shape, { parameter.assign($0) }))
    }
    for (name, buffer) in namedBuffers() {
      targets.append((name, buffer.value.shape, { buffer.value = $0.detached().contiguous() }))
    }
    let known = Set(targets.map(\.name))
    var missing: [String] = []
    var mismatched: [String] = []
    var accepted: [(Tensor, (Tensor) -> Void)] = []
    for target in targets {
      guard let value = state[target.name] else {
        // PyTorch's BatchNorm counter is optional for us: it only feeds momentum=None.
        if !target.name.hasSuffix("num_batches_tracked") { missing.append(target.name) }
        continue
      }
      guard value.shape == target.shape else {
        mismatched.append(
          "\(target.name): \(shapeString(value.shape)) in the file, "
            + "\(shapeString(target.shape)) in the model")
        continue
      }
      accepted.append((value, target.assign))
    }
    let unexpected = state.keys.filter { !known.contains($0) }.sorted()
    let problems =
      missing.map { "missing \($0)" } + unexpected.map { "unexpected \($0)" }
      + mismatched.map { "shape mismatch \($0)" }
    if strict && !problems.isEmpty {
      throw TensorError(
        "load", "\(problems.count) problem(s), nothing loaded: " + problems.joined(separator: "; "))
    }
    // Nothing changes before every name is checked, so a failed strict load leaves the model.
    for (value, assign) in accepted { assign(value) }
    return problems
  }
}
