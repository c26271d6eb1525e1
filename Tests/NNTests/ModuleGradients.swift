import NN
import TensorCore
import TestSupport
import Testing

/// Finite-difference check of a module's gradients for its inputs and every parameter: the
/// parameters are passed to `checkGradients` as extra inputs and put into the module before
/// each call.
func checkModuleGradients(
  _ module: Module, inputs: [Tensor], eps: Float = 1e-2, rtol: Float = 1e-2, atol: Float = 1e-3,
  _ label: String, sourceLocation: SourceLocation = #_sourceLocation,
  _ forward: ([Tensor]) throws -> Tensor
) throws {
  let parameters = module.namedParameters()
  let values = parameters.map(\.parameter.value)
  defer { for (p, v) in zip(parameters, values) { p.parameter.value = v } }
  try checkGradients(
    inputs + values, eps: eps, rtol: rtol, atol: atol, label, sourceLocation: sourceLocation
  ) { all in
    for (i, p) in parameters.enumerated() { p.parameter.value = all[inputs.count + i] }
    return try forward(Array(all.prefix(inputs.count)))
  }
}

/// Gives every parameter of `module` small random values (so that gradient checks see more
/// than the initialisation's zeros and ones).
func randomize(_ module: Module, seed: UInt64, scale: Float = 0.3) throws {
  var generator = RandomGenerator(seed: seed)
  for (_, parameter) in module.namedParameters() {
    parameter.assign(try Tensor.randn(parameter.value.shape, generator: &generator) * scale)
  }
}
