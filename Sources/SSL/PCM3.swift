import Foundation
import NN
import Optim
import SkeletonData
import TensorCore

/// The MoCo projector of PCM3 (`fc`): `fc.0` Linear F→F, ReLU, `fc.2` Linear F→dim.
public final class PCM3Projector: Module {
  public let first: Linear
  public let second: Linear

  init(features: Int, dimension: Int) throws {
    first = Linear(features, features)
    second = Linear(features, dimension)
    super.init()
    child("0", first)
    child("2", second)
    // fc.0 keeps PyTorch's default; the original fc (now fc.2) has a Xavier-uniform weight
    // (§7.1) and the default bias (drawn in this order).
    try Initialization.torchDefault(first)
    second.weight.assign(try Initialization.xavierUniform([dimension, features]))
    second.bias?.assign(try Initialization.defaultUniform([dimension], fanIn: features))
  }

  public func callAsFunction(_ x: Tensor) throws -> Tensor { try second(first(x).relu()) }
}

/// One branch of MoCo (`encoder_q` or `encoder_k`): the backbone's names side by side with the
/// projector `fc`, as the official checkpoints have them.
public final class PCM3Branch: Module {
  public let backbone: any SequenceEncoder
  public let projector: PCM3Projector

  init(backbone: any SequenceEncoder, projector: PCM3Projector) {
    self.backbone = backbone
    self.projector = projector
    super.init()
    child("", backbone)
    child("fc", projector)
  }
}

/// The masked-motion-prediction head (`linear`): Linear F→P, BatchNorm1d(P), ReLU, Linear P→P.
public final class PCM3PredictionHead: Module {
  let first: Linear
  let norm: BatchNorm1d
  let second: Linear

  init(features: Int, width: Int) throws {
    first = Linear(features, width)
    norm = BatchNorm1d(width)
    second = Linear(width, width)
    super.init()
    child("0", first)
    child("1", norm)
    child("3", second)
    try Initialization.torchDefault(first)
    try Initialization.torchDefault(second)
  }

  /// `[R, F] -> [R, P]`.
  func callAsFunction(_ x: Tensor) throws -> Tensor { try second(norm(first(x)).relu()) }
}

/// The reconstruction decoder (`recons_decoder`): a 2-layer GRU over the sequence, then
/// `reconstruction` Linear P→J·C·M.
public final class PCM3Decoder: Module {
  let gru: GRU
  let reconstruction: Linear

  init(width: Int, outputs: Int) throws {
    gru = try GRU(input: width, hidden: width, layers: 2, mode: .unidirectional)
    reconstruction = Linear(width, outputs)
    super.init()
    child("decoder", gru)
    child("reconstruction", reconstruction)
    try Initialization.torchDefault(reconstruction)
  }

  /// `[N, T, P] -> [N, T, J·C·M]`.
  func callAsFunction(_ x: Tensor) throws -> Tensor { try reconstruction(gru(x)) }
}

/// PCM3 with prompts (methods.md §7), named as the official `MoCo` state dict so that its
/// checkpoints load: prompts, `encoder_q.*`, `encoder_k.*` (the momentum key branch, frozen),
/// `linear.*`, `recons_decoder.*`, `queue` `[dim, K]` (one unit key per column) and `queue_ptr`.
public final class PCM3Model: Module {
  public let clPrompt: Parameter
  public let mpPrompt: Parameter
  public let basePrompt: Parameter
  public let maskPrompt: Parameter
  public let reconsPrompt: Parameter
  public let mixPrompt: Parameter
  public let query: PCM3Branch
  public let key: PCM3Branch
  let head: PCM3PredictionHead
  let decoder: PCM3Decoder
  public let queue: Buffer
  public let queuePointer: Buffer

