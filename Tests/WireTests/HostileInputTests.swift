import Core
import NIOCore
import Testing
@testable import Wire

/// Hostile or broken input: each case must end in the named WireError, never a trap.
@Suite struct HostileInputTests {
    static func header(_ type: UInt8, length: UInt32, id: UInt64 = 0, magic: UInt32 = FrameHeader.magic,
                       version: UInt16 = 1, flags: UInt8 = 0) -> [UInt8] {
        var b = ByteBufferAllocator().buffer(capacity: 20)
        b.writeInteger(magic, endianness: .little)
        b.writeInteger(version, endianness: .little)
        b.writeInteger(type)
        b.writeInteger(flags)
        b.writeInteger(length, endianness: .little)
        b.writeInteger(id, endianness: .little)
        return Array(b.readableBytesView)
    }

    static func chunk(_ type: MessageType = .pushChunk, tensor: UInt32, offset: UInt64, count: UInt32, dtype: UInt8 = 1,
                      length: UInt32? = nil, data: Int? = nil) -> [UInt8] {
        let dataBytes = data ?? Int(count) * 4
        var b = ByteBufferAllocator().buffer(capacity: 64)
        b.writeBytes(header(type.rawValue, length: length ?? UInt32(20 + dataBytes), id: 7))
        b.writeInteger(tensor, endianness: .little)
        b.writeInteger(offset, endianness: .little)
        b.writeInteger(count, endianness: .little)
        b.writeInteger(dtype)
        b.writeBytes([0, 0, 0])
        b.writeBytes([UInt8](repeating: 0, count: dataBytes))
        return Array(b.readableBytesView)
    }

