import Foundation
import TensorCore

/// Pictures of a sequence: an SVG strip of stick figures (bones, two bodies in two colours, an
/// optional joint × time mask) and a small Unicode braille rendering for the terminal.
public enum SkeletonDrawing {
  static let colours = ["#1f77b4", "#ff7f0e"]

  /// The frames a strip shows: `count` evenly spaced over the valid length.
  static func shownFrames(length: Int, count: Int) -> [Int] {
    let n = max(length, 1)
    let k = min(count, n)
    return (0..<k).map { k == 1 ? 0 : $0 * (n - 1) / (k - 1) }
  }

  /// Screen coordinates: camera x to the right, y up; one scale for every shown frame.
  struct Projection {
    let minX: Double, maxY: Double, scale: Double
    init(_ x: Frames, frames: [Int], width: Double, height: Double) {
      var (lowX, highX, lowY, highY) = (
        Double.infinity, -Double.infinity, Double.infinity, -Double.infinity
      )
      for f in frames {
        for j in 0..<x.v {
          for b in 0..<x.m where !x.isZero(f, j, b) {
            lowX = min(lowX, Double(x[0, f, j, b]))
            highX = max(highX, Double(x[0, f, j, b]))
            lowY = min(lowY, Double(x[1, f, j, b]))
            highY = max(highY, Double(x[1, f, j, b]))
          }
        }
      }
      if !lowX.isFinite { (lowX, highX, lowY, highY) = (-1, 1, -1, 1) }
      let span = max(highX - lowX, highY - lowY, 1e-3)
      scale = 0.9 * min(width, height) / span
      minX = lowX - (min(width, height) / scale - (highX - lowX)) / 2
      maxY = highY + 0.05 * span
    }
    func point(_ x: Double, _ y: Double) -> (Double, Double) {
      ((x - minX) * scale, (maxY - y) * scale)
    }
  }

  /// An SVG strip of `count` frames; `mask` `[T, V]` (1 = hidden) marks hidden joints in red
  /// and is drawn below as a joint × time grid.
  public static func svg(
    _ sample: SkeletonSample, layout: JointLayout, count: Int = 8, mask: Tensor? = nil,
    title: String? = nil, className: String? = nil
  ) throws -> String {
    try layout.requireStructure("show")
    try requireFinite(sample)
    let x = try Frames(sample.data)
    guard x.c >= 2, x.v == layout.count else {
      throw TensorError(
        "show",
        "a \(layout.name) drawing needs [C ≥ 2, T, \(layout.count), M], got \(shapeString(sample.data.shape))"
      )
    }
    if let mask, mask.shape != [x.t, x.v] {
      throw TensorError("show", "mask \(shapeString(mask.shape)) does not fit [\(x.t), \(x.v)]")
    }
    let hidden = mask?.scalars
    let frames = shownFrames(length: sample.length, count: count)
    let (panel, height) = (150.0, 190.0)
    let projection = Projection(x, frames: frames, width: panel, height: height - 20)
    let gridHeight = hidden == nil ? 0.0 : Double(x.v) * 4 + 30
    let width = panel * Double(frames.count)
    var svg = """
      <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height + gridHeight + 24))" \
      font-family="sans-serif" font-size="11">
      <rect width="100%" height="100%" fill="white"/>
      <text x="6" y="16">\(escape(title ?? sample.source)) — \(escape(className.map { "\($0) (label \(sample.label))" } ?? "label \(sample.label)")), \(sample.length) frames</text>

      """
    func f(_ v: Double) -> String { String(format: "%.1f", v) }
    for (k, frame) in frames.enumerated() {
      let dx = Double(k) * panel
      svg += "<g transform=\"translate(\(f(dx)),24)\">\n"
      svg += "<text x=\"4\" y=\"\(f(height - 8))\" fill=\"#666\">t=\(frame)</text>\n"
      for b in 0..<x.m {
        let colour = colours[b % colours.count]
        for (p, q) in layout.bones where !x.isZero(frame, p, b) && !x.isZero(frame, q, b) {
          let (x1, y1) = projection.point(Double(x[0, frame, p, b]), Double(x[1, frame, p, b]))
          let (x2, y2) = projection.point(Double(x[0, frame, q, b]), Double(x[1, frame, q, b]))
          svg +=
            "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\" stroke=\"\(colour)\" stroke-width=\"2\"/>\n"
        }
        for j in 0..<x.v where !x.isZero(frame, j, b) {
          let (px, py) = projection.point(Double(x[0, frame, j, b]), Double(x[1, frame, j, b]))
          let masked = b == 0 && (hidden?[frame * x.v + j] ?? 0) != 0
          svg +=
            masked
            ? "<circle cx=\"\(f(px))\" cy=\"\(f(py))\" r=\"3.5\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\"/>\n"
            : "<circle cx=\"\(f(px))\" cy=\"\(f(py))\" r=\"2\" fill=\"\(colour)\"/>\n"
        }
      }
      svg += "</g>\n"
    }
    if let hidden {
      let top = height + 30
      let cell = max(1.0, min(4.0, width / Double(x.t)))
      svg += "<text x=\"6\" y=\"\(f(top - 4))\">mask (joint × time, red = hidden)</text>\n"
      for t in 0..<x.t {
        for j in 0..<x.v where hidden[t * x.v + j] != 0 {
          svg +=
            "<rect x=\"\(f(Double(t) * cell))\" y=\"\(f(top + Double(j) * 4))\" width=\"\(f(cell))\" height=\"4\" fill=\"#d62728\"/>\n"
        }
      }
    }
    return svg + "</svg>\n"
  }

