import Foundation

/// Where the bundled `stdlib/` is: `$SKELLAB_HOME/stdlib`, else beside the executable
/// (an install), else in the package the executable was built in (`swift run`, the build
/// folder), found by walking up from the executable.
public enum Installation {
  public static var standardLibrary: String? {
    let fm = FileManager.default
    if let home = ProcessInfo.processInfo.environment["SKELLAB_HOME"], !home.isEmpty {
      return (home as NSString).appendingPathComponent("stdlib")
    }
    let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "")
      .resolvingSymlinksInPath()
    var folder = executable.deletingLastPathComponent()
    for _ in 0..<6 {
      let candidate = folder.appendingPathComponent("stdlib").path
      var isDirectory: ObjCBool = false
      if fm.fileExists(atPath: candidate, isDirectory: &isDirectory), isDirectory.boolValue {
        return candidate
      }
      folder = folder.deletingLastPathComponent()
    }
    return nil
  }
}