  init(
    backbone: any SequenceEncoder, inputs: Int, dimension: Int, queueSize: Int, prompt: Int,
    prediction: Int
  ) throws {
    let features = backbone.featureDimension
    clPrompt = Parameter(try Initialization.xavierUniform([1, prompt]))
    mpPrompt = Parameter(try Initialization.xavierUniform([1, prompt]))
    basePrompt = Parameter(try Initialization.xavierUniform([1, 1, inputs]))
    maskPrompt = Parameter(try Initialization.xavierUniform([1, 1, inputs]))
    reconsPrompt = Parameter(try Initialization.xavierUniform([1, 1, inputs]))
    mixPrompt = Parameter(try Initialization.xavierUniform([1, 1, inputs]))
    query = PCM3Branch(
      backbone: backbone, projector: try PCM3Projector(features: features, dimension: dimension))
    key = PCM3Branch(
      backbone: try backbone.tuningCopy(dropPath: 0),
      projector: try PCM3Projector(features: features, dimension: dimension))
    head = try PCM3PredictionHead(features: features, width: prediction)
    decoder = try PCM3Decoder(width: prediction, outputs: inputs)
    queue = Buffer(try Loss.normalized(Tensor.randn([dimension, queueSize]), axis: 0))
    queuePointer = Buffer(Tensor.zeros([1]))
    super.init()
    registerExisting("cl_prompt", clPrompt)
    registerExisting("mp_prompt", mpPrompt)
    registerExisting("base_prompt", basePrompt)
    registerExisting("mask_prompt", maskPrompt)
    registerExisting("recons_prompt", reconsPrompt)
    registerExisting("mix_prompt", mixPrompt)
    registerExisting("queue", queue)
    registerExisting("queue_ptr", queuePointer)
    child("encoder_q", query)
    child("encoder_k", key)
    child("linear", head)
    child("recons_decoder", decoder)
    // The key branch starts as an exact copy and never takes a gradient.
    try ExponentialMovingAverage.copy(from: query, to: key)
    key.setFrozen(true)
  }

  /// `encoder_k ← m·encoder_k + (1 − m)·encoder_q`, every parameter (not the buffers), in
  /// place: the official expression's roundings (`k·m`, `q·(1 − m)`, their sum), without a
  /// temporary the size of each parameter.
  func momentumUpdate(_ m: Double) throws {
    let (keep, take) = (Float(m), Float(1 - m))
    for ((name, q), (_, k)) in zip(query.namedParameters(), key.namedParameters()) {
      guard q.value.shape == k.value.shape else {
        throw TensorError(
          "pcm3",
          "\(name): key \(shapeString(k.value.shape)), query \(shapeString(q.value.shape))")
      }
      let source = q.value.contiguous()
      source.withUnsafeBufferPointer { qs in
        k.value.withUnsafeMutableBufferPointer { ks in
          guard let qb = qs.baseAddress, let kb = ks.baseAddress else { return }  // no elements
          Kernels.momentumBlend(kb, with: qb, count: ks.count, keep: keep, take: take)
        }
      }
    }
  }

  /// The queue pointer as an index.
  var pointer: Int { Int(queuePointer.value.scalars.first ?? 0) }

  /// Writes the keys `[N, dim]` into columns `ptr ..< ptr + N` and advances the pointer by N
  /// (mod K); K must be divisible by N (the reference writes without wrap-around).
  func enqueue(_ keys: Tensor) throws {
    let (dimension, size) = (queue.value.shape[0], queue.value.shape[1])
    let n = keys.shape[0]
    let start = pointer
    guard start + n <= size else {
      throw TensorError("pcm3", "the queue of \(size) keys cannot take \(n) keys at \(start)")
    }
    let values = keys.detached().contiguous().scalars
    var q = queue.value
    q.withUnsafeMutableBufferPointer { rows in
      for i in 0..<n {
        for c in 0..<dimension { rows[c * size + start + i] = values[i * dimension + c] }
      }
    }
    queue.value = q
    queuePointer.value = Tensor([Float((start + n) % size)])
  }
}

/// The random draws of one PCM3 step (what the official forward draws inside it).
public struct PCM3Draws: Sendable {
  /// Feature-prompt offsets in order of use: q, per-frame masked features, mask_q, predicted
  /// view, mixed view, key (§7.3, the fixture's `st_idx`).
  public var offsets: [Int]
  public var mix: Transforms.MixDraw
  /// `[N, T, J·C·M]`, 1 = visible (body 2 always visible).
  public var mask: Tensor
  /// PCM3++: each sample's clip `(start, length)` in frames.
  public var clips: [(start: Int, length: Int)]

