import TensorCore

/// One step of PyTorch's GRU cell, gates stacked [r; z; n]:
/// `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x + b_iz + W_hz h + b_hz)`,
/// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`.
/// `inputGates` is `W_i x + b_i` `[B, 3H]` (precomputed for a whole sequence at once).
func gruStep(inputGates gi: Tensor, hidden h: Tensor, weightHH: Tensor, biasHH: Tensor) throws
  -> Tensor
{
  let size = h.shape[1]
  let gh = try h.matmul(weightHH.transposed()) + biasHH
  func gate(_ t: Tensor, _ k: Int) throws -> Tensor {
    try t[.all, .range(k * size, (k + 1) * size, 1)]
  }
  let r = try (gate(gi, 0) + gate(gh, 0)).sigmoid()
  let z = try (gate(gi, 1) + gate(gh, 1)).sigmoid()
  let n = try (gate(gi, 2) + r * gate(gh, 2)).tanh()
  return try n + z * (h - n)
}

/// `torch.nn.GRUCell`: `weight_ih [3H, in]`, `weight_hh [3H, H]`, `bias_ih`, `bias_hh [3H]`.
public final class GRUCell: Module {
  public let weightIH: Parameter
  public let weightHH: Parameter
  public let biasIH: Parameter
  public let biasHH: Parameter

  public init(input: Int, hidden: Int) throws {
    let bound = 1 / Float(hidden).squareRoot()  // PyTorch's default: U(±1/√H) for all
    weightIH = Parameter(try Initialization.uniform([3 * hidden, input], bound: bound))
    weightHH = Parameter(try Initialization.uniform([3 * hidden, hidden], bound: bound))
    biasIH = Parameter(try Initialization.uniform([3 * hidden], bound: bound))
    biasHH = Parameter(try Initialization.uniform([3 * hidden], bound: bound))
    super.init()
    registerExisting("weight_ih", weightIH)
    registerExisting("weight_hh", weightHH)
    registerExisting("bias_ih", biasIH)
    registerExisting("bias_hh", biasHH)
  }

  /// `[B, in]`, `[B, H]` -> `[B, H]`.
  public func callAsFunction(_ x: Tensor, _ h: Tensor) throws -> Tensor {
    let gi = try x.matmul(weightIH.value.transposed()) + biasIH.value
    return try gruStep(inputGates: gi, hidden: h, weightHH: weightHH.value, biasHH: biasHH.value)
  }
}

/// A multi-layer GRU with PyTorch's parameter names (`weight_ih_l{k}`, `weight_hh_l{k}`,
/// `bias_ih_l{k}`, `bias_hh_l{k}`, and `_reverse` for the second direction):
/// `[B, T, in] -> [B, T, directions·H]`, starting from zero states.
public final class GRU: Module {
  /// How the two directions run.
  public enum Mode: String, Sendable, CaseIterable {
    /// One direction, forward in time.
    case unidirectional
    /// A true bidirectional GRU: the reverse direction runs backward in time.
    case bidirectional
    /// The PCM3 reference (methods.md §7.1): the GRU is driven one frame at a time, so both
    /// direction cells run forward in time, each from its own carried state.
    case stepwise
  }

  public let mode: Mode
  public let hidden: Int
  public let layers: Int
  /// `[layer][direction]` = (weight_ih, weight_hh, bias_ih, bias_hh).
  private var weights: [[(Parameter, Parameter, Parameter, Parameter)]] = []

  public init(input: Int, hidden: Int, layers: Int, mode: Mode) throws {
    guard input > 0, hidden > 0, layers > 0 else {
      throw TensorError(
        "gru", "input \(input), hidden \(hidden) and layers \(layers) must be positive")
    }
    self.mode = mode
    self.hidden = hidden
    self.layers = layers
    super.init()
    let directions = mode == .unidirectional ? 1 : 2
    let bound = 1 / Float(hidden).squareRoot()
    for k in 0..<layers {
      var perDirection: [(Parameter, Parameter, Parameter, Parameter)] = []
      for d in 0..<directions {
        let suffix = "_l\(k)" + (d == 1 ? "_reverse" : "")
        let inputs = k == 0 ? input : directions * hidden
        let w = (
          parameter(
            "weight_ih" + suffix, try Initialization.uniform([3 * hidden, inputs], bound: bound)),
          parameter(
            "weight_hh" + suffix, try Initialization.uniform([3 * hidden, hidden], bound: bound)),
          parameter("bias_ih" + suffix, try Initialization.uniform([3 * hidden], bound: bound)),
          parameter("bias_hh" + suffix, try Initialization.uniform([3 * hidden], bound: bound))
        )
        perDirection.append(w)
      }
      weights.append(perDirection)
    }
  }

  /// Xavier-uniform for every 2-D weight (the PCM3 initialisation); biases keep the default.
  public func xavierWeights() throws {
    for layer in weights {
      for (ih, hh, _, _) in layer {
        ih.assign(try Initialization.xavierUniform(ih.value.shape))
        hh.assign(try Initialization.xavierUniform(hh.value.shape))
      }
    }
  }

  /// `[B, T, in] -> [B, T, directions·H]`.
  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    let expected = weights[0][0].0.value.shape[1]
    guard x.rank == 3, x.shape[2] == expected, x.shape[1] > 0 else {
      throw TensorError(
        "gru", "expects [B, T, \(expected)] with T > 0, got \(shapeString(x.shape))")
    }
    var input = x
    for layer in weights {
      // The input products and the recurrence of all directions in one op (concurrent; see
      // Tensor.gruLayer).
      input = try Tensor.gruLayer(
        input, weightsIH: layer.map(\.0.value), biasesIH: layer.map(\.2.value),
        weightsHH: layer.map(\.1.value), biasesHH: layer.map(\.3.value),
        reverse: layer.indices.map { $0 == 1 && mode == .bidirectional })
    }
    return input
  }
}
