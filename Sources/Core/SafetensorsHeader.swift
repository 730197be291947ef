import Foundation

/// The JSON header of a safetensors file (https://github.com/huggingface/safetensors): per
/// tensor its dtype, shape and byte range in the data section, plus string metadata.
struct SafetensorsHeader: Equatable {
    struct Entry: Equatable {
        var name: String
        var shape: [Int]
        /// Byte range in the data section, which starts right after the header.
        var begin: Int
        var end: Int
    }

    /// The header length the Rust library refuses beyond.
    static let maxLength = 100_000_000

    var metadata: [String: String]
    /// In data order.
    var entries: [Entry]

    /// The first 8 + N bytes of the file: N as UInt64 little-endian, then the JSON, padded with
    /// spaces so the data starts 8-byte aligned. Metadata first, then tensors in entry order.
    func encoded() -> [UInt8] {
        var json = "{"
        var first = true
        func key(_ k: String) {
            if !first { json += "," }
            first = false
            json += Self.quoted(k) + ":"
        }
        if !metadata.isEmpty {
            key("__metadata__")
            json += "{" + metadata.sorted { $0.key < $1.key }
                .map { Self.quoted($0.key) + ":" + Self.quoted($0.value) }
                .joined(separator: ",") + "}"
        }
        for e in entries {
            key(e.name)
            let shape = e.shape.map(String.init).joined(separator: ",")
            json += "{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(e.begin),\(e.end)]}"
        }
        json += "}"
        var body = Array(json.utf8)
        body += [UInt8](repeating: 0x20, count: (8 - body.count % 8) % 8)
        let n = UInt64(body.count)
        return (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * $0)) } + body
    }

    /// A JSON string literal.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// Parses the JSON header and checks it against a data section of `dataSize` bytes: every
    /// tensor F32 with a shape matching its byte range, ranges inside the data, disjoint, and
    /// together covering every byte.
    static func decode(_ json: [UInt8], dataSize: Int, path: String) throws(CheckpointError) -> SafetensorsHeader {
        func fail(_ p: CheckpointError.Problem) -> CheckpointError { CheckpointError(path: path, problem: p) }
        func bad(_ reason: String) -> CheckpointError { fail(.badHeader(reason: reason)) }

        let top: [String: JSONValue]
        do {
            top = try JSONDecoder().decode([String: JSONValue].self, from: Data(json))
        } catch {
            throw bad("not a JSON object (\(Self.describe(error)))")
        }

        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (name, value) in top {
            if name == "__metadata__" {
                guard case .object(let fields) = value else { throw bad("__metadata__ is not an object") }
                for (k, v) in fields {
                    guard case .string(let s) = v else {
                        throw bad("__metadata__ value for \"\(k)\" is not a string (nested values must be JSON-encoded strings)")
                    }
                    metadata[k] = s
                }
                continue
            }
            guard case .object(let fields) = value else { throw bad("tensor '\(name)' is not an object") }
            guard case .string(let dtype) = fields["dtype"] else { throw bad("tensor '\(name)' has no string \"dtype\"") }
            guard dtype == "F32" else { throw fail(.unsupportedDType(tensor: name, dtype: dtype)) }
            guard case .array(let dims) = fields["shape"], let shape = Self.integers(dims), shape.allSatisfy({ $0 >= 0 })
            else { throw bad("tensor '\(name)' has no \"shape\" of non-negative integers") }
            guard case .array(let range) = fields["data_offsets"], let offsets = Self.integers(range), offsets.count == 2,
                  offsets[0] >= 0, offsets[0] <= offsets[1]
            else { throw bad("tensor '\(name)' has no \"data_offsets\" [begin, end] with 0 <= begin <= end") }
            let (begin, end) = (offsets[0], offsets[1])
            guard end <= dataSize else {
                throw fail(.offsetsOutOfRange(tensor: name, begin: begin, end: end, dataSize: dataSize))
            }
            var bytes = MemoryLayout<Float>.size
            for d in shape {
                let (p, overflow) = bytes.multipliedReportingOverflow(by: d)
                bytes = overflow ? -1 : p
                if overflow { break }
            }
            guard bytes == end - begin else { throw fail(.sizeMismatch(tensor: name, shape: shape, byteCount: end - begin)) }
            entries.append(Entry(name: name, shape: shape, begin: begin, end: end))
        }

        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var covered = 0
        var previous: String?
        for e in entries {
            if e.begin < covered, let previous { throw fail(.overlapping(tensor: e.name, other: previous)) }
            if e.begin > covered { throw fail(.uncoveredData(begin: covered, end: e.begin)) }
            covered = e.end
            previous = e.name
        }
        if covered < dataSize { throw fail(.uncoveredData(begin: covered, end: dataSize)) }
        return SafetensorsHeader(metadata: metadata, entries: entries)
    }

    private static func integers(_ values: [JSONValue]) -> [Int]? {
        var out: [Int] = []
        for v in values {
            guard case .integer(let i) = v else { return nil }
            out.append(i)
        }
        return out
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c), DecodingError.typeMismatch(_, let c),
             DecodingError.valueNotFound(_, let c), DecodingError.keyNotFound(_, let c):
            let at = c.codingPath.map(\.stringValue).joined(separator: ".")
            let cause = c.underlyingError.map { String(describing: $0) }
            return [at.isEmpty ? nil : "at \(at)", c.debugDescription, cause].compactMap { $0 }.joined(separator: ": ")
        default:
            return String(describing: error)
        }
    }
}

/// Any JSON value, integers kept exact (offsets may exceed 2^53).
private enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int.self) {
            self = .integer(i)
        } else if let d = try? c.decode(Double.self) {
            self = .number(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }
}
