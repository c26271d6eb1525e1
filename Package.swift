// swift-tools-version:6.1
import Foundation
import PackageDescription

/// Release flags for TensorCore's kernels: the optimised, checked build (`-O`, which
/// `swift build -c release` already uses) plus the host's vector instructions. On x86-64 the
/// building machine's CPU is detected (SkelLab is built where it runs):
/// - AVX-512 (F, CD, BW, DQ, VL) gives `skylake-avx512` with 512-bit vectors preferred. Without
///   `-mprefer-vector-width=512` LLVM keeps loops at 256 bits on that CPU, and the element-wise
///   kernels (exp of the attention probabilities, GELU, norms) would gain nothing;
/// - AVX2 and FMA give `haswell`.
/// `SKELLAB_TARGET_CPU` overrides it (`generic` for none, or any `-target-cpu` name). Other
/// architectures get no CPU flag unless `SKELLAB_TARGET_CPU` names one.
func kernelFlags() -> [String] {
  let override = ProcessInfo.processInfo.environment["SKELLAB_TARGET_CPU"] ?? ""
  if !override.isEmpty {
    return override == "generic" ? [] : ["-target-cpu", override]
  }
  #if arch(x86_64)
    if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
      let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
    {
      let has = Set(flags.split(separator: " ").map(String.init))
      if has.isSuperset(of: ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]) {
        return ["-target-cpu", "skylake-avx512", "-Xcc", "-mprefer-vector-width=512"]
      }
      if has.isSuperset(of: ["avx2", "fma"]) {
        return ["-target-cpu", "haswell"]
      }
    }
  #endif
  return []
}

let kernelSettings: [SwiftSetting] =
  kernelFlags().isEmpty ? [] : [.unsafeFlags(kernelFlags(), .when(configuration: .release))]

let package = Package(
  name: "SkelLab",
  platforms: [.macOS(.v15)],
  products: [
    .library(name: "TensorCore", targets: ["TensorCore"]),
    .executable(name: "skellab", targets: ["skellab"]),
    .executable(name: "skellab-bench", targets: ["SkellabBench"]),
  ],
  traits: [
    .trait(
      name: "MPI",
      description:
        "Data-parallel runs under mpirun (Open MPI: scripts/setup.sh --mpi installs it)")
  ],
  targets: [
    // System libraries, found through pkg-config (scripts/setup.sh installs them).
    .systemLibrary(
      name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(
      name: "CReadline", path: "Sources/CReadline", pkgConfig: "readline",
      providers: [.apt(["libreadline-dev"])]),

    .systemLibrary(
      name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

    .systemLibrary(
      name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
      providers: [.apt(["libopenmpi-dev"])]),

    // The process group of a run: one process, or the ranks of an MPI job (with the trait).
    .target(
      name: "Distributed",
      dependencies: [.target(name: "CMPI", condition: .when(traits: ["MPI"]))]),

    // Thread affinity, which Swift's Glibc module does not expose.
    .target(name: "CSystem", path: "Sources/CSystem"),

    // The tensor engine: float32 tensors, reverse-mode autograd, BLAS-backed products.
    .target(
      name: "TensorCore", dependencies: ["CBLAS", "CSystem", "CZlib", "Distributed"],
      swiftSettings: kernelSettings),

    // Layers and models over TensorCore, named as the PyTorch state dicts.
    .target(name: "NN", dependencies: ["TensorCore"]),

    // Skeleton data: readers of the real formats, the synthetic dataset, transforms, loaders.
    .target(name: "SkeletonData", dependencies: ["TensorCore"]),

    // Masking and the self-supervised methods (Skeleton2vec, MAMP, MAE).
    .target(
      name: "SSL", dependencies: ["NN", "Optim", "SkeletonData", "TensorCore", "Distributed"]),

    // The evaluation protocols of methods.md §8 and the benchmark table.
    .target(
      name: "Evaluation",
      dependencies: ["NN", "Optim", "SkeletonData", "TensorCore", "Distributed"]),

    // Optimisers, schedules, EMA and checkpoints.
    .target(name: "Optim", dependencies: ["NN", "TensorCore", "Distributed"]),

    // The SkelLab language: lexer, parser, evaluator, registry, diagnostics. No tensors here.
    .target(name: "ScriptCore", dependencies: ["CSystem"]),

    // The one bridge between the language and the library: builtins registered by name.
    .target(
      name: "ScriptLibrary",
      dependencies: [
        "ScriptCore", "TensorCore", "NN", "Optim", "SkeletonData", "Evaluation", "SSL",
        "Distributed",
      ]),

    // The command line and the REPL: thin, over ScriptLibrary.
    .executableTarget(
      name: "skellab",
      dependencies: [
        "ScriptCore", "ScriptLibrary", "TensorCore", "CReadline", "CSystem", "Distributed",
      ]),

    // Release-mode benchmark of the kernels against raw OpenBLAS (and PyTorch, by ratio).
    .executableTarget(
      name: "SkellabBench",
      dependencies: [
        "TensorCore", "NN", "Optim", "SkeletonData", "Evaluation", "SSL", "CBLAS", "Distributed",
      ],
      path: "Sources/SkellabBench"),

    // Shared test helpers: fixture reader, finite-difference gradient check, comparisons.
    .target(name: "TestSupport", dependencies: ["TensorCore"], path: "Tests/TestSupport"),
    .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "TestSupport"]),
    .testTarget(name: "ScriptCoreTests", dependencies: ["ScriptCore", "TestSupport"]),
    .testTarget(name: "NNTests", dependencies: ["NN", "TensorCore", "TestSupport"]),
    .testTarget(
      name: "SkeletonDataTests", dependencies: ["SkeletonData", "TensorCore", "TestSupport"]),
    .testTarget(
      name: "EvaluationTests",
      dependencies: ["Evaluation", "NN", "Optim", "SkeletonData", "TensorCore", "TestSupport"]),
    .testTarget(
      name: "SSLTests", dependencies: ["SSL", "NN", "Optim", "TensorCore", "TestSupport"]),
    .testTarget(name: "OptimTests", dependencies: ["Optim", "NN", "TensorCore", "TestSupport"]),
    .testTarget(
      name: "GoldenTests", dependencies: ["ScriptCore", "ScriptLibrary", "TestSupport", "skellab"]),
    .testTarget(
      name: "CLITests", dependencies: ["skellab", "CSystem", "TensorCore", "TestSupport"]),
  ],
  swiftLanguageModes: [.v6]
)
