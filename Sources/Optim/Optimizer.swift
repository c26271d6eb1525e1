import Foundation
import NN
import TensorCore

/// What every optimiser offers: a scheduled base learning rate, parameter groups, a step and
/// its state for checkpoints.
public protocol Optimizer: AnyObject {
  /// The base learning rate; each group uses it times its scale.
  var learningRate: Double { get set }
  var groups: [ParameterGroup] { get }
  /// The number of steps taken.
  var stepCount: Int { get }
  /// Updates every parameter that has a gradient.
  func step() throws
  /// The per-parameter state by `<parameter name>.<slot>` (checkpoints).
  func stateTensors() -> [(name: String, tensor: Tensor)]
  /// Restores state written by `stateTensors`.
  func loadState(_ state: [String: Tensor], stepCount: Int) throws
}

extension Optimizer {
  /// Forgets every gradient (PyTorch's `zero_grad(set_to_none=True)`).
  public func zeroGrad() {
    for group in groups { for parameter in group.parameters { parameter.grad = nil } }
  }

  /// Every trainable parameter with its name, in group order.
  public var namedParameters: [(name: String, parameter: Parameter)] {
    groups.flatMap { group in zip(group.names, group.parameters).map { ($0, $1) } }
  }
}

/// Per-parameter buffers keyed by parameter name.
struct SlotStore {
  var slots: [String: [String: Tensor]] = [:]

  mutating func buffer(_ name: String, _ slot: String, like shape: [Int]) -> Tensor {
    if let existing = slots[name]?[slot] { return existing }
    return Tensor.zeros(shape)
  }

  func tensors(order: [String]) -> [(name: String, tensor: Tensor)] {
    order.flatMap { name in
      (slots[name] ?? [:]).sorted { $0.key < $1.key }.map { (name + "." + $0.key, $0.value) }
    }
  }

  mutating func load(_ state: [String: Tensor], names: [(String, [Int])], slotNames: [String])
    throws
  {
    var loaded: [String: [String: Tensor]] = [:]
    for (name, shape) in names {
      for slot in slotNames {
        guard let tensor = state[name + "." + slot] else { continue }
        guard tensor.shape == shape else {
          throw TensorError(
            "optimizer",
            "state \(name).\(slot) has shape \(shapeString(tensor.shape)), the parameter "
              + shapeString(shape))
        }
        loaded[name, default: [:]][slot] = tensor.detached().contiguous()
      }
    }
    slots = loaded
  }
}

/// `torch.optim.AdamW`: decoupled weight decay `p ← p·(1 − lr·wd)`, then Adam with bias
/// corrections, `p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)`.
public final class AdamW: Optimizer {
  public var learningRate: Double
  public let groups: [ParameterGroup]
  public let beta1: Double
  public let beta2: Double
  public let eps: Double
  public private(set) var stepCount = 0
  private var store = SlotStore()

  public init(
    groups: [ParameterGroup], learningRate: Double, beta1: Double = 0.9, beta2: Double = 0.999,
    eps: Double = 1e-8
  ) throws {
    guard learningRate >= 0, (0..<1).contains(beta1), (0..<1).contains(beta2), eps >= 0 else {
      throw TensorError(
        "adamw",
        "needs lr ≥ 0, betas in [0, 1) and eps ≥ 0; got lr \(learningRate), betas "
          + "(\(beta1), \(beta2)), eps \(eps)")
    }
    self.groups = groups
    self.learningRate = learningRate
    self.beta1 = beta1
    self.beta2 = beta2
    self.eps = eps
  }

  public func step() throws {
    stepCount += 1
    let t = Double(stepCount)
    let correction1 = 1 - Foundation.pow(beta1, t)
    let correction2Root = (1 - Foundation.pow(beta2, t)).squareRoot()
    // Every parameter's buffers first (the moments created or unshared, the parameter's own),
    // then one update of all of them, shared between the threads.
    var slices: [Kernels.AdamWSlice] = []
    var gradients: [Tensor] = []
    for group in groups {
      let lr = learningRate * Double(group.learningRateScale)
      let shrink = Float(1 - lr * Double(group.weightDecay))
      let stepSize = Float(lr / correction1)
      for (name, parameter) in zip(group.names, group.parameters) {
        guard let gradient = parameter.grad else { continue }
        let g = gradient.contiguous()
        var m = store.buffer(name, "exp_avg", like: parameter.value.shape)
        var v = store.buffer(name, "exp_avg_sq", like: parameter.value.shape)
        store.slots[name] = nil  // so the buffers are unshared and updated in place
        let (average, square) = (m.ownedBuffer(), v.ownedBuffer())
        let values = parameter.value.ownedBuffer()
        store.slots[name] = ["exp_avg": m, "exp_avg_sq": v]
        gradients.append(g)
        slices.append(
          Kernels.AdamWSlice(
            parameter: values, gradient: g.address.base,
            average: average, square: square, count: g.count, shrink: shrink,
            stepSize: stepSize))
      }
    }
    withExtendedLifetime(gradients) {
      Kernels.adamW(
        slices, beta1: Float(beta1), beta2: Float(beta2), root2: Float(correction2Root),
        epsilon: Float(eps))
    }
  }

