import Foundation

/// Format specs of interpolated strings: `[<|>][width][.precision][f|e|d|%]`.
enum FormatSpec {
  static func apply(_ spec: String, to value: Value, number: Double?) throws -> String {
    var rest = Substring(spec)
    var align: Character? = nil
    if let first = rest.first, first == "<" || first == ">" {
      align = first
      rest = rest.dropFirst()
    }
    var widthText = ""
    while let c = rest.first, c.isNumber {
      widthText.append(c)
      rest = rest.dropFirst()
    }
    var precision: Int? = nil
    if rest.first == "." {
      rest = rest.dropFirst()
      var digits = ""
      while let c = rest.first, c.isNumber {
        digits.append(c)
        rest = rest.dropFirst()
      }
      guard let p = Int(digits), p <= 50 else {
        throw ScriptError(.value, "format '\(spec)': expected digits after '.'")
      }
      precision = p
    }
    let kind = rest.first
    if rest.count > 1 || (kind != nil && !"fed%".contains(kind ?? " ")) {
      throw ScriptError(.value, "unknown format '\(spec)' (use .Nf, .Ne, d, %, >N or <N)")
    }
    var text: String
    switch kind {
    case "f", "e", "%":
      guard let x = number else {
        throw ScriptError(.type, "format '\(spec)' needs a number, got \(value.typeName)")
      }
      let digits = precision ?? 6
      if kind == "f" {
        text = String(format: "%.\(digits)f", x)
      } else if kind == "e" {
        text = String(format: "%.\(digits)e", x)
      } else {
        text = String(format: "%.\(precision ?? 0)f", x * 100) + "%"
      }
    case "d":
      guard case .int(let i) = value else {
        throw ScriptError(.type, "format 'd' needs an Int, got \(value.typeName)")
      }
      text = String(i)
    default:
      if let precision, let x = number {
        text = String(format: "%.\(precision)f", x)
      } else {
        text = value.description
      }
    }
    if let width = Int(widthText), width > text.count {
      let pad = String(repeating: " ", count: width - text.count)
      // Numbers align right by default, text left, as in Python.
      let right = align == ">" || (align == nil && number != nil)
      text = right ? pad + text : text + pad
    }
    return text
  }
}
