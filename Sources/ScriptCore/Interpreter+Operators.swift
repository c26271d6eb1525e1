import Foundation

// Arithmetic, comparison, indexing and iteration of the language's own values. Library values
// (tensors, ...) go through the operator, indexing and iteration tables of the registry.

extension Interpreter {
  /// A number from an Int, a Float or a library value that converts (a one-element tensor).
  func number(_ value: Value) throws -> Double? {
    switch value {
    case .int(let i): return Double(i)
    case .float(let d): return d
    case .object(let o): return try registry.numberConversions[o.typeName]?(o)
    default: return nil
    }
  }

  func unary(_ op: String, _ operand: Value, _ range: SourceRange) throws -> Value {
    switch (op, operand) {
    case ("not", .bool(let b)): return .bool(!b)
    case ("not", _):
      throw ScriptError(.type, "'not' needs a Bool, got \(operand.typeName)", at: range)
    case ("-", .int(let i)):
      let (negated, overflow) = Int(0).subtractingReportingOverflow(i)
      if overflow { throw ScriptError(.arithmetic, "integer overflow in -\(i)", at: range) }
      return .int(negated)
    case ("-", .float(let d)): return .float(-d)
    case ("+", .int), ("+", .float): return operand
    default:
      for handler in registry.unaryOperators {
        do {
          if let result = try handler(op, operand) { return result }
        } catch { throw wrap(error, range) }
      }
      throw ScriptError(.type, "unary '\(op)' does not apply to \(operand.typeName)", at: range)
    }
  }

  func binary(_ op: String, _ left: Value, _ right: Value, _ range: SourceRange) throws -> Value {
    switch (left, right) {
    case (.int(let a), .int(let b)):
      return try integerArithmetic(op, a, b, range)
    case (.int, .float), (.float, .int), (.float, .float):
      if let result = try floatArithmetic(op, try number(left) ?? 0, try number(right) ?? 0, range)
      {
        return result
      }
    case (.string(let a), .string(let b)):
      if op == "+" { return .string(a + b) }
      if let result = Interpreter.compare(op, a, b) { return result }
    case (.string(let a), .int(let n)) where op == "*":
      guard n >= 0, n.multipliedReportingOverflow(by: a.count).partialValue < 100_000_000 else {
        throw ScriptError(.value, "cannot repeat a string \(n) times", at: range)
      }
      return .string(String(repeating: a, count: n))
    case (.list(let a), .list(let b)) where op == "+":
      return .list(a.items + b.items)
    default:
      break
    }
    if case .object = left {
    } else if case .object = right {
    } else {
      if op == "==" { return .bool(equal(left, right)) }
      if op == "!=" { return .bool(!equal(left, right)) }
    }
    for handler in registry.binaryOperators {
      do {
        if let result = try handler(op, left, right) { return result }
      } catch { throw wrap(error, range) }
    }
    if op == "==" { return .bool(equal(left, right)) }
    if op == "!=" { return .bool(!equal(left, right)) }
    throw ScriptError(
      .type, "'\(op)' does not apply to \(left.typeName) and \(right.typeName)", at: range)
  }

  private func integerArithmetic(_ op: String, _ a: Int, _ b: Int, _ range: SourceRange) throws
    -> Value
  {
    func checked(_ result: (partialValue: Int, overflow: Bool)) throws -> Value {
      if result.overflow {
        throw ScriptError(.arithmetic, "integer overflow in \(a) \(op) \(b)", at: range)
      }
      return .int(result.partialValue)
    }
    switch op {
    case "+": return try checked(a.addingReportingOverflow(b))
    case "-": return try checked(a.subtractingReportingOverflow(b))
    case "*": return try checked(a.multipliedReportingOverflow(by: b))
    case "/":
      guard b != 0 else { throw ScriptError(.arithmetic, "division by zero", at: range) }
      return .float(Double(a) / Double(b))
    case "%":
      guard b != 0 else { throw ScriptError(.arithmetic, "modulo by zero", at: range) }
      let (r, overflow) = a.remainderReportingOverflow(dividingBy: b)
      if overflow { return .int(0) }
      return .int(r != 0 && (r < 0) != (b < 0) ? r + b : r)  // sign of the divisor, as Python
    case "**":
      if b < 0 { return .float(Foundation.pow(Double(a), Double(b))) }
      var result = 1
      var base = a
      var exponent = b
      while exponent > 0 {
        if exponent & 1 == 1 {
          let (r, o) = result.multipliedReportingOverflow(by: base)
          if o { throw ScriptError(.arithmetic, "integer overflow in \(a) ** \(b)", at: range) }
          result = r
        }
        exponent >>= 1
        if exponent > 0 {
          let (sq, o) = base.multipliedReportingOverflow(by: base)
          if o { throw ScriptError(.arithmetic, "integer overflow in \(a) ** \(b)", at: range) }
          base = sq
        }
      }
      return .int(result)
    default:
      if let result = Interpreter.compare(op, a, b) { return result }
      throw ScriptError(.type, "'\(op)' does not apply to Int and Int", at: range)
    }
  }

