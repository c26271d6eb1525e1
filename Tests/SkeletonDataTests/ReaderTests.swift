import Foundation
import SkeletonData
import TensorCore
import TestSupport
import Testing

/// The readers on every real file of `Tests/Data`.
@Suite("Readers", .timed)
struct ReaderTests {
  static let ntuFolder = TestData.ntu
  static let msrFolder = TestData.msr

  /// samples.csv rows: file, setup, camera, performer, replication, action, frames, bodies.
  func ntuRows() throws -> [[String]] {
    let text = try String(contentsOfFile: Self.ntuFolder + "/samples.csv", encoding: .utf8)
    return text.split(whereSeparator: \.isNewline).dropFirst().map {
      $0.split(separator: ",").map(String.init)
    }
  }

  @Test func everyNTUSampleParsesWithItsCounts() throws {
    let rows = try ntuRows()
    #expect(rows.count == 15)
    for row in rows {
      let path = Self.ntuFolder + "/nturgb+d_skeletons/" + row[0]
      let counts = try NTUSkeletonReader.maxBodiesPerFrame(path: path)
      #expect(counts.frames == Int(row[7]), "\(row[0]) frames")
      #expect(counts.bodies == Int(row[8]), "\(row[0]) bodies")
      for selection in NTUSkeletonReader.BodySelection.allCases {
        let sample = try NTUSkeletonReader.read(path: path, selection: selection)
        try sample.validate()
        #expect(sample.data.shape == [3, sample.length, 25, 2], "\(row[0]) shape")
        #expect(sample.length <= counts.frames)
        #expect(sample.label == Int(row[5])! - 1)
        #expect(sample.setup == Int(row[1]) && sample.view == Int(row[2]))
        #expect(sample.subject == Int(row[3]) && sample.replication == Int(row[4]))
        // A one-person file leaves body 2 at zero.
        if row[8] == "1" {
          let second = try sample.data[.all, .all, .all, .index(1)]
          #expect(try second.abs().max().item() == 0, "\(row[0]) body 2")
        }
      }
    }
  }

  @Test func ntuValuesAreTheFileCoordinates() throws {
    let path = Self.ntuFolder + "/nturgb+d_skeletons/S001C001P001R001A001.skeleton"
    let sample = try NTUSkeletonReader.read(path: path, selection: .energy)
    // Frame 1, joint 1 of the file: 0.2181153 0.1725972 3.785547.
    #expect(try sample.data.element(at: [0, 0, 0, 0]) == 0.2181153)
    #expect(try sample.data.element(at: [1, 0, 0, 0]) == 0.1725972)
    #expect(try sample.data.element(at: [2, 0, 0, 0]) == 3.785547)
    #expect(try sample.data.element(at: [0, 0, 1, 0]) == 0.2323292)
  }

  @Test func twoPersonFileKeepsBothBodies() throws {
    let path = Self.ntuFolder + "/nturgb+d_skeletons/S001C003P008R002A058.skeleton"
    let sample = try NTUSkeletonReader.read(path: path)
    let first = try sample.data[.all, .all, .all, .index(0)].abs().max().item()
    let second = try sample.data[.all, .all, .all, .index(1)].abs().max().item()
    #expect(first > 0 && second > 0)
  }

  @Test func malformedSkeletonFilesNameTheLine() throws {
    let folder = FileManager.default.temporaryDirectory.path
    let path = folder + "/S001C001P001R001A001-broken-\(getpid()).skeleton"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try "1\r\n1\r\n72057594037931101 0 1 1 1 1 0 0.02 0.05 2\r\n25\r\n0.1 0.2 abc\r\n"
      .write(toFile: path, atomically: true, encoding: .utf8)
    let error = #expect(throws: TensorError.self) { try NTUSkeletonReader.read(path: path) }
    #expect(error?.message == "\(path):5: expected joint z, found 'abc'")
    try "2\n0\n".write(toFile: path, atomically: true, encoding: .utf8)
    let truncated = #expect(throws: TensorError.self) { try NTUSkeletonReader.read(path: path) }
    #expect(
      truncated?.message
        == "\(path):3: expected the body count of frame 2, found the end of the file")
    let missing = #expect(throws: TensorError.self) {
      try NTUSkeletonReader.read(path: folder + "/nope.skeleton")
    }
    #expect(missing?.message == "cannot read '\(folder)/nope.skeleton' (missing or unreadable)")
  }

  @Test func everyMSRSequenceLoadsAndTheDefectiveOneIsReported() throws {
    let names = try FileManager.default.contentsOfDirectory(atPath: Self.msrFolder)
      .filter { $0.hasSuffix("_skeleton3D.txt") }.sorted()
    #expect(names.count == 567)
    var rejected: [String] = []
    for name in names {
      let sample = try MSRAction3DReader.read(path: Self.msrFolder + "/" + name)
      #expect(sample.data.shape[2] == 20 && sample.data.shape[3] == 1)
      #expect((13...936).contains(sample.length), "\(name) has \(sample.length) frames")
      do {
        try sample.validate()
      } catch {
        rejected.append(name)
      }
    }
    #expect(rejected == ["a13_s09_e02_skeleton3D.txt"])
    let first = try MSRAction3DReader.read(path: Self.msrFolder + "/a01_s01_e01_skeleton3D.txt")
    #expect(first.label == 0 && first.subject == 1 && first.replication == 1)
  }
}
