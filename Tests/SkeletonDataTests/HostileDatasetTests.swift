import Foundation
import SkeletonData
import TensorCore
import TestSupport
import Testing

/// The dataset crash classes of the hardening issue, one named case each: labels that are NaN,
/// negative or huge, negative frame counts, NaN coordinates, NTU files of fewer than 25
/// joints and file names that give no class. Each is a clear error naming the file, or the
/// sample is skipped and listed in `skipped`.
@Suite("Hostile datasets", .timed, .heavy)
struct HostileDatasetTests {
  static let data = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Data/skeleton").path

  func folder(_ name: String) throws -> String {
    let path = NSTemporaryDirectory() + "skellab-hostile-\(name)-\(getpid())"
    try? FileManager.default.removeItem(atPath: path)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  /// A pickle of `(names, labels)` with integer labels, as AGCN's label files are.
  func labelPickle(_ labels: [Int], count: Int) -> Data {
    var bytes: [UInt8] = [0x80, 2, 0x5D, 0x28]  // PROTO, EMPTY_LIST, MARK
    for i in 0..<count { bytes += [0x8C, 1, UInt8(ascii: "a") + UInt8(i % 26)] }
    bytes += [0x65, 0x5D, 0x28]  // APPENDS, EMPTY_LIST, MARK
    for label in labels {
      bytes += [0x8A, 8] + (0..<8).map { UInt8(truncatingIfNeeded: label >> (8 * $0)) }
    }
    bytes += [0x65, 0x86, 0x2E]  // APPENDS, TUPLE2, STOP
    return Data(bytes)
  }

  @Test func agcnLabelsMustBeClassIndices() throws {
    let root = try folder("agcn")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let dataPath = Self.data + "/agcn_train_data_joint.npy"
    let n = try NumPy.readArray(path: dataPath).tensor.shape[0]
    for bad in [-1, 1 << 62, 1_000_000_000, Int.min] {
      let pkl = root + "/labels.pkl"
      var labels = [Int](repeating: 0, count: n)
      labels[n - 1] = bad
      try labelPickle(labels, count: n).write(to: URL(fileURLWithPath: pkl))
      let text = tensorErrorMessage { _ = try DatasetReaders.agcn(data: dataPath, labels: pkl) }
      #expect(text.contains("labels.pkl") && text.contains("label"), "\(bad): \(text)")
    }
    for bad: Float in [.nan, -1, 1e9, 4.6e18, 2.5] {
      let npy = root + "/labels.npy"
      var values = [Float](repeating: 0, count: n)
      values[0] = bad
      try NumPy.writeArray(try Tensor(shape: [n], scalars: values), to: npy)
      let text = tensorErrorMessage { _ = try DatasetReaders.agcn(data: dataPath, labels: npy) }
      #expect(text.contains("labels.npy[0]"), "\(bad): \(text)")
    }
    // Frame counts: negative or NaN is an error; NaN coordinates skip the sample.
    for bad: Float in [-3, .nan] {
      let frames = root + "/frames.npy"
      try NumPy.writeArray(
        try Tensor(shape: [n], scalars: [bad] + Array(repeating: 5, count: n - 1)), to: frames)
      let text = tensorErrorMessage {
        _ = try DatasetReaders.agcn(
          data: dataPath, labels: Self.data + "/agcn_train_label.npy", frames: frames)
      }
      #expect(text.contains("frames.npy[0]"), "\(bad): \(text)")
    }
    var array = try NumPy.readArray(path: dataPath).tensor
    var scalars = array.scalars
    scalars[0] = .nan
    array = try Tensor(shape: array.shape, scalars: scalars)
    let nanPath = root + "/nan.npy"
    try NumPy.writeArray(array, to: nanPath)
    let skipped = try DatasetReaders.agcn(
      data: nanPath, labels: Self.data + "/agcn_train_label.npy")
    #expect(skipped.count == n - 1)
    #expect(skipped.skipped.count == 1 && skipped.skipped[0].contains("NaN"), "\(skipped.skipped)")
  }

  @Test func msrAndNtuNamesMustGiveAClass() throws {
    let root = try folder("names")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let frame = (0..<20).map { "\($0) 1 2 1" }.joined(separator: "\n") + "\n"
    for name in ["a00_s01_e01", "a999999999999999_s01_e01", "a21_s01_e01"] {
      let msr = root + "/msr-\(name)"
      try FileManager.default.createDirectory(atPath: msr, withIntermediateDirectories: true)
      try frame.write(toFile: msr + "/\(name)_skeleton3D.txt", atomically: true, encoding: .utf8)
      let text = tensorErrorMessage { _ = try DatasetReaders.msr(folder: msr) }
      #expect(text.contains(name) && text.contains("a01...a20"), "\(text)")
    }
  }

  /// An NTU file of 20-joint bodies crashed the folder reader (both body choices): it now reads
  /// with the 20-joint layout of its data.
  @Test func ntuFilesOfTwentyJoints() throws {
    let root = try folder("ntu20")
    defer { try? FileManager.default.removeItem(atPath: root) }
    var lines = ["3"]
    for f in 0..<3 {
      lines += ["1", "72057594037931101 0 1 1 1 1 0 0.1 0.2 2", "20"]
      for j in 0..<20 {
        lines.append(
          "\(0.02 * Double(j)) \(0.1 * Double(j) + 0.01 * Double(f)) 3 0 0 0 0 0 0 0 0 2")
      }
    }
    try (lines.joined(separator: "\n") + "\n").write(
      toFile: root + "/S001C001P001R001A005.skeleton", atomically: true, encoding: .utf8)
    for selection in NTUSkeletonReader.BodySelection.allCases {
      let sample = try NTUSkeletonReader.read(
        path: root + "/S001C001P001R001A005.skeleton", selection: selection)
      #expect(sample.data.shape == [3, 3, 20, 2])
      for normalization in DatasetReaders.Normalization.allCases {
        let ds = try DatasetReaders.ntu(
          folder: root, selection: selection, normalization: normalization)
        #expect(ds.count == 1 && ds.layout.count == 20 && ds.sampleShape[2] == 20)
      }
    }
    // A name without the NTU pattern gives no class: an error naming the file.
    try FileManager.default.moveItem(
      atPath: root + "/S001C001P001R001A005.skeleton", toPath: root + "/clip.skeleton")
    let text = tensorErrorMessage { _ = try DatasetReaders.ntu(folder: root) }
    #expect(text.contains("clip.skeleton") && text.contains("SsssCcccPpppRrrrAaaa"), "\(text)")
  }

  @Test func pkummdLabelsAndNaNCoordinates() throws {
    let root = try folder("pku")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let skeleton = try String(
      contentsOfFile: Self.data + "/pkummd_0002-L.txt", encoding: .utf8)
    let labels = root + "/labels.txt"
    for bad in ["0,0,5,1", "-1,0,5,1", "9999999999999,0,5,1", "3,-2,5,1", "3,5,2,1", "x,0,5,1"] {
      try (bad + "\n").write(toFile: labels, atomically: true, encoding: .utf8)
      try skeleton.write(toFile: root + "/0002-L.txt", atomically: true, encoding: .utf8)
      let text = tensorErrorMessage {
        _ = try DatasetReaders.pkummd(skeleton: root + "/0002-L.txt", labels: labels)
      }
      #expect(text.contains("labels.txt:1"), "\(bad): \(text)")
    }
    // A NaN in the frames of one instance skips that instance and lists it.
    var rows = skeleton.split(separator: "\n").map(String.init)
    var first = rows[0].split(separator: " ").map(String.init)
    first[0] = "nan"
    rows[0] = first.joined(separator: " ")
    let skeletons = root + "/skeletons"
    let labelFolder = root + "/labels"
    for path in [skeletons, labelFolder] {
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    try (rows.joined(separator: "\n") + "\n").write(
      toFile: skeletons + "/0002-L.txt", atomically: true, encoding: .utf8)
    let count = rows.count
    try "1,0,\(count / 2),1\n2,\(count / 2),\(count),1\n".write(
      toFile: labelFolder + "/0002-L.txt", atomically: true, encoding: .utf8)
    let ds = try DatasetReaders.pkummd(skeletonFolder: skeletons, labelFolder: labelFolder)
    #expect(ds.count == 1 && ds.skipped.count == 1, "\(ds.skipped)")
  }

  @Test func theDatasetCacheChecksItsColumns() throws {
    let root = try folder("cache")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let x = Tensor.zeros([2, 3, 4, 25, 2])
    for (column, bad) in [
      ("label", Float.nan), ("label", -1), ("label", 1e9), ("length", .infinity),
    ] {
      var arrays: [(name: String, tensor: Tensor)] = [("x", x)]
      for name in ["length", "label", "subject", "view", "setup", "replication"] {
        arrays.append((name, try Tensor(shape: [2], scalars: name == column ? [1, bad] : [1, 1])))
      }
      let path = root + "/cache.npz"
      try NumPy.writeArchive(arrays, to: path)
      let text = tensorErrorMessage { _ = try SkeletonDataset.cached(path: path, kind: "cache") }
      #expect(text.contains("cache.npz"), "\(column) \(bad): \(text)")
    }
  }
}
