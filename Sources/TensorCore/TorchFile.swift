import CSystem
import Foundation

/// What a PyTorch checkpoint holds, as plain data: the restricted unpickler builds these and
/// nothing else.
public indirect enum PickleValue: Sendable {
  case none
  case bool(Bool)
  case int(Int)
  case float(Double)
  case string(String)
  case bytes(Data)
  case list([PickleValue])
  case tuple([PickleValue])
  /// Dicts and OrderedDicts, in insertion order.
  case dict([(key: PickleValue, value: PickleValue)])
  case tensor(Tensor)
  /// A data-only object (`argparse.Namespace`): its class and attributes.
  case object(type: String, attributes: [(key: PickleValue, value: PickleValue)])

  /// The entry under a string key of a dict, or nil.
  public subscript(key: String) -> PickleValue? {
    guard case .dict(let items) = self else { return nil }
    for (k, v) in items { if case .string(let s) = k, s == key { return v } }
    return nil
  }
}

/// Reads PyTorch `.pth`/`.pt` files natively: the zip container of `torch.save` (PyTorch ≥ 1.6)
/// and a restricted unpickler that accepts only what a checkpoint's data needs — dicts,
/// OrderedDicts, lists, tuples, strings, numbers, tensors rebuilt from their storages and
/// `argparse.Namespace` — and refuses every other global (such as `os.system`) without calling
/// anything.
public enum TorchFile {
  /// Reads and unpickles a PyTorch checkpoint.
  public static func read(path: String) throws -> PickleValue {
    let data: Data
    do {
      data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
    } catch {
      throw TensorError("pth", "cannot read '\(path)': \(error.localizedDescription)")
    }
    do {
      return try parse(data)
    } catch let error as TensorError {
      throw TensorError(error.op, "\(path): \(error.message)")
    }
  }

  /// Unpickles the bytes of a PyTorch zip checkpoint.
  public static func parse(_ data: Data) throws -> PickleValue {
    if data.count >= 2, data[data.startIndex] == 0x80 {
      throw TensorError(
        "pth",
        "is in PyTorch's legacy (pre-1.6) format; re-save it with torch.save in a current PyTorch")
    }
    let members = try ZipArchive.members(data, op: "pth")
    guard let pickle = members.first(where: { $0.name.hasSuffix("data.pkl") }) else {
      throw TensorError("pth", "not a PyTorch checkpoint (the zip has no data.pkl)")
    }
    let root = String(pickle.name.dropLast("data.pkl".count))
    if let order = members.first(where: { $0.name == root + "byteorder" }),
      String(decoding: order.data, as: UTF8.self) != "little"
    {
      throw TensorError("pth", "stores big-endian tensors, which are not supported")
    }
    var storages: [String: Data] = [:]
    for member in members where member.name.hasPrefix(root + "data/") {
      storages[String(member.name.dropFirst(root.count + 5))] = member.data
    }
    var unpickler = Unpickler(bytes: [UInt8](pickle.data), storages: storages)
    return try unpickler.run()
  }
}

/// Plain pickle files (`pickle.dump` of labels, PYSKL annotations) through the same restricted
/// unpickler: containers, strings, numbers and NumPy arrays and scalars only.
public enum PickleFile {
  /// Reads and unpickles a plain pickle file.
  public static func read(path: String) throws -> PickleValue {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw TensorError("pickle", "cannot read '\(path)' (missing or unreadable)")
    }
    do {
      return try parse(data)
    } catch let error as TensorError {
      throw TensorError("pickle", "\(path): \(error.message)")
    }
  }

  /// Unpickles the bytes of a plain pickle.
  public static func parse(_ data: Data) throws -> PickleValue {
    try parse(data, isInterrupted: { skellab_interrupt_pending() != 0 })
  }

  /// Unpickles with another interruption check (tests use their own flag, not SIGINT's).
  package static func parse(_ data: Data, isInterrupted: @escaping () -> Bool) throws
    -> PickleValue
  {
    var unpickler = Unpickler(bytes: [UInt8](data), storages: [:])
    unpickler.isInterrupted = isInterrupted
    return try unpickler.run()
  }
}

/// The element types of PyTorch storages.
private enum StorageType: String {
  case float = "FloatStorage", half = "HalfStorage", double = "DoubleStorage"
  case bfloat16 = "BFloat16Storage", long = "LongStorage", int = "IntStorage"
  case short = "ShortStorage", char = "CharStorage", byte = "ByteStorage", bool = "BoolStorage"