  public init(
    offsets: [Int], mix: Transforms.MixDraw, mask: Tensor, clips: [(start: Int, length: Int)] = []
  ) {
    self.offsets = offsets
    self.mix = mix
    self.mask = mask
    self.clips = clips
  }
}

/// PCM3 (methods.md §7) and PCM3++ (§7.6): MoCo v2 with similarity distillation over four
/// query views — the query view v1, the masked view (v3 with body parts hidden), the view its
/// masked motion prediction fills in, and the mixed view — and the reconstruction loss, with
/// input and feature prompts. PCM3++ adds the clip contrast (a short temporal clip of v1
/// against the key of the whole v1) and the post-distillation stage (the distillation terms
/// alone). Every term can be switched off.
public final class PCM3Trainer: Pretrainer {
  public let name: String
  public let model: PCM3Model
  public let layout: JointLayout
  public let coordinates: Int
  public let bodies: Int
  public let frames: Int
  public let temperature: Float
  public let momentum: Double
  public let queueSize: Int
  public let promptHalf: Int
  public let studentTemperature: Float = 0.1
  public let teacherTemperature: Float = 0.05
  public let prompts: Bool
  public let mixing: Bool
  public let masked: Bool
  public let predicted: Bool
  public let distill: Double
  public let reconstruction: Double
  /// PCM3++: the clip length as a fraction of the frames (clips of `clip/2 … clip` of them),
  /// nil for none; its weight.
  public let clip: Double?
  public let clipWeight: Double
  /// "pretrain" or "distill" (post-distillation: the similarity-distillation terms alone).
  public let stage: String
  public let maskPerSample: Bool
  public let mixSegments: ClosedRange<Int>
  public let clipNorm: Float? = nil
  public let decayExclusion = DecayExclusion.none
  public let teacher: Module? = nil

  public var student: Module { model }
  /// Every term of the last loss evaluation (`ce.base`, `kl.mix`, `loss_rec`, ...), by name.
  public private(set) var lastTerms: [(String, Double)] = []
  public var backbone: any SequenceEncoder { model.query.backbone }
  public var optimizerKind: OptimizerKind { .sgd(momentum: 0.9) }

  public init(
    encoder: any SequenceEncoder, layout: JointLayout, coordinates: Int = 3, bodies: Int = 2,
    dimension: Int = 128, queue: Int = 16384, momentum: Double = 0.999, temperature: Double = 0.07,
    prompt: Int? = nil, prediction: Int = 512, prompts: Bool = true, mixing: Bool = true,
    masked: Bool = true, predicted: Bool = true, distill: Double = 1, reconstruction: Double = 40,
    clip: Double? = nil, clipWeight: Double = 1, maskPerSample: Bool = false,
    mixSegments: ClosedRange<Int>? = nil
  ) throws {
    func fail(_ message: String) -> TensorError { TensorError("pcm3", message) }
    guard layout.count == encoder.joints else {
      throw fail(
        "the encoder has \(encoder.joints) joints and the layout \(layout.name) \(layout.count)")
    }
    if masked || mixing { try layout.requireStructure("pcm3") }
    let features = encoder.featureDimension
    guard features % 2 == 0, features >= 4 else {
      throw fail("the encoder's feature (\(features)) must be even and at least 4 wide")
    }
    let half = features / 2
    let width = prompt ?? min(256, half)
    guard width >= 2, width % 2 == 0, width / 2 < half else {
      throw fail(
        "prompt (\(width)) must be even, at least 2 and its half below \(half) (half the "
          + "feature)")
    }
    guard dimension > 0, queue > 0, prediction > 0, (0..<1).contains(momentum),
      temperature > 0, distill >= 0, reconstruction >= 0, clipWeight >= 0
    else {
      throw fail(
        "dim, queue and prediction must be positive, momentum in [0, 1), temperature positive "
          + "and the weights non-negative")
    }
    if let clip, !(clip > 0 && clip < 1) {
      throw fail("clip is a fraction of the frames in (0, 1), got \(clip)")
    }
    let frames = encoder.frames
    let segments = frames / 4
    let span = mixSegments ?? Transforms.mixSegmentRange(segments: segments)
    if mixing, !(span.lowerBound >= 1 && span.upperBound <= segments) {
      throw fail(
        "mixing needs \(span.lowerBound)...\(span.upperBound) segments of 4 frames, and "
          + "\(frames) frames have \(segments)")
    }
    self.layout = layout
    self.coordinates = coordinates
    self.bodies = bodies
    self.frames = frames
    self.temperature = Float(temperature)
    self.momentum = momentum
    self.queueSize = queue
    self.promptHalf = width / 2
    self.prompts = prompts
    self.mixing = mixing
    self.masked = masked
    self.predicted = predicted && masked
    self.distill = distill
    self.reconstruction = reconstruction
    self.clip = clip
    self.clipWeight = clipWeight
    self.stage = "pretrain"
    self.maskPerSample = maskPerSample
    self.mixSegments = span
    name = clip == nil ? "pcm3" : "pcm3pp"
    model = try PCM3Model(
      backbone: encoder, inputs: layout.count * coordinates * bodies, dimension: dimension,
      queueSize: queue, prompt: width, prediction: prediction)
  }

