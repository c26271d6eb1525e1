/// One node of the dynamic autograd graph: a leaf that requires gradients, or the result of an
/// op with the closure that maps its output gradient to its inputs' gradients.
package final class GradNode {
  /// The op that produced the value (`matmul`, `add`), for error messages.
  package let op: String
  /// The inputs' nodes, aligned with the gradients `backward` returns (nil: no gradient needed).
  package let inputs: [GradNode?]
  /// Maps the gradient of the output to the gradients of the inputs; nil for a leaf, and
  /// after a backward pass that did not retain the graph (which frees the tensors it saved).
  package private(set) var backward: ((Tensor) throws -> [Tensor?])?
  /// Whether this node is a leaf (it had no backward to begin with).
  package let isLeaf: Bool
  /// The shape of the value, checked against every gradient that flows in.
  package let shape: [Int]
  /// The accumulated gradient of a leaf.
  package var grad: Tensor?

  package init(
    op: String, inputs: [GradNode?], shape: [Int], backward: ((Tensor) throws -> [Tensor?])?
  ) {
    self.op = op
    self.inputs = inputs
    self.shape = shape
    self.backward = backward
    isLeaf = backward == nil
  }

  /// Drops the backward closure and the tensors it saved for it.
  func release() { backward = nil }
}

/// A tensor an op's backward needs, kept so that the last backward through the op can take its
/// buffer for its own result instead of allocating another as large.
package final class SavedTensor {
  private var tensor: Tensor?
  /// The saved tensor's shape (also after its buffer was taken).
  package let shape: [Int]

  package init(_ tensor: Tensor, shape: [Int]) {
    self.tensor = tensor
    self.shape = shape
  }

  /// The saved tensor; only before `takeBuffer()` returned a buffer.
  package var value: Tensor { tensor! }

  /// The saved tensor's buffer, whose contents the caller may then overwrite, when the running
  /// backward pass frees the graph after this op and nothing else holds the buffer (no other
  /// tensor, view or saved copy); nil otherwise, and the tensor stays saved.
  package func takeBuffer() -> TensorStorage? {
    guard Autograd.isReleasing, var taken = tensor else { return nil }
    tensor = nil
    guard taken.isContiguous, taken.offset == 0, taken.storage.count == taken.count,
      isKnownUniquelyReferenced(&taken.storage)
    else {
      tensor = taken
      return nil
    }
    return taken.storage
  }
}

/// Gradient recording: whether ops record, and how a recorded op joins the graph.
public enum Autograd {
  @TaskLocal static var isRecording = true
  /// Whether the backward running now is the last through its node (the pass does not retain
  /// the graph), so that it may take over a buffer it saved (`SavedTensor.takeBuffer`).
  @TaskLocal static var isReleasing = false

  /// Whether ops currently record onto the tape (false inside `noGrad`).
  public static var isEnabled: Bool { isRecording }

  /// Runs `body` with nothing recorded: teacher forwards, evaluation and optimiser updates.
  public static func noGrad<R>(_ body: () throws -> R) rethrows -> R {
    try $isRecording.withValue(false) { try body() }
  }

  /// Attaches `output` to the graph when recording is on and some input requires gradients.
  /// `backward` receives the output gradient and returns one gradient (or nil) per input, each
  /// of its input's shape; it runs with recording off.
  package static func record(
    _ op: String, _ output: Tensor, _ inputs: [Tensor],
    backward: @escaping (Tensor) throws -> [Tensor?]
  ) -> Tensor {
    guard isRecording, inputs.contains(where: { $0.node != nil }) else { return output }
    var result = output
    result.node = GradNode(
      op: op, inputs: inputs.map(\.node), shape: output.shape, backward: backward)
    return result
  }