  /// Throws unless every coordinate is finite: a picture of NaN has no points to place.
  static func requireFinite(_ sample: SkeletonSample) throws {
    let finite = sample.data.withUnsafeBufferPointer { $0.allSatisfy(\.isFinite) }
    guard finite else {
      throw TensorError(
        "show",
        (sample.source.isEmpty ? "" : "\(sample.source): ")
          + "the sample holds NaN or infinite coordinates")
    }
  }

  /// Writes the SVG strip atomically.
  public static func writeSVG(
    _ sample: SkeletonSample, layout: JointLayout, to path: String, count: Int = 8,
    mask: Tensor? = nil, className: String? = nil
  ) throws {
    let text = try svg(sample, layout: layout, count: count, mask: mask, className: className)
    try AtomicFile.write(Data(text.utf8), to: path, op: "show")
  }

  /// A braille rendering of `count` frames side by side, each `width` × `height` characters;
  /// with `mask` `[T, V]` (1 = hidden), the bones of hidden joints of the first body are left
  /// out and each hidden joint is marked by a small ring, with a line counting them.
  public static func terminal(
    _ sample: SkeletonSample, layout: JointLayout, count: Int = 4, width: Int = 16,
    height: Int = 10,
    mask: Tensor? = nil
  ) throws -> String {
    try layout.requireStructure("show")
    try requireFinite(sample)
    let x = try Frames(sample.data)
    guard x.c >= 2, x.v == layout.count else {
      throw TensorError(
        "show", "expects [C ≥ 2, T, \(layout.count), M], got \(shapeString(sample.data.shape))")
    }
    if let mask, mask.shape != [x.t, x.v] {
      throw TensorError("show", "mask \(shapeString(mask.shape)) does not fit [\(x.t), \(x.v)]")
    }
    let hidden = mask?.scalars
    func isHidden(_ frame: Int, _ joint: Int, _ body: Int) -> Bool {
      body == 0 && (hidden?[frame * x.v + joint] ?? 0) != 0
    }
    let frames = shownFrames(length: sample.length, count: count)
    let (dotsX, dotsY) = (width * 2, height * 4)
    let projection = Projection(
      x, frames: frames, width: Double(dotsX - 1), height: Double(dotsY - 1))
    var lines = [String](repeating: "", count: height)
    for frame in frames {
      var dots = [[Bool]](repeating: [Bool](repeating: false, count: dotsX), count: dotsY)
      func plot(_ px: Double, _ py: Double) {
        let (i, j) = (Int(px.rounded()), Int(py.rounded()))
        if i >= 0, i < dotsX, j >= 0, j < dotsY { dots[j][i] = true }
      }
      for b in 0..<x.m {
        for j in 0..<x.v where isHidden(frame, j, b) && !x.isZero(frame, j, b) {
          let (px, py) = projection.point(Double(x[0, frame, j, b]), Double(x[1, frame, j, b]))
          for (ox, oy) in [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
            plot(px + Double(ox), py + Double(oy))
          }
        }
        for (p, q) in layout.bones
        where !x.isZero(frame, p, b) && !x.isZero(frame, q, b) && !isHidden(frame, p, b)
          && !isHidden(frame, q, b)
        {
          let a = projection.point(Double(x[0, frame, p, b]), Double(x[1, frame, p, b]))
          let z = projection.point(Double(x[0, frame, q, b]), Double(x[1, frame, q, b]))
          // At most the strip's size: the projection keeps points in it.
          let span = min(max(abs(z.0 - a.0), abs(z.1 - a.1)), Double(dotsX + dotsY))
          let steps = Int(span.rounded(.up)) + 1
          for s in 0...steps {
            let w = Double(s) / Double(steps)
            plot(a.0 + (z.0 - a.0) * w, a.1 + (z.1 - a.1) * w)
          }
        }
      }
      // Braille: dots 1-2-3-7 in the left column, 4-5-6-8 in the right.
      let bits = [[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]]
      for row in 0..<height {
        var text = ""
        for column in 0..<width {
          var code = 0
          for dy in 0..<4 {
            for dx in 0..<2 where dots[row * 4 + dy][column * 2 + dx] { code |= bits[dy][dx] }
          }
          text.unicodeScalars.append(Unicode.Scalar(0x2800 + code) ?? " ")
        }
        lines[row] += text + " "
      }
    }
    if let hidden {
      let shown = frames.map { f in (0..<x.v).filter { hidden[f * x.v + $0] != 0 }.count }
      lines.append(
        "hidden joints (rings) per shown frame: "
          + shown.map(String.init).joined(separator: ", ") + " of \(x.v)")
    }
    return lines.joined(separator: "\n")
  }

  static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;")
  }
}