  var size: Int {
    switch self {
    case .double, .long: 8
    case .float, .int: 4
    case .half, .bfloat16, .short: 2
    case .char, .byte, .bool: 1
    }
  }

  /// Element `i` of little-endian `bytes`, as a float.
  func value(_ bytes: UnsafeRawBufferPointer, _ i: Int) -> Float {
    let at = i * size
    switch self {
    case .float: return Float(bitPattern: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    case .double:
      return Float(Double(bitPattern: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)))
    case .half:
      return Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
    case .bfloat16:
      let bits = UInt32(bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self)) << 16
      return Float(bitPattern: bits)
    case .long: return Float(bytes.loadUnaligned(fromByteOffset: at, as: Int64.self))
    case .int: return Float(bytes.loadUnaligned(fromByteOffset: at, as: Int32.self))
    case .short: return Float(bytes.loadUnaligned(fromByteOffset: at, as: Int16.self))
    case .char: return Float(bytes.loadUnaligned(fromByteOffset: at, as: Int8.self))
    case .byte, .bool: return Float(bytes[at])
    }
  }
}

/// The pickle virtual machine, restricted to data. Objects live in reference boxes while the
/// program runs (the memo and APPEND/SETITEMS mutate shared containers).
private struct Unpickler {
  final class Box {
    enum Kind {
      case value(PickleValue)
      case list(Items)
      case tuple([Box])
      case dict(Pairs)
      case object(String, Pairs)
      /// An allowed callable or class, by its dotted name.
      case global(String)
      /// A NumPy array under construction (`_reconstruct`, then BUILD with its state).
      case ndarray
      /// A NumPy dtype by its type string (`f4`, `i8`, …) and byte order.
      case dtype(String, order: String)
      case storage(StorageType, key: String)
    }
    var kind: Kind
    init(_ kind: Kind) { self.kind = kind }
  }

  /// The items of a list and the pairs of a dict live in objects of their own, so that APPEND
  /// and SETITEMS grow one array in place (linear time in any build; an array inside an enum
  /// payload is copied whenever a temporary still refers to it).
  final class Items {
    var boxes: [Box]
    init(_ boxes: [Box] = []) { self.boxes = boxes }
  }

  final class Pairs {
    var pairs: [(Box, Box)]
    init(_ pairs: [(Box, Box)] = []) { self.pairs = pairs }
  }

  /// Every box the program made. Boxes may nest deeply or refer to themselves (through the
  /// memo); `release` unlinks them all, so none is freed by a deep recursion or leaked in a
  /// cycle.
  final class Arena {
    var boxes: [Box] = []
    func make(_ kind: Box.Kind) -> Box {
      let box = Box(kind)
      boxes.append(box)
      return box
    }
    func release() {
      for box in boxes { box.kind = .value(.none) }
      boxes = []
    }
  }

  /// How deeply containers may nest in the result.
  static let maximumDepth = 200

  static let allowedGlobals: Set<String> = [
    "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_parameter", "argparse.Namespace",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray",
    "numpy.dtype", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
  ]

  let bytes: [UInt8]
  let storages: [String: Data]
  var position = 0
  var stack: [Box] = []
  var marks: [Int] = []
  var memo: [Int: Box] = [:]
  let arena = Arena()
  /// Checked every 64 Ki opcodes: Ctrl-C stops a long program.
  var isInterrupted: () -> Bool = { skellab_interrupt_pending() != 0 }
  /// How many values `convert` may still produce: a pickle can share one container many
  /// times through its memo, and a tree built from a small file must stay small.
  var budget: Int

  init(bytes: [UInt8], storages: [String: Data]) {
    self.bytes = bytes
    self.storages = storages
    budget = 16 * bytes.count + 100_000
  }

  func fail(_ message: String) -> TensorError {
    TensorError("pth", "pickle byte \(position): \(message)")
  }

  mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
    guard n >= 0, n <= bytes.count - position else {
      throw fail("a length of \(n) bytes runs past the end of the pickle (\(bytes.count) bytes)")
    }
    defer { position += n }
    return bytes[position..<(position + n)]
  }

  mutating func integer(_ n: Int) throws -> Int {
    let slice = try take(n)
    var value: UInt64 = 0
    for (i, byte) in slice.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
    return Int(truncatingIfNeeded: value)
  }

  mutating func line() throws -> String {
    guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw fail("truncated line") }
    defer { position = end + 1 }
    return String(decoding: bytes[position..<end], as: UTF8.self)
  }

  mutating func pop() throws -> Box {
    guard let top = stack.popLast() else { throw fail("stack underflow") }
    return top
  }

  mutating func popMark() throws -> [Box] {
    guard let mark = marks.popLast(), mark <= stack.count else { throw fail("no MARK") }
    defer { stack.removeSubrange(mark...) }
    return Array(stack[mark...])
  }

  mutating func push(_ kind: Box.Kind) { stack.append(arena.make(kind)) }
  mutating func pushValue(_ value: PickleValue) { stack.append(arena.make(.value(value))) }

  /// Runs the program to its STOP. Ctrl-C (SIGINT) is checked every 64 Ki opcodes.
  mutating func run() throws -> PickleValue {
    defer { arena.release() }
    var steps = 0
    while position < bytes.count {
      let op = bytes[position]
      position += 1
      steps &+= 1
      if steps & 0xFFFF == 0, isInterrupted() {
        throw fail("interrupted")
      }
      switch op {
      case 0x80: _ = try take(1)  // PROTO
      case 0x95: _ = try take(8)  // FRAME
      case 0x2E:  // STOP
        var visiting = Set<ObjectIdentifier>()
        return try convert(pop(), depth: 0, visiting: &visiting)
      case 0x28: marks.append(stack.count)  // MARK
      case 0x7D: push(.dict(Pairs()))  // EMPTY_DICT
      case 0x5D: push(.list(Items()))  // EMPTY_LIST
      case 0x29: push(.tuple([]))  // EMPTY_TUPLE
      case 0x74: push(.tuple(try popMark()))  // TUPLE
      case 0x85, 0x86, 0x87:  // TUPLE1..3
        let n = Int(op - 0x84)
        guard stack.count >= n else { throw fail("stack underflow") }
        let items = Array(stack.suffix(n))
        stack.removeLast(n)
        push(.tuple(items))
      case 0x6C: push(.list(Items(try popMark())))  // LIST
      case 0x64:  // DICT
        let items = try popMark()
        push(.dict(Pairs(try pairs(items))))
      case 0x4E: pushValue(.none)  // NONE
      case 0x88: pushValue(.bool(true))
      case 0x89: pushValue(.bool(false))
      case 0x4B: pushValue(.int(try integer(1)))  // BININT1
      case 0x4D: pushValue(.int(try integer(2)))  // BININT2
      case 0x4A: pushValue(.int(Int(Int32(truncatingIfNeeded: try integer(4)))))  // BININT
      case 0x8A:  // LONG1
        let n = try integer(1)
        guard n <= 8 else { throw fail("integer of \(n) bytes is too large") }
        let slice = try take(n)
        var value: Int64 = 0
        for (i, byte) in slice.enumerated() { value |= Int64(byte) << (8 * Int64(i)) }
        if n > 0, n < 8, slice.last.map({ $0 & 0x80 != 0 }) == true {
          value -= Int64(1) << (8 * Int64(n))  // two's complement of n bytes
        }
        pushValue(.int(Int(value)))
      case 0x47:  // BINFLOAT, big-endian
        let slice = try take(8)
        var bits: UInt64 = 0
        for byte in slice { bits = bits << 8 | UInt64(byte) }
        pushValue(.float(Double(bitPattern: bits)))
      case 0x58: pushValue(.string(try text(integer(4))))  // BINUNICODE
      case 0x8C: pushValue(.string(try text(integer(1))))  // SHORT_BINUNICODE
      case 0x8D: pushValue(.string(try text(integer(8))))  // BINUNICODE8
      case 0x8E: pushValue(.bytes(Data(try take(integer(8)))))  // BINBYTES8
      case 0x55: pushValue(.string(try text(integer(1))))  // SHORT_BINSTRING
      case 0x54: pushValue(.string(try text(integer(4))))  // BINSTRING
      case 0x43: pushValue(.bytes(Data(try take(integer(1)))))  // SHORT_BINBYTES
      case 0x42: pushValue(.bytes(Data(try take(integer(4)))))  // BINBYTES
      case 0x71: try memoize(integer(1))  // BINPUT
      case 0x72: try memoize(integer(4))  // LONG_BINPUT
      case 0x94: try memoize(memo.count)  // MEMOIZE
      case 0x68: try recall(integer(1))  // BINGET
      case 0x6A: try recall(integer(4))  // LONG_BINGET
      case 0x30: _ = try pop()  // POP
      case 0x31: _ = try popMark()  // POP_MARK
      case 0x32:  // DUP
        guard let top = stack.last else { throw fail("stack underflow") }
        stack.append(top)
      case 0x61:  // APPEND
        let item = try pop()
        try append([item])
      case 0x65: try append(popMark())  // APPENDS
      case 0x73:  // SETITEM
        let value = try pop()
        let key = try pop()
        try setItems([key, value])
      case 0x75: try setItems(popMark())  // SETITEMS
      case 0x63:  // GLOBAL
        let module = try line()
        let name = try line()
        try pushGlobal(module + "." + name)
      case 0x93:  // STACK_GLOBAL
        let name = try pop()
        let module = try pop()
        guard case .value(.string(let m)) = module.kind, case .value(.string(let n)) = name.kind
        else { throw fail("STACK_GLOBAL needs two strings") }
        try pushGlobal(m + "." + n)
      case 0x51:  // BINPERSID
        stack.append(try persistent(pop()))
      case 0x52:  // REDUCE
        let arguments = try pop()
        let callable = try pop()
        stack.append(try call(callable, arguments))
      case 0x81:  // NEWOBJ
        let arguments = try pop()
        let type = try pop()
        stack.append(try call(type, arguments))
      case 0x62:  // BUILD
        let state = try pop()
        guard let target = stack.last else { throw fail("stack underflow") }
        try build(target, state)
      default:
        throw fail(String(format: "refuses pickle opcode 0x%02x", op))
      }
    }
    throw fail("pickle ends without STOP")
  }

  mutating func text(_ count: Int) throws -> String {
    String(decoding: try take(count), as: UTF8.self)
  }

  mutating func memoize(_ index: Int) throws {
    guard let top = stack.last else { throw fail("stack underflow") }
    memo[index] = top
  }

  mutating func recall(_ index: Int) throws {
    guard let box = memo[index] else { throw fail("memo entry \(index) is missing") }
    stack.append(box)
  }

  func pairs(_ items: [Box]) throws -> [(Box, Box)] {
    guard items.count % 2 == 0 else { throw fail("odd number of dict items") }
    return stride(from: 0, to: items.count, by: 2).map { (items[$0], items[$0 + 1]) }
  }

  mutating func append(_ items: [Box]) throws {
    guard let target = stack.last, case .list(let list) = target.kind else {
      throw fail("APPEND to something that is not a list")
    }
    list.boxes.append(contentsOf: items)
  }

  mutating func setItems(_ items: [Box]) throws {
    guard let target = stack.last else { throw fail("stack underflow") }
    let new = try pairs(items)
    switch target.kind {
    case .dict(let dict), .object(_, let dict): dict.pairs.append(contentsOf: new)
    default: throw fail("SETITEM on something that is not a dict")
    }
  }

  mutating func pushGlobal(_ name: String) throws {
    if name.hasPrefix("torch."), let type = StorageType(rawValue: String(name.dropFirst(6))) {
      push(.storage(type, key: ""))
      return
    }
    guard Unpickler.allowedGlobals.contains(name) else {
      throw TensorError(
        "pth",
        "refuses to load '\(name)': a checkpoint may hold only tensors, dicts, lists, tuples, "
          + "strings and numbers (the file may be unsafe; nothing was run)")
    }
    push(.global(name))
  }

  /// `('storage', storage type, key, location, numel)`.
  func persistent(_ id: Box) throws -> Box {
    guard case .tuple(let parts) = id.kind, parts.count >= 3,
      case .value(.string("storage")) = parts[0].kind,
      case .storage(let type, _) = parts[1].kind,
      case .value(.string(let key)) = parts[2].kind
    else { throw fail("unsupported persistent id (only tensor storages are)") }
    return arena.make(.storage(type, key: key))
  }

  func call(_ callable: Box, _ arguments: Box) throws -> Box {
    guard case .global(let name) = callable.kind else {
      throw fail("calls something that is not an allowed global")
    }
    guard case .tuple(let args) = arguments.kind else { throw fail("arguments are not a tuple") }
    switch name {
    case "collections.OrderedDict":
      guard args.isEmpty else { throw fail("OrderedDict with arguments") }
      return arena.make(.dict(Pairs()))
    case "argparse.Namespace":
      return arena.make(.object("argparse.Namespace", Pairs()))
    case "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct":
      return arena.make(.ndarray)
    case "numpy.ndarray":
      return arena.make(.ndarray)
    case "numpy.dtype":
      guard case .value(.string(let code)) = args.first?.kind else {
        throw fail("dtype without a type")
      }
      return arena.make(.dtype(code, order: "="))
    case "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar":
      guard args.count == 2, case .dtype(let code, let order) = args[0].kind,
        case .value(.bytes(let raw)) = args[1].kind
      else { throw fail("malformed NumPy scalar") }
      let values = try NumPyData.decode(raw, code: code, order: order, count: 1, fail: fail)
      if code.hasPrefix("f") { return arena.make(.value(.float(values[0]))) }
      guard let integer = Int(exactly: values[0]) else {
        throw fail("NumPy integer scalar \(values[0]) does not fit in 64 bits")
      }
      return arena.make(.value(.int(integer)))
    case "torch._utils._rebuild_parameter":
      guard let data = args.first else { throw fail("_rebuild_parameter without data") }
      return data
    default:  // _rebuild_tensor_v2 / _rebuild_tensor: (storage, offset, size, stride, ...)
      return arena.make(.value(.tensor(try rebuildTensor(args))))
    }
  }

  func rebuildTensor(_ args: [Box]) throws -> Tensor {
    guard args.count >= 4, case .storage(let type, let key) = args[0].kind,
      case .value(.int(let offset)) = args[1].kind
    else { throw fail("malformed tensor (expects storage, offset, size, stride)") }
    let size = try integers(args[2], "size")
    let stride = try integers(args[3], "stride")
    guard size.count == stride.count, size.allSatisfy({ $0 >= 0 }), offset >= 0 else {
      throw fail("tensor size \(size) and stride \(stride) do not match")
    }
    guard let data = storages[key] else { throw fail("storage '\(key)' is missing from the zip") }
    let available = data.count / type.size
    let count = try Shape.elementCount(size, op: "pth")
    if count > 0 {
      // The last element's index, in overflow-checked arithmetic.
      var last = offset
      for (n, s) in zip(size, stride) {
        guard s >= 0 else { throw fail("negative stride \(s)") }
        let (step, overflowStep) = (n - 1).multipliedReportingOverflow(by: s)
        let (next, overflowSum) = last.addingReportingOverflow(step)
        guard !overflowStep, !overflowSum else {
          throw fail("tensor of size \(size), stride \(stride) and offset \(offset) overflows")
        }
        last = next
      }
      guard last < available else {
        throw fail(
          "tensor of size \(size), stride \(stride) and offset \(offset) runs past its storage "
            + "of \(available) elements")
      }
    }
    return try Tensor(shape: size, op: "pth") { out in
      data.withUnsafeBytes { raw in
        var index = [Int](repeating: 0, count: size.count)
        for i in 0..<count {
          var at = offset
          for (axis, position) in index.enumerated() { at += position * stride[axis] }
          out[i] = type.value(raw, at)
          _ = Shape.advance(&index, in: size)
        }
      }
    }
  }

  func integers(_ box: Box, _ what: String) throws -> [Int] {
    guard case .tuple(let items) = box.kind else { throw fail("tensor \(what) is not a tuple") }
    return try items.map { item in
      guard case .value(.int(let v)) = item.kind else {
        throw fail("tensor \(what) is not integers")
      }
      return v
    }
  }

  func build(_ target: Box, _ state: Box) throws {
    switch target.kind {
    case .object(let type, let attributes):
      guard case .dict(let items) = state.kind else { throw fail("\(type) state is not a dict") }
      attributes.pairs.append(contentsOf: items.pairs)
    case .dict, .value(.tensor):
      return  // OrderedDict / tensor state (hooks, metadata): nothing to keep
    case .dtype(let code, _):
      // (version, byte order, subarray, names, fields, elsize, alignment, flags)
      guard case .tuple(let items) = state.kind, items.count > 1,
        case .value(.string(let order)) = items[1].kind
      else { throw fail("malformed dtype state") }
      target.kind = .dtype(code, order: order)
    case .ndarray:
      // (version, shape, dtype, is_fortran, raw data)
      guard case .tuple(let items) = state.kind, items.count == 5,
        case .tuple(let dims) = items[1].kind, case .dtype(let code, let order) = items[2].kind,
        case .value(.bool(let fortran)) = items[3].kind
      else { throw fail("malformed NumPy array state") }
      let shape = try dims.map { box -> Int in
        guard case .value(.int(let n)) = box.kind, n >= 0 else { throw fail("bad NumPy shape") }
        return n
      }
      let count = try Shape.elementCount(shape, op: "pickle")
      let values: [Double]
      switch items[4].kind {
      case .value(.bytes(let raw)):
        values = try NumPyData.decode(raw, code: code, order: order, count: count, fail: fail)
      case .list(let objects) where code == "O":
        values = try objects.boxes.map { box -> Double in
          switch box.kind {
          case .value(.int(let i)): return Double(i)
          case .value(.float(let d)): return d
          default: throw fail("object arrays may hold numbers only")
          }
        }
      default: throw fail("NumPy array data must be bytes")
      }
      guard values.count == count else {
        throw fail("NumPy array of \(shape) holds \(values.count) values")
      }
      let ordered =
        fortran && shape.count > 1 ? NumPy.cOrder(fromFortran: values, shape: shape) : values
      target.kind = .value(.tensor(try Tensor(shape: shape, scalars: ordered.map { Float($0) })))
    default:
      throw fail("BUILD on an unsupported object")
    }
  }

  /// The finished value of `box`: containers at most `maximumDepth` deep, no container inside
  /// itself, and no more values than the budget allows.
  mutating func convert(
    _ box: Box, depth: Int, visiting: inout Set<ObjectIdentifier>
  ) throws -> PickleValue {
    budget -= 1
    guard budget >= 0 else {
      throw fail("the pickle expands to too many values (shared containers repeated)")
    }
    guard depth <= Unpickler.maximumDepth else {
      throw fail("containers nest more than \(Unpickler.maximumDepth) deep")
    }
    let id = ObjectIdentifier(box)
    guard visiting.insert(id).inserted else { throw fail("a container holds itself") }
    defer { visiting.remove(id) }
    func items(_ boxes: [Box]) throws -> [PickleValue] {
      try boxes.map { try convert($0, depth: depth + 1, visiting: &visiting) }
    }
    func pairs(_ boxes: [(Box, Box)]) throws -> [(key: PickleValue, value: PickleValue)] {
      try boxes.map {
        (
          try convert($0.0, depth: depth + 1, visiting: &visiting),
          try convert($0.1, depth: depth + 1, visiting: &visiting)
        )
      }
    }
    switch box.kind {
    case .value(let value): return value
    case .list(let list): return .list(try items(list.boxes))
    case .tuple(let boxes): return .tuple(try items(boxes))
    case .dict(let dict): return .dict(try pairs(dict.pairs))
    case .object(let type, let dict): return .object(type: type, attributes: try pairs(dict.pairs))
    case .global(let name): throw fail("a bare global '\(name)' is not data")
    case .ndarray, .dtype: throw fail("an unfinished NumPy object is not data")
    case .storage: throw fail("a bare storage is not data")
    }
  }
}