  /// Back-propagates `seed` (the gradient of `root`'s value) through the graph, accumulating
  /// into the `grad` of every leaf reached. Unless `retainGraph`, each op's saved tensors are
  /// freed once its backward has run, as in PyTorch: the activations of the last layers go
  /// while the first layers' gradients are computed, so the peak is not every activation plus
  /// the backward's own buffers (the `small` Skeleton2vec step's tensors peaked at 348 MB
  /// with the graph kept, 287 MB of it saved activations).
  static func run(from root: GradNode, seed: Tensor, retainGraph: Bool = false) throws {
    // Topological order by an explicit-stack depth-first search (deep graphs must not
    // overflow the call stack).
    var order: [GradNode] = []
    var visited = Set<ObjectIdentifier>()
    var stack: [(node: GradNode, next: Int)] = [(root, 0)]
    visited.insert(ObjectIdentifier(root))
    while var top = stack.popLast() {
      if top.next < top.node.inputs.count {
        let child = top.node.inputs[top.next]
        top.next += 1
        stack.append(top)
        if let child, visited.insert(ObjectIdentifier(child)).inserted {
          stack.append((child, 0))
        }
      } else {
        order.append(top.node)
      }
    }
    var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
    func propagate() throws {
      for node in order.reversed() {
        guard let grad = pending.removeValue(forKey: ObjectIdentifier(node)) else { continue }
        if node.isLeaf {
          if var total = node.grad {
            node.grad = nil  // so that the buffer can be unshared and added into in place
            try total.accumulate(grad)
            node.grad = total
          } else {
            node.grad = grad
          }
          continue
        }
        guard let backward = node.backward else {
          throw TensorError(
            "backward",
            "the graph through '\(node.op)' was already back-propagated, which freed what it "
              + "saved: compute the forward again, or call the first backward with "
              + "retain_graph=true")
        }
        let inputGrads = try backward(grad)
        if !retainGraph { node.release() }
        for (input, inputGrad) in zip(node.inputs, inputGrads) {
          guard let input, let inputGrad else { continue }
          guard inputGrad.shape == input.shape else {
            throw TensorError(
              "backward",
              "gradient of shape \(shapeString(inputGrad.shape)) from '\(node.op)' does not match "
                + "its input of shape \(shapeString(input.shape))")
          }
          let key = ObjectIdentifier(input)
          if var total = pending.removeValue(forKey: key) {
            try total.accumulate(inputGrad)
            pending[key] = total
          } else {
            pending[key] = inputGrad
          }
        }
      }
    }
    // Backward closures run with nothing recorded.
    try $isReleasing.withValue(!retainGraph) { try noGrad { try propagate() } }
  }
}

extension Tensor {
  /// Whether gradients flow to this tensor (a leaf that asked for them, or a value computed
  /// from one while recording).
  public var requiresGrad: Bool { node != nil }

  /// Whether this tensor is a leaf of the graph (made by the user, not computed by an op).
  public var isLeaf: Bool { node?.isLeaf ?? true }

  /// Turns gradient tracking on or off for a leaf. Throws for a computed tensor, whose
  /// gradient requirement follows from its inputs (use `detach()` first).
  public mutating func setRequiresGrad(_ flag: Bool) throws {
    guard isLeaf else {
      throw TensorError(
        "requires_grad",
        "only leaf tensors can change requires_grad; this one was computed by '\(node?.op ?? "")' "
          + "(detach it first)")
    }
    if flag {
      if node == nil { node = GradNode(op: "leaf", inputs: [], shape: shape, backward: nil) }
    } else {
      node = nil
    }
  }

  /// The same tensor as a leaf that requires gradients.
  public func requiringGrad() -> Tensor {
    var leaf = detached()
    leaf.node = GradNode(op: "leaf", inputs: [], shape: shape, backward: nil)
    return leaf
  }

  /// The accumulated gradient of a leaf after `backward()`, or nil.
  public var grad: Tensor? {
    get { node?.grad }
    nonmutating set { node?.grad = newValue }
  }

  /// The same values, cut from the graph: no gradient flows through the result.
  public func detached() -> Tensor {
    var result = self
    result.node = nil
    return result
  }

  /// Computes the gradient of this one-element tensor with respect to every leaf it depends on,
  /// adding it to each leaf's `grad`. With `gradient`, back-propagates that upstream gradient
  /// from a tensor of any shape. The graph's saved tensors are freed on the way unless
  /// `retainGraph` (needed to back-propagate through the same graph again).
  public func backward(gradient: Tensor? = nil, retainGraph: Bool = false) throws {
    guard let node else {
      throw TensorError(
        "backward",
        "tensor of shape \(shapeString(shape)) does not require grad "
          + "(no input had requires_grad set, or it was computed under no_grad)")
    }
    let seed: Tensor
    if let gradient {
      guard gradient.shape == shape else {
        throw TensorError(
          "backward",
          "gradient of shape \(shapeString(gradient.shape)) for a tensor of shape "
            + "\(shapeString(shape))")
      }
      seed = gradient.detached()
    } else {
      guard count == 1 else {
        throw TensorError(
          "backward",
          "backward() needs a one-element tensor, got shape \(shapeString(shape)); "
            + "reduce it (sum or mean) first")
      }
      seed = Tensor.full(shape, 1)
    }
    try Autograd.run(from: node, seed: seed, retainGraph: retainGraph)
  }
}

extension Tensor {
  /// Adds `other` (same shape) into this tensor: in place when this tensor's buffer is unshared
  /// and dense, as PyTorch accumulates `grad += new`; otherwise into a new buffer.
  package mutating func accumulate(_ other: Tensor) throws {
    guard shape == other.shape, other.isContiguous, isContiguous, offset == 0,
      storage.count == count, isKnownUniquelyReferenced(&storage)
    else {
      self = try self + other
      return
    }
    Kernels.zip(
      storage.base, other.storage.base + other.offset, storage.base, count: count, AddFunction())
  }
}
