import Foundation
import TensorCore
import TestSupport
import Testing

@Suite("safetensors", .timed)
struct SafeTensorsTests {
  func temporaryPath(_ name: String) -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "skellab-tests-\(ProcessInfo.processInfo.processIdentifier)")
    try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder.appendingPathComponent(name).path
  }

  @Test func roundTripKeepsValuesNamesAndMetadata() throws {
    let path = temporaryPath("roundtrip.safetensors")
    let weight = try sampleTensor([3, 4], seed: 70)
    try SafeTensors.write(
      [
        "blocks.0.weight": .float32(weight), "scalar": .float32(Tensor(2.5)),
        "step": .int64(shape: [2], values: [7, -3]),
        "view": .float32(try weight.transposed()),
      ], to: path, metadata: ["format": "skellab"])
    let file = try SafeTensors.read(path: path)
    #expect(try file.tensor("blocks.0.weight").scalars == weight.scalars)
    #expect(try file.tensor("scalar").shape == [])
    #expect(try file.integers("step") == [7, -3])
    #expect(try file.tensor("view").scalars == weight.transposed().contiguous().scalars)
    #expect(file.metadata["format"] == "skellab")
    #expect(file.entries["step"]?.dtype == "I64")
    // The write left no temporary file behind.
    let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: folder).allSatisfy {
        !$0.contains(".tmp-")
      })
  }

  @Test func readsFixtureIntegersAndScalars() throws {
    let fixture = try Fixture("random_masking")
    let keep = try fixture.file.integers("ids_keep")
    #expect(keep.count == 9)
    #expect(fixture.file.entries["ids_keep"]?.dtype == "I64")
    #expect(try Fixture("mse").tensor("loss").shape == [])
  }

  @Test func corruptFilesGiveClearErrors() throws {
    let good = try SafeTensors.encode(["x": .float32(Tensor.ones([4]))])
    let truncated = #expect(throws: TensorError.self) {
      try SafeTensors.parse(good.prefix(good.count - 4))
    }
    #expect(truncated?.message.contains("'x'") == true)
    #expect(throws: TensorError.self) { try SafeTensors.parse(Data([1, 2, 3])) }
    var hugeHeader = Data(good)
    hugeHeader.replaceSubrange(
      0..<8, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Data($0) })
    #expect(throws: TensorError.self) { try SafeTensors.parse(hugeHeader) }
    var badJSON = Data(good)
    badJSON[8] = UInt8(ascii: "[")
    #expect(throws: TensorError.self) { try SafeTensors.parse(badJSON) }
    let missing = #expect(throws: TensorError.self) {
      try SafeTensors.read(path: temporaryPath("does-not-exist.safetensors"))
    }
    #expect(missing?.message.contains("does-not-exist.safetensors") == true)
    let unknown = #expect(throws: TensorError.self) {
      try SafeTensors.parse(good).tensor("y")
    }
    #expect(unknown?.message == "no tensor named 'y'; the file has x")
  }

  @Test func unwritablePathFailsWithoutLeavingFiles() throws {
    let error = #expect(throws: TensorError.self) {
      try SafeTensors.write(["x": .float32(Tensor.ones([1]))], to: "/nonexistent-dir/x.safetensors")
    }
    #expect(error?.message.contains("/nonexistent-dir/x.safetensors") == true)
  }
}