  /// The same model in another stage (post-distillation shares every tensor).
  init(_ other: PCM3Trainer, stage: String) {
    (name, model, layout, coordinates, bodies, frames) = (
      other.name, other.model, other.layout, other.coordinates, other.bodies, other.frames
    )
    (temperature, momentum, queueSize, promptHalf) = (
      other.temperature, other.momentum, other.queueSize, other.promptHalf
    )
    (prompts, mixing, masked, predicted) = (
      other.prompts, other.mixing, other.masked, other.predicted
    )
    (distill, reconstruction, clip, clipWeight) = (
      other.distill, other.reconstruction, other.clip, other.clipWeight
    )
    (maskPerSample, mixSegments) = (other.maskPerSample, other.mixSegments)
    self.stage = stage
  }

  /// The post-distillation stage of PCM3++ (§7.6) on this trainer's model.
  public func distillation() throws -> PCM3Trainer {
    guard distill > 0 else {
      throw TensorError("pcm3_distill", "the trainer's distillation weight is 0: nothing to train")
    }
    return PCM3Trainer(self, stage: "distill")
  }

  /// The three views of §1.8: the query and key views (crop-resize of 10–100%, joint
  /// corruption or shear) and the view to mask (crop-resize, shear).
  public var views: [[Augmentation]] {
    let crop = Augmentation.randomCrop(window: frames, low: 0.1, high: 1, minimum: min(64, frames))
    return [
      [crop, .corruptOrShear(probability: 0.5)], [crop, .corruptOrShear(probability: 0.5)],
      [crop, .shear(amount: 1)],
    ]
  }

  /// The draws of one step for views of `n` clips of `t` frames.
  public func draw(batch n: Int, frames t: Int, generator g: inout RandomGenerator) throws
    -> PCM3Draws
  {
    let offsets = try (0..<6).map { _ in
      try g.nextInt(below: model.query.backbone.featureDimension / 2 - promptHalf)
    }
    let mix =
      mixing
      ? try Transforms.drawMix(
        batch: n, frames: t, layout: layout, segments: mixSegments, generator: &g)
      : Transforms.MixDraw(shift: 1, parts: [], segments: 1, start: 0, p: 1, lamb: 0)
    let v = layout.count
    let width = v * coordinates * bodies
    var visible = [Float](repeating: 1, count: n * t * width)
    if masked {
      for i in 0..<(maskPerSample ? n : 1) {
        let hidden = try Transforms.bodyPartMask(frames: t, layout: layout, generator: &g).scalars
        for sample in (maskPerSample ? i..<(i + 1) : 0..<n) {
          for f in 0..<t {
            for j in 0..<v where hidden[f * v + j] != 0 {
              for c in 0..<coordinates {
                visible[(sample * t + f) * width + (j * coordinates + c) * bodies] = 0
              }
            }
          }
        }
      }
    }
    var clips: [(start: Int, length: Int)] = []
    if let clip {
      let longest = max(1, Int((Double(t) * clip).rounded(.down)))
      let shortest = max(1, longest / 2)
      for _ in 0..<n {
        let length = shortest + (try g.nextInt(below: longest - shortest + 1))
        clips.append((try g.nextInt(below: t - length + 1), length))
      }
    }
    return PCM3Draws(
      offsets: offsets, mix: mix, mask: try Tensor(shape: [n, t, width], scalars: visible),
      clips: clips)
  }