  public func stateTensors() -> [(name: String, tensor: Tensor)] {
    store.tensors(order: namedParameters.map(\.name))
  }

  public func loadState(_ state: [String: Tensor], stepCount: Int) throws {
    try store.load(
      state, names: namedParameters.map { ($0.name, $0.parameter.value.shape) },
      slotNames: ["exp_avg", "exp_avg_sq"])
    self.stepCount = stepCount
  }
}

/// `torch.optim.SGD`: `d = g + wd·p`; with momentum `buf = μ·buf + d` (`buf = d` at first),
/// `d = d + μ·buf` (Nesterov) or `d = buf`; then `p ← p − lr·d`.
public final class SGD: Optimizer {
  public var learningRate: Double
  public let groups: [ParameterGroup]
  public let momentum: Double
  public let nesterov: Bool
  public private(set) var stepCount = 0
  private var store = SlotStore()

  public init(
    groups: [ParameterGroup], learningRate: Double, momentum: Double = 0, nesterov: Bool = false
  ) throws {
    guard learningRate >= 0, momentum >= 0, !nesterov || momentum > 0 else {
      throw TensorError(
        "sgd",
        "needs lr ≥ 0, momentum ≥ 0 (and > 0 for Nesterov); got lr \(learningRate), "
          + "momentum \(momentum)")
    }
    self.groups = groups
    self.learningRate = learningRate
    self.momentum = momentum
    self.nesterov = nesterov
  }

  public func step() throws {
    stepCount += 1
    let mu = Float(momentum)
    for group in groups {
      let lr = Float(learningRate * Double(group.learningRateScale))
      let wd = group.weightDecay
      for (name, parameter) in zip(group.names, group.parameters) {
        guard let gradient = parameter.grad else { continue }
        let g = gradient.contiguous()
        let first = store.slots[name]?["momentum_buffer"] == nil
        var buffer = store.buffer(name, "momentum_buffer", like: parameter.value.shape)
        store.slots[name] = nil
        g.withUnsafeBufferPointer { gs in
          buffer.withUnsafeMutableBufferPointer { bs in
            parameter.value.withUnsafeMutableBufferPointer { ps in
              guard let gb = gs.baseAddress, let bb = bs.baseAddress, let pb = ps.baseAddress
              else { return }  // no elements
              Kernels.sgd(
                parameter: pb, gradient: gb, buffer: bb, count: ps.count, learningRate: lr,
                weightDecay: wd, momentum: mu, first: first, nesterov: nesterov)
            }
          }
        }
        if mu != 0 { store.slots[name] = ["momentum_buffer": buffer] }
      }
    }
  }

  public func stateTensors() -> [(name: String, tensor: Tensor)] {
    store.tensors(order: namedParameters.map(\.name))
  }

  public func loadState(_ state: [String: Tensor], stepCount: Int) throws {
    try store.load(
      state, names: namedParameters.map { ($0.name, $0.parameter.value.shape) },
      slotNames: ["momentum_buffer"])
    self.stepCount = stepCount
  }
}

/// Global-norm gradient clipping (`clip_grad_norm_`): `total = √Σ‖g‖²`; when
/// `max/(total + 1e-6) < 1` every gradient is multiplied by it. Returns the total norm.
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Float) throws -> Float {
  var sum = 0.0
  for parameter in parameters {
    guard let g = parameter.grad else { continue }
    sum += g.withUnsafeBufferPointer { values in
      values.reduce(0.0) { $0 + Double($1) * Double($1) }
    }
  }
  let total = sum.squareRoot()
  let coefficient = Double(maxNorm) / (total + 1e-6)
  if coefficient < 1 {
    for parameter in parameters {
      guard let g = parameter.grad else { continue }
      parameter.grad = g * Float(coefficient)
    }
  }
  return Float(total)
}