/// Decoding the raw bytes of NumPy arrays and scalars in pickles.
enum NumPyData {
  static func decode(
    _ raw: Data, code: String, order: String, count: Int, fail: (String) -> TensorError
  ) throws -> [Double] {
    guard order != ">" else { throw fail("big-endian NumPy data is not supported") }
    let kind = code.first ?? "?"
    let size = Int(code.dropFirst()) ?? (code == "?" ? 1 : 0)
    let (needed, overflow) = size.multipliedReportingOverflow(by: count)
    guard size > 0, !overflow, raw.count >= needed else {
      throw fail("NumPy dtype '\(code)' with \(raw.count) bytes for \(count) values")
    }
    let supported: Set<String> = [
      "f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1",
    ]
    guard supported.contains("\(kind)\(size)") else {
      throw fail("NumPy dtype '\(code)' is not supported (numbers and booleans only)")
    }
    return raw.withUnsafeBytes { bytes -> [Double] in
      (0..<count).map { i -> Double in
        let at = i * size
        switch (kind, size) {
        case ("f", 4):
          return Double(Float(bitPattern: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
        case ("f", 8):
          return Double(bitPattern: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self))
        case ("f", 2):
          return Double(
            Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self))))
        case ("i", 8): return Double(bytes.loadUnaligned(fromByteOffset: at, as: Int64.self))
        case ("i", 4): return Double(bytes.loadUnaligned(fromByteOffset: at, as: Int32.self))
        case ("i", 2): return Double(bytes.loadUnaligned(fromByteOffset: at, as: Int16.self))
        case ("i", 1): return Double(bytes.loadUnaligned(fromByteOffset: at, as: Int8.self))
        case ("u", 8): return Double(bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self))
        case ("u", 4): return Double(bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self))
        case ("u", 2): return Double(bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self))
        case ("u", 1), ("b", 1): return Double(bytes[at])
        default: return 0  // excluded by the check above
        }
      }
    }
  }
}
