// skellab-bench data: sequences per second of the data path.
//
//   skellab-bench data [--data Tests/Data] [--threads 2]
//
// Parsing raw NTU .skeleton files (the samples of Tests/Data, read repeatedly), loading a MAMP-layout
// .npz (written once to a temporary folder), generating synthetic sequences, and producing
// augmented batches of the `small` config (batch 32, crop-resize to 64 frames + rotation,
// through the prefetching loader). The loader must outrun training: compare its sequences/s
// with the training step's (skellab-bench model).
import Foundation
import SkeletonData
import TensorCore

func seconds(_ body: () throws -> Void) rethrows -> Double {
  let start = DispatchTime.now().uptimeNanoseconds
  try body()
  return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func runDataBench(_ arguments: [String]) -> Int32 {
  var data = "Tests/Data"
  var rest = arguments[...]
  while let flag = rest.popFirst() {
    switch flag {
    case "--data": data = rest.popFirst() ?? data
    case "--threads": try? Threading.setThreadCount(rest.popFirst().flatMap(Int.init) ?? 2)
    default:
      FileHandle.standardError.write(Data("skellab-bench data: unknown flag \(flag)\n".utf8))
      return 2
    }
  }
  do {
    let folder = data + "/ntu-rgbd-samples/nturgb+d_skeletons"
    let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter {
      $0.hasSuffix(".skeleton")
    }
    .sorted().map { folder + "/" + $0 }
    var parsed = 0
    var frames = 0
    let parse = try seconds {
      for _ in 0..<4 {
        for path in files {
          let sample = try NTUSkeletonReader.read(path: path)
          frames += sample.length
          parsed += 1
        }
      }
    }
    print(
      String(
        format: "parse .skeleton: %.0f sequences/s (%.0f frames/s, %d files)",
        Double(parsed) / parse, Double(frames) / parse, parsed))

    let generator = try SyntheticSkeletons(
      seed: 0, subjects: 10, views: 3, repetitions: 2, frames: 100)
    var generated = 0
    let synthesis = try seconds {
      for i in 0..<500 {
        _ = try generator.sample(i)
        generated += 1
      }
    }
    print(String(format: "synthetic: %.0f sequences/s (100 frames)", Double(generated) / synthesis))

    let clips = 400
    let path = FileManager.default.temporaryDirectory.path + "/skellab-bench-\(getpid()).npz"
    defer { try? FileManager.default.removeItem(atPath: path) }
    var g = RandomGenerator(seed: 1)
    let x = try Tensor.randn([clips, 300, 150], generator: &g)
    var oneHot = [Float](repeating: 0, count: clips * 60)
    for i in 0..<clips { oneHot[i * 60 + i % 60] = 1 }
    let y = try Tensor(shape: [clips, 60], scalars: oneHot)
    try NumPy.writeArchive(
      [("x_train", x), ("y_train", y), ("x_test", x), ("y_test", y)], to: path)
    let archiveOnly = try seconds { _ = try NumPy.readArchive(path: path) }
    print(String(format: "  (reading the archive alone: %.3f s)", archiveOnly))
    var loaded = 0
    let npz = try seconds {
      let ds = try DatasetReaders.npz(path: path, split: "train")
      loaded = ds.count
    }
    print(
      String(
        format: "load .npz: %.0f sequences/s (%d clips of 300 frames, %.0f MB)",
        Double(loaded) / npz, loaded, Double(clips * 300 * 150 * 4 * 2) / 1e6))

    let ds = SkeletonDataset.synthetic(generator)
    let loader = try Loader(
      dataset: ds, batchSize: 32, seed: 0,
      augmentations: [.randomCrop(window: 64, low: 0.5, high: 1, minimum: 32), .rotate(theta: 0.3)])
    var sequences = 0
    let batches = try seconds {
      try loader.forEachBatch { batch in
        sequences += batch.x.shape[0]
        return true
      }
    }
    print(
      String(
        format: "loader (small config: batch 32, crop 64, rotation): %.0f sequences/s",
        Double(sequences) / batches))
    return 0
  } catch {
    FileHandle.standardError.write(Data("skellab-bench data: \(error)\n".utf8))
    return 1
  }
}