  /// `feature + prompt` with the prompt's halves at `[st, st+P)` and `[H+st, H+st+P)`.
  func featurePrompt(_ feature: Tensor, _ prompt: Parameter, _ st: Int) throws -> Tensor {
    guard prompts else { return feature }
    let width = feature.shape[feature.rank - 1]
    let half = width / 2
    let p = promptHalf
    let value = prompt.value
    let gap = half - st - p
    var pieces: [Tensor] = []
    if st > 0 { pieces.append(Tensor.zeros([1, st])) }
    pieces.append(try value[.all, .range(0, p, 1)])
    if gap + st > 0 { pieces.append(Tensor.zeros([1, gap + st])) }
    pieces.append(try value[.all, .range(p, 2 * p, 1)])
    if gap > 0 { pieces.append(Tensor.zeros([1, gap])) }
    return try feature + Tensor.concat(pieces, axis: 1)
  }

  func inputPrompt(_ frames: Tensor, _ prompt: Parameter) throws -> Tensor {
    prompts ? try frames + prompt.value : frames
  }

  /// Everything one loss evaluation computes (the fixture's names).
  public struct Outputs {
    public var loss: Tensor
    public var terms: [String: Tensor] = [:]
    public var tensors: [String: Tensor] = [:]
  }

  /// InfoNCE logits `[a·b, a·queue] / T` and the queue similarities `a·queue`.
  func logits(_ a: Tensor, _ b: Tensor, _ queue: Tensor) throws -> (Tensor, Tensor) {
    let positive = try (a * b.detached()).sum(axes: [1], keepDim: true)
    let negative = try a.matmul(queue)
    return (try Tensor.concat([positive, negative], axis: 1) * (1 / temperature), negative)
  }

