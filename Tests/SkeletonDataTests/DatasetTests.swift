import Foundation
import SkeletonData
import TensorCore
import TestSupport
import Testing

/// Datasets from the preprocessed layouts (files written by Tests/Data/skeleton/
/// make_skeleton_files.py), the synthetic set, splits, subsets, the cache and the loader.
@Suite("Datasets", .timed)
struct DatasetTests {
  static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Data/skeleton").path

  /// The value the generator script put at (coordinate, frame, joint, body).
  func encoded(_ c: Int, _ t: Int, _ v: Int, _ m: Int) -> Float {
    Float(Double(100 * m + v) + 0.1 * Double(c) + Double(t) / 1000 + 1)
  }

  @Test func mampNpzLoadsBodyMajorJointXyzAsCTVM() throws {
    for name in ["mamp_tiny.npz", "mamp_tiny_deflated.npz"] {
      let train = try DatasetReaders.npz(path: Self.folder + "/" + name, split: "train")
      #expect(train.count == 3 && train.sampleShape == [3, 300, 25, 2])
      #expect(train.labels == [0, 3, 4])
      // §10.1: (n, 300, 150) -> (n, 3, 300, 25, 2), body-major -> joint -> xyz.
      let s = try train.sample(1)
      for (c, t, v, m) in [(0, 0, 0, 0), (2, 17, 24, 1), (1, 299, 3, 0)] {
        #expect(abs(try s.data.element(at: [c, t, v, m]) - encoded(c, t, v, m)) < 1e-4)
      }
      #expect(s.length == 300)  // a gap inside the clip does not shorten it
      #expect(try train.sample(0).length == 120)
      let test = try DatasetReaders.npz(path: Self.folder + "/" + name, split: "test")
      #expect(try test.labels == [2, 1] && test.sample(1).length == 10)
    }
    let error = #expect(throws: TensorError.self) {
      try DatasetReaders.npz(path: Self.folder + "/mamp_tiny.npz", split: "val")
    }
    #expect(error?.message.contains("no 'x_val'") == true)
  }

  @Test func agcnLayoutWithPickleOrNpyLabels() throws {
    let data = Self.folder + "/agcn_train_data_joint.npy"
    let pickled = try DatasetReaders.agcn(
      data: data, labels: Self.folder + "/agcn_train_label.pkl",
      frames: Self.folder + "/agcn_train_num_frame.npy")
    #expect(pickled.labels == [0, 9, 57])
    #expect(try pickled.sample(1).length == 300)  // 320 clipped to the 300 stored frames
    #expect(try pickled.metadata(1).subject == 3 && pickled.metadata(1).view == 2)
    #expect(abs(try pickled.sample(0).data.element(at: [1, 4, 7, 1]) - encoded(1, 4, 7, 1)) < 1e-4)
    let plain = try DatasetReaders.agcn(data: data, labels: Self.folder + "/agcn_train_label.npy")
    #expect(try plain.labels == [0, 9, 57] && plain.sample(2).length == 7)
  }

  /// The folder CTR-GCN-style preprocessing writes (train_* beside val_* or test_*) reads as
  /// a train/test pair; a folder without labels is an error naming the file.
  @Test func agcnFolderLayoutGivesTrainAndTest() throws {
    let root = try temporaryFolder("agcn-folder")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let files = FileManager.default
    for (split, labels) in [("train", "pkl"), ("test", "npy")] {
      try files.copyItem(
        atPath: Self.folder + "/agcn_train_data_joint.npy",
        toPath: root + "/\(split)_data_joint.npy")
      try files.copyItem(
        atPath: Self.folder + "/agcn_train_label.\(labels)",
        toPath: root + "/\(split)_label.\(labels)")
    }
    try files.copyItem(
      atPath: Self.folder + "/agcn_train_num_frame.npy", toPath: root + "/train_num_frame.npy")
    let (train, test) = try DatasetReaders.agcnFolder(root)
    #expect(train.labels == [0, 9, 57] && test.labels == [0, 9, 57])
    #expect(try train.sample(2).length == 7 && test.sample(1).length == 300)
    try files.removeItem(atPath: root + "/test_label.npy")
    let error = #expect(throws: TensorError.self) { try DatasetReaders.agcnFolder(root) }
    #expect(error?.message.contains("test_label.pkl (or .npy) is missing") == true, "\(error!)")
  }

  /// Data of a joint count no layout describes reads with a generic layout (models and token
  /// masks need none); what needs the skeleton's structure says how to describe it.
  @Test func undescribedJointCountsReadAndSayHowToDescribeThem() throws {
    let root = try temporaryFolder("joints-18")
    defer { try? FileManager.default.removeItem(atPath: root) }
    try NumPy.writeArray(
      try Tensor(
        shape: [2, 3, 8, 18, 1], scalars: (0..<(2 * 3 * 8 * 18)).map { Float($0 % 11) + 1 }),
      to: root + "/data.npy")
    try NumPy.writeArray(Tensor([0, 1]), to: root + "/labels.npy")
    let ds = try DatasetReaders.agcn(data: root + "/data.npy", labels: root + "/labels.npy")
    #expect(ds.layout.count == 18 && ds.layout.isGeneric)
    var g = RandomGenerator(seed: 1)
    let error = #expect(throws: TensorError.self) {
      _ = try Transforms.occludeParts(
        ds.sample(0).data, layout: ds.layout, count: 1, generator: &g)
    }
    #expect(error?.message.contains("18 joints match no layout") == true)
    #expect(error?.message.contains("joint_layout(") == true)
    #expect(throws: TensorError.self) {
      _ = try SkeletonDrawing.svg(ds.sample(0), layout: ds.layout)
    }
  }

  @Test func pysklAnnotationsBySplit() throws {
    let path = Self.folder + "/pyskl_tiny_3danno.pkl"
    let train = try DatasetReaders.pyskl(path: path, split: "xsub_train")
    #expect(train.count == 2 && train.labels == [3, 7])
    #expect(train.sampleShape == [3, 95, 25, 2])
    let first = try train.sample(0)
    #expect(first.length == 40)
    #expect(abs(try first.data.element(at: [2, 39, 10, 0]) - encoded(2, 39, 10, 0)) < 1e-4)
    #expect(try first.data.element(at: [0, 0, 0, 1]) == 0)  // a one-person clip gets a zero body 2
    let val = try DatasetReaders.pyskl(path: path, split: "xsub_val")
    #expect(val.labels == [0])
    #expect(throws: TensorError.self) { try DatasetReaders.pyskl(path: path, split: "xset_train") }
  }

  @Test func pkummdInstancesAreCutFromTheLabelRows() throws {
    let samples = try DatasetReaders.pkummd(
      skeleton: Self.folder + "/pkummd_0002-L.txt", labels: Self.folder + "/pkummd_0002-L_label.txt"
    )
    #expect(samples.map(\.label) == [2, 11])
    #expect(samples.map(\.length) == [30, 35])
    // Instance 1 starts at frame 10 of the sequence.
    #expect(abs(try samples[0].data.element(at: [0, 0, 5, 1]) - encoded(0, 10, 5, 1)) < 1e-4)
    #expect(try samples[0].data.element(at: [0, 30, 5, 1]) == 0)
  }

  @Test func syntheticSetIsDeterministicBalancedAndSplits() throws {
    let generator = try SyntheticSkeletons(
      seed: 7, subjects: 4, views: 3, repetitions: 1, frames: 32)
    let ds = SkeletonDataset.synthetic(generator)
    let classes = SyntheticSkeletons.classes.count
    #expect(ds.count == classes * 4 * 3)
    #expect(classes >= 12)
    let a = try ds.sample(17)
    let b = try SkeletonDataset.synthetic(generator).sample(17)
    #expect(a.data.scalars == b.data.scalars && a.label == b.label)
    let other = try SkeletonDataset.synthetic(SyntheticSkeletons(seed: 8, subjects: 4, frames: 32))
      .sample(17)
    #expect(other.data.scalars != a.data.scalars)
    #expect(a.data.shape == [3, 32, 25, 2] && a.length >= 19 && a.length <= 32)
    try a.validate()
    // Every class appears equally often; two-person classes fill body 2.
    var counts = [Int](repeating: 0, count: classes)
    for label in ds.labels { counts[label] += 1 }
    #expect(Set(counts) == [12])
    let handshake = try ds.sample(
      ds.labels.firstIndex(of: SyntheticSkeletons.classes.firstIndex(of: "handshake") ?? 0) ?? 0)
    #expect(try handshake.data[.all, .all, .all, .index(1)].abs().max().item() > 0)
    let (train, test) = try ds.standardSplit("xsub")
    #expect(train.count == classes * 6 && test.count == classes * 6)
    #expect(try (0..<train.count).allSatisfy { try train.metadata($0).subject % 2 == 1 })
    let (viewTrain, viewTest) = try ds.standardSplit("xview")
    #expect(viewTrain.count == classes * 8 && viewTest.count == classes * 4)
    // Semi-supervised subsets: per class, seeded.
    let tenth = try train.fraction(0.1, seed: 3)
    #expect(tenth.count == classes)
    #expect(Set(tenth.labels).count == classes)
    #expect(try train.fraction(0.1, seed: 3).indices == tenth.indices)
    #expect(try train.fraction(0.1, seed: 4).indices != tenth.indices)
  }

  @Test func cacheRoundTrip() throws {
    let ds = try DatasetReaders.npz(path: Self.folder + "/mamp_tiny.npz", split: "train")
    let path = FileManager.default.temporaryDirectory.path + "/skellab-cache-\(getpid()).npz"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try ds.cache(to: path)
    let back = try SkeletonDataset.cached(path: path, kind: "npz")
    #expect(back.count == 3 && back.labels == ds.labels)
    for i in 0..<3 {
      #expect(try back.sample(i).data.scalars == ds.sample(i).data.scalars)
      #expect(try back.sample(i).length == ds.sample(i).length)
    }
  }

  @Test func loaderIsDeterministicAndResumes() throws {
    let generator = try SyntheticSkeletons(
      seed: 1, subjects: 2, views: 1, repetitions: 1, frames: 32)
    let ds = SkeletonDataset.synthetic(generator)
    let steps: [Augmentation] = [
      .randomCrop(window: 16, low: 0.5, high: 1, minimum: 8), .rotate(theta: 0.3),
    ]
    func run(_ loader: Loader, epochs: Int) throws -> [[Int]] {
      var orders: [[Int]] = []
      for _ in 0..<epochs {
        try loader.forEachBatch {
          orders.append($0.indices); return true
        }
      }
      return orders
    }
    let a = try Loader(dataset: ds, batchSize: 5, seed: 9, augmentations: steps)
    let b = try Loader(dataset: ds, batchSize: 5, seed: 9, augmentations: steps)
    let ordersA = try run(a, epochs: 2)
    #expect(ordersA == (try run(b, epochs: 2)))
    // 2 subjects × 17 classes = 34 samples: 7 batches of 5 (the last of 4) per epoch.
    #expect(ordersA.count == 14 && ordersA[0].count == 5 && ordersA[6].count == 4)
    #expect(ordersA[0] != ordersA[7])  // a new order each epoch
    // The same batch values whichever thread made them, and after a resume.
    let direct = try a.batch(epoch: 1, index: 2, order: a.order(epoch: 1))
    let c = try Loader(dataset: ds, batchSize: 5, seed: 9, augmentations: steps)
    try c.resume(epoch: 1, position: 2)
    var resumed: Loader.Batch?
    try c.forEachBatch {
      resumed = $0; return false
    }
    #expect(resumed?.x.scalars == direct.x.scalars && resumed?.labels == direct.labels)
    #expect(direct.x.shape == [5, 3, 16, 25, 2])
    #expect(c.position == 3 && c.epoch == 1)
    // Samples of different lengths need a crop to be batched.
    let npz = try DatasetReaders.pyskl(
      path: Self.folder + "/pyskl_tiny_3danno.pkl", split: "xsub_train")
    #expect(
      try Loader(dataset: npz, batchSize: 2).batch(epoch: 0, index: 0, order: [0, 1]).x.shape == [
        2, 3, 95, 25, 2,
      ])
  }

  @Test func showDrawsAnSVGStrip() throws {
    let ds = SkeletonDataset.synthetic(
      try SyntheticSkeletons(seed: 2, subjects: 1, views: 1, repetitions: 1))
    let sample = try ds.sample(12 * 1)  // a two-person class sits later; this one is single
    var g = RandomGenerator(seed: 1)
    let mask = try Transforms.bodyPartMask(frames: sample.frames, layout: .kinectV2, generator: &g)
    let svg = try SkeletonDrawing.svg(sample, layout: .kinectV2, count: 4, mask: mask)
    #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
    #expect(svg.components(separatedBy: "<line").count - 1 >= 4 * 24)
    #expect(svg.contains("#d62728"))
    let text = try SkeletonDrawing.terminal(sample, layout: .kinectV2, count: 2)
    #expect(text.split(separator: "\n").count == 10)
    #expect(text.unicodeScalars.contains { $0.value > 0x2800 && $0.value <= 0x28FF })
    // A mask rings the hidden joints in the terminal and counts them.
    let masked = try SkeletonDrawing.terminal(sample, layout: .kinectV2, count: 2, mask: mask)
    #expect(masked.hasSuffix("of 25") && masked.contains("hidden joints"))
    let titled = try SkeletonDrawing.svg(sample, layout: .kinectV2, className: "clap")
    #expect(titled.contains("clap (label \(sample.label))"))
  }

  /// A two-person sample (NTU A058, handshaking): every point of each frame's figure stays
  /// inside that frame's panel, so neighbouring figures never overlap.
  @Test func twoBodyStripsStayInTheirPanels() throws {
    let ntu = try DatasetReaders.ntu(folder: TestData.ntu + "/nturgb+d_skeletons")
    let index = try (0..<ntu.count).first { i in
      try ntu.sample(i).source.hasSuffix("A058.skeleton")
    }
    let sample = try ntu.sample(try #require(index))
    let svg = try SkeletonDrawing.svg(sample, layout: .kinectV2, count: 8)
    let panels = svg.components(separatedBy: "<g transform=").dropFirst()
    #expect(panels.count == 8)
    for panel in panels {
      let xs = panel.components(separatedBy: " cx=\"").dropFirst().compactMap {
        Double($0.prefix { $0 != "\"" })
      }
      #expect(
        !xs.isEmpty && xs.allSatisfy { (0...150).contains($0) }, "\(xs.min()!)...\(xs.max()!)")
    }
    #expect(svg.contains("#ff7f0e"))  // the second body is drawn, in its own colour
  }
}
