import CBLAS
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Which OpenBLAS kernels run the products, and a correction of OpenBLAS's choice.
///
/// OpenBLAS built with `DYNAMIC_ARCH` (Debian's) picks its kernels from the CPU model at load
/// time. A model it does not know falls back to `Prescott` (SSE3) kernels: OpenBLAS 0.3.21 does
/// so on recent Xeons whose model a virtual machine reports generically ("Intel(R) Xeon(R)
/// Processor"), where a 1024³ product then runs at 28 GFLOP/s instead of 220 (measured on
/// 2 cores). When the kernels OpenBLAS chose lack AVX2 while the CPU and the kernel support
/// it, SkelLab selects the matching kernels (`SkylakeX` with AVX-512, else `Haswell`) through
/// OpenBLAS's own `OPENBLAS_CORETYPE` mechanism, before the first product. A user's
/// `OPENBLAS_CORETYPE` is always respected, and nothing changes where OpenBLAS chose well.
public enum BLASCore {
  /// The kernels OpenBLAS uses (`Haswell`, `SkylakeX`, `Zen`, ...), and what SkelLab did.
  public static var description: String {
    let (chosen, note) = selection
    return chosen + (note.map { " (" + $0 + ")" } ?? "")
  }

  /// Runs once, before the first product (from `Threading`).
  static let selection: (String, String?) = select()

  /// Whether OpenBLAS runs products of up to 10⁶ multiply-adds (100³) through its unpacked
  /// small-matrix kernels, plain (`N·N`) and with the second operand transposed in its own
  /// column-major terms (a row-major `Aᵀ·B`): no packing of either operand and no clearing of C
  /// before it. OpenBLAS 0.3's own rule decides (its `sgemm_small_matrix_permit` for the chosen
  /// kernels, asked once): its `SkylakeX` kernels take them, its `Haswell` and `Zen` ones
  /// do not, and then a product split to fit would only be packed more often.
  package static let smallProducts: Bool = {
    _ = selection
    #if canImport(Glibc)
      let core = currentName().uppercased()
      let handle = UnsafeMutableRawPointer(bitPattern: 0)
      guard
        let permit = dlsym(handle, "sgemm_small_matrix_permit_" + core)
          ?? dlsym(handle, "sgemm_small_matrix_permit")
      else { return false }
      typealias Permit = @convention(c) (Int32, Int32, Int, Int, Int, Float, Float) -> Int32
      let ask = unsafeBitCast(permit, to: Permit.self)
      return ask(0, 0, 100, 100, 100, 1, 0) != 0 && ask(0, 1, 100, 100, 100, 1, 1) != 0
    #else
      return false
    #endif
  }()

  /// OpenBLAS's cores without AVX2.
  static let weakCores: Set<String> = [
    "prescott", "katmai", "coppermine", "northwood", "banias", "core2", "penryn", "dunnington",
    "nehalem", "atom", "sandybridge", "athlon", "opteron", "opteron_sse3", "barcelona",
    "bobcat", "bulldozer", "piledriver", "steamroller", "excavator", "nano", "unknown",
  ]

  static func currentName() -> String {
    guard let name = openblas_get_corename() else { return "unknown" }
    return String(cString: name).trimmingCharacters(in: .whitespaces)
  }

  static func select() -> (String, String?) {
    let chosen = currentName()
    guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil,
      weakCores.contains(chosen.lowercased()),
      let better = betterCore()
    else { return (chosen, nil) }
    #if canImport(Glibc)
      // OpenBLAS's own re-selection: forget the core, then choose again from the variable.
      guard let quit = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "gotoblas_dynamic_quit"),
        let initialize = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "gotoblas_dynamic_init")
      else { return (chosen, nil) }
      typealias Function = @convention(c) () -> Void
      setenv("OPENBLAS_CORETYPE", better, 1)
      unsafeBitCast(quit, to: Function.self)()
      unsafeBitCast(initialize, to: Function.self)()
      unsetenv("OPENBLAS_CORETYPE")  // child processes choose for themselves
      let now = currentName()
      return (now, now == chosen ? nil : "OpenBLAS chose \(chosen) for this CPU")
    #else
      return (chosen, nil)
    #endif
  }

  /// The kernels this CPU and its operating system can run: `SkylakeX` with AVX-512
  /// (F, CD, BW, DQ, VL), `Haswell` with AVX2 and FMA, else nil (Linux's CPU flags).
  static func betterCore() -> String? {
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
      let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
    else { return nil }
    let flags = Set(line.split(separator: " ").map(String.init))
    if ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains) {
      return "SkylakeX"
    }
    if flags.contains("avx2") && flags.contains("fma") { return "Haswell" }
    return nil
  }
}