  /// One PCM3 loss evaluation on views `[N, C, T, V, M]` with given draws: also updates the
  /// key branch (before its pass), the BatchNorm statistics, and enqueues the keys, as the
  /// reference forward does.
  ///
  /// In a data-parallel step (`DataParallel.current`) the views and draws are still the whole
  /// batch's: this rank computes its samples' terms (means over them, as `fit` weights them),
  /// mixes with partners on any rank, and enqueues the keys of every rank in batch order.
  public func step(
    _ fullV1: Tensor, _ fullV2: Tensor, _ fullV3: Tensor, draws fullDraws: PCM3Draws
  ) throws -> Outputs {
    let (batch, t) = (fullV1.shape[0], fullV1.shape[2])
    guard queueSize % batch == 0 else {
      throw TensorError(
        name,
        "the queue (\(queueSize) keys) must be divisible by the batch (\(batch) clips): choose "
          + "a batch that divides it")
    }
    let parallel = DataParallel.current
    let share = parallel?.share ?? 0..<batch
    let rows = Array(share)
    func mine(_ x: Tensor) throws -> Tensor {
      parallel == nil ? x : try x.indexSelect(axis: 0, indices: rows)
    }
    let (v1, v2, v3) = (try mine(fullV1), try mine(fullV2), try mine(fullV3))
    var draws = fullDraws
    draws.mask = try mine(fullDraws.mask)
    draws.clips = fullDraws.clips.isEmpty ? [] : rows.map { fullDraws.clips[$0] }
    let n = share.count
    let query = model.query
    let encoder = query.backbone
    let st = draws.offsets
    let distilling = stage == "distill"
    // The query branch's views, in the order of the official step. Views that do not depend
    // on each other go through the encoder together (`frameFeatures(batches:)`): first the
    // query and masked views, then the reconstructed, mixed and clip views.
    func sequences(_ views: [Tensor]) throws -> [(frames: Tensor, sequence: Tensor)] {
      try encoder.frameFeatures(batches: views, coordinates: coordinates, bodies: bodies)
    }
    // Partners may be other ranks' samples: the whole batch is mixed.
    let mix =
      mixing ? try Transforms.mix(fullV1.detached(), layout: layout, draw: draws.mix) : nil
    // The keys: momentum update first, then the key branch, without gradients. The official
    // step runs them after the query branch's passes, which change neither the query
    // encoder's parameters nor anything the key branch reads, and the key branch draws no
    // random numbers (its copy has no drop path): so they can run first, with the same numbers,
    // and the key pass's buffers come and go before the query passes' saved activations build
    // up.
    let (k, kc, kClip, batchKeys): (Tensor, Tensor?, Tensor?, Tensor) = try Autograd.noGrad {
      try model.momentumUpdate(momentum)
      let keyEncoder = model.key.backbone
      func key(_ x: Tensor) throws -> Tensor {
        let feature = try keyEncoder.frameFeatures(
          inputPrompt(flattenFrames(x), model.basePrompt), coordinates: coordinates,
          bodies: bodies
        ).sequence
        return try Loss.normalized(
          model.key.projector(featurePrompt(feature, model.clPrompt, st[5])))
      }
      let k = try key(v2)
      let batchKeys = try allKeys(k, batch: batch)
      var kc: Tensor?
      if let mix {
        let lam = Float(mix.lam)
        let partner = rows.map { ($0 + mix.shift) % batch }
        kc = try Loss.normalized(
          k * (1 - lam) + batchKeys.indexSelect(axis: 0, indices: partner) * lam)
      }
      return (k, kc, clip == nil ? nil : try key(v1), batchKeys)
    }
    var out = Outputs(loss: Tensor(0))
    let flat1 = try flattenFrames(v1)
    var maskedView: (mask: Tensor, target: Tensor, x: Tensor)?
    var firstViews = [try inputPrompt(flat1, model.basePrompt)]
    if masked {
      let target = try flattenFrames(v3)
      let xMask = try target * draws.mask
      maskedView = (draws.mask, target, xMask)
      firstViews.append(try inputPrompt(xMask, model.maskPrompt))
    }
    let firstPass = try sequences(firstViews)
    // The query view.
    let featQ = try featurePrompt(firstPass[0].sequence, model.clPrompt, st[0])
    let q = try Loss.normalized(query.projector(featQ))
    out.tensors["feat.q"] = featQ
    out.tensors["q"] = q
    var queries: [(String, Tensor, mixed: Bool)] = [("base", q, false)]
    var lossRec: Tensor?
    var secondViews: [Tensor] = []
    if let (mask, target, xMask) = maskedView {
      let seq = firstPass[1]
      let width = seq.frames.shape[2]
      let perFrame = try featurePrompt(
        seq.frames.reshaped([n * t, width]), model.mpPrompt, st[1])
      out.tensors["seq_feat"] = try perFrame.reshaped([n, t, width])
      let reconsDetached =
        predicted
        ? try model.decoder(model.head(perFrame.detached()).reshaped([n, t, -1])) : nil
      let recons = try model.decoder(model.head(perFrame).reshaped([n, t, -1]))
      out.tensors["recons_data"] = recons
      let featMask = try featurePrompt(seq.sequence, model.clPrompt, st[2])
      let maskQ = try Loss.normalized(query.projector(featMask))
      out.tensors["feat.mask_q"] = featMask
      out.tensors["mask_q"] = maskQ
      queries.append(("mask", maskQ, false))
      let hidden = 1 - mask
      let error = try (recons - target) * hidden
      if let parallel {
        // Σ error² / Σ hidden over the whole batch; `fit` weights this rank's terms by its
        // share, which the division by the weight undoes.
        lossRec =
          try (error * error).sum() / hidden.sum().summedOverRanks() * (1 / parallel.weight)
      } else {
        lossRec = try (error * error).sum() / hidden.sum()
      }
      if let reconsDetached {
        let predictedView = try reconsDetached * hidden + xMask * mask
        out.tensors["pred_view"] = predictedView
        secondViews.append(try inputPrompt(predictedView, model.reconsPrompt))
      }
    }
    let reconstructed = !secondViews.isEmpty
    var mixedView: Tensor?
    if let mix {
      let view = try mine(mix.x)
      mixedView = view
      secondViews.append(try inputPrompt(flattenFrames(view), model.mixPrompt))
    }
    if clip != nil {
      // PCM3++: the query branch sees only each sample's clip (other frames zeroed).
      var keep = [Float](repeating: 0, count: n * t)
      for (i, c) in draws.clips.enumerated() where i < n {
        for f in c.start..<min(c.start + c.length, t) { keep[i * t + f] = 1 }
      }
      let clipFrames = try flat1 * Tensor(shape: [n, t, 1], scalars: keep)
      secondViews.append(try inputPrompt(clipFrames, model.basePrompt))
    }
    var secondPass = try sequences(secondViews)[...]
    if reconstructed, let view = secondPass.popFirst() {
      let featRecons = try featurePrompt(view.sequence, model.clPrompt, st[3])
      let reconsQ = try Loss.normalized(query.projector(featRecons))
      out.tensors["feat.recons_q"] = featRecons
      out.tensors["recons_q"] = reconsQ
      queries.append(("recons", reconsQ, false))
    }
    if let mixedView, let view = secondPass.popFirst() {
      let featMix = try featurePrompt(view.sequence, model.clPrompt, st[4])
      let pc = try Loss.normalized(query.projector(featMix))
      out.tensors["mix_view"] = mixedView
      out.tensors["feat.pc"] = featMix
      out.tensors["pc"] = pc
      queries.append(("mix", pc, true))
    }
    var clipQuery: Tensor?
    if clip != nil, let view = secondPass.popFirst() {
      let featClip = try featurePrompt(view.sequence, model.clPrompt, st[0])
      clipQuery = try Loss.normalized(query.projector(featClip))
      out.tensors["clip_q"] = clipQuery
    }
    out.tensors["k"] = k
    if let kc { out.tensors["kc"] = kc }
    let queue = model.queue.value
    let keyNegatives = try k.matmul(queue)
    var total = Tensor(0)
    var klTotal = Tensor(0)
    func contrast(_ label: String, _ a: Tensor, _ positive: Tensor, _ negatives: Tensor) throws {
      let (l, neg) = try logits(a, positive, queue)
      out.tensors[label == "base" ? "logits" : "logits_" + label] = l
      let ce = try Loss.crossEntropy(l, labels: Tensor.zeros([n]))
      out.terms["ce." + label] = ce
      if !distilling { total = try total + ce }
      if distill > 0 {
        let kl = try Loss.klDivergence(
          teacherLogits: negatives * (1 / teacherTemperature),
          studentLogits: neg * (1 / studentTemperature))
        out.terms["kl." + label] = kl
        klTotal = try klTotal + kl
      }
    }
    for (label, a, mixed) in queries {
      if mixed, let kc {
        try contrast(label, a, kc, kc.matmul(queue))
      } else {
        try contrast(label, a, k, keyNegatives)
      }
    }
    if let clipQuery, let kClip {
      let (l, neg) = try logits(clipQuery, kClip, queue)
      let ce = try Loss.crossEntropy(l, labels: Tensor.zeros([n]))
      out.terms["ce.clip"] = ce
      var clipLoss = distilling ? Tensor(0) : ce
      if distill > 0 {
        let kl = try Loss.klDivergence(
          teacherLogits: kClip.matmul(queue) * (1 / teacherTemperature),
          studentLogits: neg * (1 / studentTemperature))
        out.terms["kl.clip"] = kl
        clipLoss = try clipLoss + kl * Float(distill)
      }
      total = try total + clipLoss * Float(clipWeight)
    }
    if distill > 0 {
      let sim = klTotal * Float(distill)
      out.terms["loss_sim"] = sim
      total = try total + sim
    }
    if let lossRec {
      out.terms["loss_rec"] = lossRec
      if !distilling { total = try total + lossRec * Float(reconstruction) }
    }
    try model.enqueue(batchKeys)
    out.loss = total
    let names = out.terms.keys.sorted()
    var values = try names.map { try out.terms[$0]!.item() * (parallel?.weight ?? 1) }
    try parallel?.group.allReduceSum(&values)
    lastTerms = zip(names, values).map { ($0, Double($1)) }
    return out
  }