  private func floatArithmetic(_ op: String, _ a: Double, _ b: Double, _ range: SourceRange) throws
    -> Value?
  {
    switch op {
    case "+": return .float(a + b)
    case "-": return .float(a - b)
    case "*": return .float(a * b)
    case "/":
      guard b != 0 else { throw ScriptError(.arithmetic, "division by zero", at: range) }
      return .float(a / b)
    case "%":
      guard b != 0 else { throw ScriptError(.arithmetic, "modulo by zero", at: range) }
      let r = a.truncatingRemainder(dividingBy: b)
      return .float(r != 0 && (r < 0) != (b < 0) ? r + b : r)
    case "**": return .float(Foundation.pow(a, b))
    default: return Interpreter.compare(op, a, b)
    }
  }

  /// `a op b` for a comparison operator, nil for any other operator.
  static func compare<T: Comparable>(_ op: String, _ a: T, _ b: T) -> Value? {
    switch op {
    case "==": return .bool(a == b)
    case "!=": return .bool(a != b)
    case "<": return .bool(a < b)
    case "<=": return .bool(a <= b)
    case ">": return .bool(a > b)
    case ">=": return .bool(a >= b)
    default: return nil
    }
  }

  /// Structural equality for the language's own values; identity for library objects.
  func equal(_ a: Value, _ b: Value) -> Bool {
    switch (a, b) {
    case (.nil, .nil): return true
    case (.bool(let x), .bool(let y)): return x == y
    case (.int(let x), .int(let y)): return x == y
    case (.int(let x), .float(let y)): return Double(x) == y
    case (.float(let x), .int(let y)): return x == Double(y)
    case (.float(let x), .float(let y)): return x == y
    case (.string(let x), .string(let y)): return x == y
    case (.list(let x), .list(let y)):
      return x === y
        || (x.items.count == y.items.count && zip(x.items, y.items).allSatisfy { equal($0, $1) })
    case (.record(let x), .record(let y)):
      return x === y
        || (x.keys == y.keys && x.keys.allSatisfy { k in equal(x[k] ?? .nil, y[k] ?? .nil) })
    case (.function(let x), .function(let y)): return x === y
    case (.builtin(let x), .builtin(let y)): return x === y
    case (.object(let x), .object(let y)): return x === y
    default: return false
    }
  }

  // MARK: Iteration

  func iterate(_ value: Value, _ range: SourceRange) throws -> ValueStream {
    func stream(_ items: [Value]) -> ValueStream {
      var iterator = items.makeIterator()
      return { iterator.next() }
    }
    switch value {
    case .list(let box): return stream(box.items)
    case .record(let box): return stream(box.keys.map(Value.string))
    case .string(let s): return stream(s.map { .string(String($0)) })
    case .object(let o):
      guard let items = registry.iterators[o.typeName] else {
        throw ScriptError(.type, "cannot iterate over \(o.typeName)", at: range)
      }
      let next: ValueStream
      do { next = try items(o) } catch { throw wrap(error, range) }
      return { [self] in
        do { return try next() } catch { throw wrap(error, range) }
      }
    default:
      throw ScriptError(.type, "cannot iterate over \(value.typeName)", at: range)
    }
  }

  // MARK: Indexing

  func evaluateIndex(_ entry: IndexEntry, _ env: Environment) throws -> (IndexValue, SourceRange?) {
    func integer(_ expr: Expr?) throws -> Int? {
      guard let expr else { return nil }
      let value = try evaluate(expr, env)
      guard case .int(let i) = value else {
        throw ScriptError(.type, "slice bounds must be Int, got \(value.typeName)", at: expr.range)
      }
      return i
    }
    switch entry {
    case .single(let expr): return (.value(try evaluate(expr, env)), expr.range)
    case .slice(let a, let b, let c):
      let step = try integer(c)
      if step == 0 {
        throw ScriptError(.value, "slice step cannot be 0", at: c?.range)
      }
      return (.slice(try integer(a), try integer(b), step), nil)
    }
  }