    /// A HELLO with the given token and name bytes.
    static func hello(token: [UInt8] = [], name: [UInt8], trailing: [UInt8] = []) -> [UInt8] {
        var p: [UInt8] = [1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff] + [UInt8](repeating: 0, count: 8)
        p += [UInt8(token.count & 0xff), UInt8(token.count >> 8)] + token
        p += [UInt8(name.count & 0xff), UInt8(name.count >> 8)] + name + trailing
        return header(MessageType.hello.rawValue, length: UInt32(p.count)) + p
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var bytes: [UInt8]
        var error: WireError
        var requireHello = false
        var layout: WireLayout? = nil
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "bad magic", bytes: header(1, length: 0, magic: 0x5054_5448), error: .badMagic(found: 0x5054_5448)),
        Case(name: "version 2", bytes: header(1, length: 0, version: 2), error: .unsupportedVersion(found: 2, supported: 1)),
        Case(name: "unknown type", bytes: header(0x7f, length: 0), error: .unknownType(found: 0x7f)),
        Case(name: "flags set", bytes: header(MessageType.pull.rawValue, length: 0, flags: 4),
             error: .malformed(field: "header.flags", value: "4", expected: "0")),
        Case(name: "control frame claims 4 GiB", bytes: header(MessageType.welcome.rawValue, length: .max),
             error: .frameTooLarge(type: .welcome, length: .max, limit: 1 << 20)),
        Case(name: "chunk frame claims 4 GiB", bytes: header(MessageType.pushChunk.rawValue, length: .max),
             error: .frameTooLarge(type: .pushChunk, length: .max, limit: 16 << 20)),
        Case(name: "chunk frame too short for its header", bytes: header(MessageType.pushChunk.rawValue, length: 8),
             error: .truncated(field: "PUSH_CHUNK chunk header", needed: 20, available: 8)),
        Case(name: "payload shorter than its fields", bytes: header(MessageType.pushEnd.rawValue, length: 4) + [0, 0, 0, 0],
             error: .truncated(field: "PUSH_END loss", needed: 8, available: 4)),
        Case(name: "payload longer than its fields", bytes: header(MessageType.pull.rawValue, length: 2, id: 3) + [0, 0],
             error: .wrongLength(field: "PULL payload length", value: 2, expected: 0)),
        Case(name: "HELLO with trailing bytes", bytes: hello(name: [0x77], trailing: [9]),
             error: .wrongLength(field: "HELLO payload length", value: 22, expected: 21)),
        Case(name: "worker name over the limit", bytes: hello(name: [UInt8](repeating: 0x61, count: 257)),
             error: .limitExceeded(field: "HELLO worker name length", value: 257, limit: 256)),
        Case(name: "token over the limit", bytes: hello(token: [UInt8](repeating: 0x61, count: 300), name: [0x77]),
             error: .limitExceeded(field: "HELLO token length", value: 300, limit: 256)),
        Case(name: "name not UTF-8", bytes: hello(name: [0xff, 0xfe]),
             error: .malformed(field: "HELLO worker name", value: "2 bytes", expected: "valid UTF-8")),
        Case(name: "name length past the payload", bytes: header(1, length: 20) + [1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff] + [UInt8](repeating: 0, count: 10) + [0x10, 0],
             error: .truncated(field: "HELLO worker name", needed: 16, available: 0)),
        Case(name: "non-handshake message first", bytes: header(MessageType.pushChunk.rawValue, length: 20), error: .handshakeRequired(found: .pushChunk),
             requireHello: true),
        Case(name: "chunk length disagrees with count", bytes: chunk(tensor: 0, offset: 0, count: 4, length: 20 + 12, data: 12),
             error: .wrongLength(field: "PUSH_CHUNK payload length", value: 32, expected: 36)),
        Case(name: "unknown dtype", bytes: chunk(tensor: 0, offset: 0, count: 1, dtype: 9),
             error: .wrongDType(field: "chunk dtype", value: 9)),
        Case(name: "chunk past the end of its tensor", bytes: chunk(tensor: 0, offset: 4, count: 3), error:
             .chunkOutOfRange(tensor: 0, offset: 4, count: 3, tensorCount: 2, tensorElements: 6), layout: Golden.layout),
        Case(name: "chunk of a tensor not in the layout", bytes: chunk(tensor: 2, offset: 0, count: 1), error:
             .chunkOutOfRange(tensor: 2, offset: 0, count: 1, tensorCount: 2, tensorElements: 0), layout: Golden.layout),
        Case(name: "chunk offset wraps around", bytes: chunk(tensor: 0, offset: .max, count: 2),
             error: .limitExceeded(field: "chunk end element", value: .max, limit: 1 << 34)),
        Case(name: "unknown BYE reason", bytes: header(MessageType.bye.rawValue, length: 3) + [9, 0, 0],
             error: .malformed(field: "BYE reason", value: "9", expected: "1 (done), 2 (diverged) or 3 (shutdown)")),
        Case(name: "WELCOME rank outside the world", bytes: header(MessageType.welcome.rawValue, length: 8) + [2, 0, 0, 0, 2, 0, 0, 0],
             error: .malformed(field: "WELCOME rank", value: "2", expected: "less than the world size 2")),
    ]

    @Test(arguments: cases)
    func parserRefuses(_ c: Case) {
        let result = parse([c.bytes[...]], layout: c.layout, requireHello: c.requireHello)
        #expect(result.error == c.error)
        #expect(result.events.isEmpty)
    }

    @Test(arguments: cases)
    func decoderRefuses(_ c: Case) {
        var decoder = FrameDecoder(layout: c.layout, requireHello: c.requireHello)
        var buf = buffer(c.bytes)
        #expect(throws: c.error) { while try decoder.decodeFrame(&buf) != nil {} }
    }

    @Test func layoutHashMustMatchItsTensors() throws {
        var bytes = try fixtureBytes("init.hex")
        bytes[28] ^= 0x01  // first byte of the layout hash (20 header + 4 chunk count + 4 tensor count)
        let result = parse([bytes[...]])
        guard case .layoutMismatch(let expected, _) = result.error else {
            Issue.record("expected layoutMismatch, got \(String(describing: result.error))")
            return
        }
        #expect(expected == Golden.layout.hash)
    }

    @Test func rankOverTheLimit() throws {
        let deep = WireLayout([WireTensor(spec: .init(name: "x", shape: Array(repeating: 1, count: 9)), adapt: true)])
        #expect(throws: WireError.limitExceeded(field: "tensor 0 rank", value: 9, limit: 8)) {
            _ = try FrameEncoder().encode(.initLayout(layout: deep, chunkCount: 1))
        }
        var limits = WireLimits.default
        limits.maxRank = 9
        let bytes = Array(try FrameEncoder(limits: limits).encode(.initLayout(layout: deep, chunkCount: 1)).readableBytesView)
        #expect(parse([bytes[...]]).error == .limitExceeded(field: "tensor 0 rank", value: 9, limit: 8))
    }

    @Test func elementCountOverflowIsRefused() throws {
        let huge = WireLayout([WireTensor(spec: .init(name: "x", shape: [1 << 20, 1 << 20]), adapt: true)])
        #expect(throws: WireError.limitExceeded(field: "tensor 0 element count", value: 1 << 40, limit: 1 << 34)) {
            _ = try FrameEncoder().encode(.initLayout(layout: huge, chunkCount: 1))
        }
    }

    @Test func streamEndingMidFrameIsTruncated() throws {
        let bytes = try fixtureBytes("push-one-tensor.hex")
        for cut in 1..<bytes.count {
            let result = parse([bytes[..<cut]])
            let boundary = [0, 24, 24 + 56, bytes.count].contains(cut)
            if boundary {
                #expect(result.error == nil, "cut at \(cut)")
            } else if case .truncated = result.error {
            } else {
                Issue.record("cut at \(cut): \(String(describing: result.error))")
            }
        }
    }

    @Test func everyErrorHasACodeAndADescription() {
        for c in Self.cases {
            #expect(ErrorCode.allDefined.contains(c.error.code))
            #expect(!c.error.description.isEmpty)
        }
        #expect(Set(ErrorCode.allDefined.map(\.name)).count == ErrorCode.allDefined.count)
        #expect(ErrorCode(rawValue: 999).name == "code 999")
    }
}