  /// The keys of the whole batch `[batch, dim]` from this rank's `[n, dim]` (every rank's, in
  /// batch order, in a data-parallel step).
  func allKeys(_ k: Tensor, batch: Int) throws -> Tensor {
    guard let parallel = DataParallel.current, parallel.group.size > 1 else { return k }
    let blocks = try parallel.group.allGather(k.contiguous().scalars)
    return try Tensor(shape: [batch, k.shape[1]], scalars: blocks.flatMap { $0 })
  }

  public func loss(_ batch: Tensor, generator: inout RandomGenerator) throws -> Tensor {
    guard batch.rank == 5, batch.shape[0] % 3 == 0, batch.shape[0] >= 9 else {
      throw TensorError(
        name,
        "expects the three views of a batch stacked, [3·N, C, T, V, M] with N ≥ 3 (fit makes "
          + "them; by hand: pcm3_views(t, x)), got \(shapeString(batch.shape))")
    }
    guard batch.shape[1] == coordinates, batch.shape[3] == layout.count,
      batch.shape[4] == bodies
    else {
      throw TensorError(
        name,
        "expects views [3·N, \(coordinates), T, \(layout.count), \(bodies)], got "
          + shapeString(batch.shape)
          + (batch.shape[3] != layout.count
            ? " (build the encoder with joints=\(batch.shape[3]))" : ""))
    }
    let n = batch.shape[0] / 3
    let views = try batch.split(parts: 3, axis: 0)
    let draws = try draw(batch: n, frames: batch.shape[2], generator: &generator)
    return try step(views[0], views[1], views[2], draws: draws).loss
  }

