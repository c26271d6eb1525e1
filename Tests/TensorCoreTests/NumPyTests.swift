import Foundation
import TensorCore
import TestSupport
import Testing

/// Reads files NumPy wrote (Tests/Data/numpy, README there) and round-trips our own.
@Suite("NumPy files", .timed)
struct NumPyTests {
  static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Data/numpy").path

  func path(_ name: String) -> String {
    (NumPyTests.folder as NSString).appendingPathComponent(name)
  }

  @Test func readsNpyInEveryOrderAndDtype() throws {
    let c = try NumPy.readArray(path: path("f32_c.npy"))
    #expect(c.dtype == "<f4" && c.tensor.shape == [2, 3])
    #expect(c.tensor.scalars == [0, 0.25, 0.5, 0.75, 1, 1.25])
    let fortran = try NumPy.readArray(path: path("f64_fortran.npy"))
    #expect(fortran.tensor.shape == [2, 3])
    #expect(fortran.tensor.scalars == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    let integers = try NumPy.readArray(path: path("i64.npy"))
    #expect(integers.integers == [3, -1, 7, 1 << 40])
    #expect(try NumPy.readArray(path: path("bool.npy")).tensor.scalars == [1, 0, 0, 1])
    let scalar = try NumPy.readArray(path: path("scalar.npy"))
    #expect(scalar.tensor.shape == [] && scalar.tensor.scalars == [2.5])
  }

  @Test(arguments: ["stored.npz", "compressed.npz"])
  func readsNpzStoredAndDeflated(file: String) throws {
    let arrays = try NumPy.readArchive(path: path(file))
    #expect(arrays.map(\.name) == ["x_train", "y_train"])
    #expect(arrays[0].array.tensor.shape == [3, 4])
    #expect(arrays[0].array.tensor.scalars == (0..<12).map(Float.init))
    #expect(arrays[1].array.dtype == "<f8")
    #expect(try arrays[1].array.tensor.scalars == Tensor.eye(3).scalars)
  }

  @Test func writesWhatItReads() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "skellab-numpy-\(ProcessInfo.processInfo.processIdentifier)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let t = try sampleTensor([2, 3, 4], seed: 5)
    let npy = folder.appendingPathComponent("t.npy").path
    try NumPy.writeArray(t, to: npy)
    #expect(try NumPy.readArray(path: npy).tensor.scalars == t.scalars)
    let npz = folder.appendingPathComponent("t.npz").path
    try NumPy.writeArchive([("a", t), ("b", Tensor([1, 2]))], to: npz)
    let back = try NumPy.readArchive(path: npz)
    #expect(back.map(\.name) == ["a", "b"])
    #expect(back[0].array.tensor.shape == [2, 3, 4] && back[0].array.tensor.scalars == t.scalars)
    #expect(back[1].array.tensor.scalars == [1, 2])
  }

  @Test func corruptFilesGiveClearErrors() throws {
    let good = try Data(contentsOf: URL(fileURLWithPath: path("f32_c.npy")))
    let truncated = #expect(throws: TensorError.self) {
      try NumPy.parseArray(good.prefix(good.count - 4))
    }
    #expect(truncated?.message.contains("needs 24 data bytes") == true)
    #expect(throws: TensorError.self) { try NumPy.parseArray(Data("hello".utf8)) }
    #expect(throws: TensorError.self) { try NumPy.parseArchive(good) }
    for file in ["stored.npz", "compressed.npz"] {
      var broken = try Data(contentsOf: URL(fileURLWithPath: path(file)))
      broken[140] ^= 0x01  // inside the first member's data
      let error = #expect(throws: TensorError.self) { try NumPy.parseArchive(broken) }
      #expect(error?.message.contains("x_train") == true, "\(file): \(String(describing: error))")
    }
    let missing = #expect(throws: TensorError.self) {
      try NumPy.readArray(path: "/nonexistent/a.npy")
    }
    #expect(missing?.message.contains("/nonexistent/a.npy") == true)
  }
}