  /// Positions `start:end:step` selects from `count` items (NumPy rules).
  static func slicePositions(_ start: Int?, _ end: Int?, _ step: Int?, count n: Int) -> [Int] {
    let step = step ?? 1
    func resolve(_ v: Int?, _ fallback: Int, _ low: Int, _ high: Int) -> Int {
      guard let v else { return fallback }
      return Swift.min(Swift.max(v < 0 ? v + n : v, low), high)
    }
    if step > 0 {
      let first = resolve(start, 0, 0, n)
      let stop = resolve(end, n, 0, n)
      return Array(stride(from: first, to: stop, by: step))
    }
    let first = resolve(start, n - 1, -1, n - 1)
    let stop = resolve(end, -1, -1, n - 1)
    return Array(stride(from: first, to: stop, by: step))
  }

  private func position(_ value: Value, count: Int, _ range: SourceRange?) throws -> Int {
    guard case .int(let i) = value else {
      throw ScriptError(.type, "index must be Int, got \(value.typeName)", at: range)
    }
    let resolved = i < 0 ? i + count : i
    guard resolved >= 0, resolved < count else {
      throw ScriptError(.index, "index \(i) is out of range for length \(count)", at: range)
    }
    return resolved
  }

  func getIndex(_ object: Value, _ indices: [(IndexValue, SourceRange?)], _ range: SourceRange)
    throws -> Value
  {
    switch object {
    case .list(let box):
      guard indices.count == 1 else {
        throw ScriptError(.index, "a List takes one index, got \(indices.count)", at: range)
      }
      switch indices[0].0 {
      case .value(let v):
        return box.items[try position(v, count: box.items.count, indices[0].1 ?? range)]
      case .slice(let a, let b, let c):
        return .list(
          Interpreter.slicePositions(a, b, c, count: box.items.count).map { box.items[$0] })
      }
    case .string(let s):
      let characters = Array(s)
      guard indices.count == 1 else {
        throw ScriptError(.index, "a String takes one index, got \(indices.count)", at: range)
      }
      switch indices[0].0 {
      case .value(let v):
        return .string(
          String(characters[try position(v, count: characters.count, indices[0].1 ?? range)]))
      case .slice(let a, let b, let c):
        return .string(
          String(
            Interpreter.slicePositions(a, b, c, count: characters.count).map { characters[$0] }))
      }
    case .record(let box):
      guard indices.count == 1, case .value(.string(let key)) = indices[0].0 else {
        throw ScriptError(.type, "a Record is indexed by one String key", at: range)
      }
      guard let value = box[key] else {
        var notes: [String] = []
        if let guess = closestName(key, among: box.keys) {
          notes.append("did you mean '\(guess)'?")
        }
        throw ScriptError(
          .key, "record has no key '\(key)'", at: indices[0].1 ?? range, notes: notes)
      }
      return value
    case .object(let o):
      guard let getter = registry.indexGetters[o.typeName] else {
        throw ScriptError(.type, "\(o.typeName) cannot be indexed", at: range)
      }
      do { return try getter(o, indices.map(\.0)) } catch { throw wrap(error, range) }
    default:
      throw ScriptError(.type, "\(object.typeName) cannot be indexed", at: range)
    }
  }

  func setIndex(
    _ object: Value, _ indices: [(IndexValue, SourceRange?)], _ value: Value, _ range: SourceRange
  ) throws {
    switch object {
    case .list(let box):
      guard indices.count == 1, case .value(let v) = indices[0].0 else {
        throw ScriptError(.index, "assign to one List item at a time", at: range)
      }
      box.items[try position(v, count: box.items.count, indices[0].1 ?? range)] = value
    case .record(let box):
      guard indices.count == 1, case .value(.string(let key)) = indices[0].0 else {
        throw ScriptError(.type, "a Record is indexed by one String key", at: range)
      }
      box[key] = value
    case .object(let o):
      guard let setter = registry.indexSetters[o.typeName] else {
        throw ScriptError(.type, "\(o.typeName) does not support item assignment", at: range)
      }
      do { try setter(o, indices.map(\.0), value) } catch { throw wrap(error, range) }
    default:
      throw ScriptError(.type, "\(object.typeName) does not support item assignment", at: range)
    }
  }
}