  public func afterStep(_ step: Int, of totalSteps: Int) throws {}

  public func validate(_ data: SkeletonDataset, batch: Int) throws {
    let shape = data.sampleShape  // [C, T, V, M]
    guard shape.count == 4, shape[0] == coordinates, shape[2] == layout.count,
      shape[3] == bodies
    else {
      let hint =
        shape.count == 4 && shape[2] != layout.count
        ? " (build the encoder with joints=\(shape[2]))"
        : shape.count == 4 && shape[3] != bodies
          ? " (build the encoder with bodies=\(shape[3]))" : ""
      throw TensorError(
        name,
        "expects samples [\(coordinates), T, \(layout.count), \(bodies)], the data has "
          + shapeString(shape) + hint)
    }
    guard batch >= 3, queueSize % batch == 0 else {
      throw TensorError(
        name,
        "the batch (\(batch)) must be at least 3 and divide the queue (\(queueSize) keys): "
          + "the reference writes the keys without wrap-around")
    }
  }

  public var configuration: [(String, String)] {
    var rows: [(String, String)] = [
      ("method", name), ("stage", stage), ("queue", "\(queueSize)"),
      ("dim", "\(model.query.projector.second.weight.value.shape[0])"),
      ("momentum", "\(momentum)"), ("temperature", "\(temperature)"),
      ("prompt", prompts ? "\(2 * promptHalf)" : "off"),
      ("mixing", mixing ? "segments \(mixSegments.lowerBound)...\(mixSegments.upperBound)" : "off"),
      ("masked", masked ? (maskPerSample ? "per sample" : "shared by the batch") : "off"),
      ("predicted", predicted ? "on" : "off"),
      ("distill", "\(distill)"), ("reconstruction", "\(reconstruction)"),
    ]
    if let clip { rows.append(("clip", "\(clip) (weight \(clipWeight))")) }
    return rows
  }
}
