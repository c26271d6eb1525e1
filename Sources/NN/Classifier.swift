import TensorCore

/// The evaluation heads of methods.md §8 on top of an encoder: `[N, C, T, J, M] -> [N, classes]`.
public final class Classifier: Module {
  /// Which head (§8.1 linear probe, §8.2 fine-tuning).
  public enum HeadKind: String, Sendable, CaseIterable {
    /// BatchNorm (affine off) then Linear on the pooled feature (§2.7); names `head.0.*`
    /// (running statistics) and `head.1.*`, as the MAE/MAMP linear-probe script builds it.
    case linear
    /// Dropout 0.3 on the tokens, mean over segments, joints concatenated, mean over bodies,
    /// then `head.fc1` (J·D -> hidden), `head.bn`, ReLU, `head.fc2`.
    case finetune
  }

  public let encoder: any SequenceEncoder
  public let kind: HeadKind
  public let classes: Int
  private let linearNorm: BatchNorm1d?
  private let linear: Linear?
  private let fc1: Linear?
  private let bn: BatchNorm1d?
  private let fc2: Linear?
  private let tokenDropout: Dropout

  public init(
    encoder: any SequenceEncoder, classes: Int, head: HeadKind, hidden: Int = 2048,
    dropout: Float = 0.3,
    probeEps: Float? = nil
  ) throws {
    guard classes > 1 else {
      throw TensorError("classifier", "needs at least 2 classes, got \(classes)")
    }
    self.encoder = encoder
    self.kind = head
    self.classes = classes
    tokenDropout = Dropout(dropout)
    let d = encoder.featureDimension
    switch head {
    case .linear:
      // MAMP's probe BatchNorm has eps 1e-6, Skeleton2vec's 1e-5 (§8.1).
      let eps = probeEps ?? encoder.probeEps
      linearNorm = BatchNorm1d(d, eps: eps, affine: false)
      linear = Linear(d, classes)
      (fc1, bn, fc2) = (nil, nil, nil)
    case .finetune:
      fc1 = Linear(encoder.tuningDimension, hidden)
      bn = BatchNorm1d(hidden)
      fc2 = Linear(hidden, classes)
      (linearNorm, linear) = (nil, nil)
    }
    super.init()
    child("", encoder)
    // Registered so that setTraining(false) reaches it: evaluation sees every token.
    child("dropout", tokenDropout)
    let container = child("head", Module())
    if let linearNorm, let linear {
      container.child("0", linearNorm)
      container.child("1", linear)
      linear.weight.assign(try Initialization.truncatedNormal([classes, d], std: 0.01))
    }
    if let fc1, let bn, let fc2 {
      container.child("fc1", fc1)
      container.child("bn", bn)
      container.child("fc2", fc2)
      try encoder.initializeTuningHead(container)
    }
  }

  /// The head's own module (what a linear probe trains).
  public var headParameters: [(name: String, parameter: Parameter)] {
    namedParameters().filter { $0.name.hasPrefix("head.") }
  }

  /// Logits for a batch `[N, C, T, J, M]`.
  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    if let linearNorm, let linear { return try linear(linearNorm(encoder.features(x))) }
    guard let fc1, let bn, let fc2 else { return x }
    let pooled = try encoder.tuningFeatures(x, dropout: tokenDropout)
    return try fc2(bn(fc1(pooled)).relu())
  }
}
