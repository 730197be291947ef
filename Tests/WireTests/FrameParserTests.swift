import NIOCore
import Testing
@testable import Wire

@Suite struct FrameParserTests {
    /// Every golden frame run together: one stream with every message type and dtype.
    static func stream() throws -> [UInt8] { try Golden.allFrames().flatMap { $0 } }

    static func expected() -> [ParsedEvent] { Golden.cases.flatMap(\.frames).map(\.parsed) }

    @Test func wholeStreamInOneRead() throws {
        let result = parse([try Self.stream()[...]], layout: Golden.layout)
        #expect(result.error == nil)
        #expect(result.violations.isEmpty)
        #expect(result.events == Self.expected())
    }

    @Test func splitAtEveryByteBoundary() throws {
        let stream = try Self.stream()
        let expected = Self.expected()
        for cut in 0...stream.count {
            let result = parse([stream[..<cut], stream[cut...]], layout: Golden.layout)
            #expect(result.error == nil, "cut at \(cut)")
            #expect(result.violations.isEmpty, "cut at \(cut): \(result.violations)")
            #expect(result.events == expected, "cut at \(cut)")
        }
    }

    @Test func eachFrameSplitAtEveryPairOfBoundaries() throws {
        for frame in try Golden.allFrames() {
            let expected = parse([frame[...]]).events
            for a in 0...frame.count {
                for b in a...frame.count {
                    let result = parse([frame[..<a], frame[a..<b], frame[b...]])
                    #expect(result.error == nil && result.violations.isEmpty && result.events == expected, "cuts \(a), \(b)")
                }
            }
        }
    }

    @Test func oneByteAtATime() throws {
        let stream = try Self.stream()
        let result = parse(stream.indices.map { stream[$0...$0] }, layout: Golden.layout)
        #expect(result.error == nil)
        #expect(result.violations.isEmpty)
        #expect(result.events == Self.expected())
    }

    @Test func floatSplitAcrossReadsArrivesWhole() throws {
        let header = ChunkHeader(kind: .push, step: 1, tensor: 0, offset: 0, count: 4)
        var frame = ByteBufferAllocator().buffer(capacity: 64)
        let values: [Float] = [1.5, -2.25, 3.125, 4]
        try FrameEncoder().encodeChunk(header, data: buffer(float32Bytes(values)), into: &frame)
        let bytes = Array(frame.readableBytesView)
        // Cut inside the second float: 40 header bytes + 4 + 2.
        var parser = FrameParser()
        var received: [Float] = []
        var calls: [(first: Int, count: Int)] = []
        for piece in [bytes[..<46], bytes[46...]] {
            var buf = buffer(Array(piece))
            try parser.parse(&buf) { event throws(WireError) in
                if case .chunkData(_, let first, let raw) = event {
                    calls.append((first, raw.count / 4))
                    for i in 0..<raw.count / 4 { received.append(Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                }
            }
        }
        #expect(received == values)
        #expect(calls.map(\.first) == [0, 1, 2])
        #expect(calls.map(\.count) == [1, 1, 2])
        #expect(parser.isAtFrameBoundary)
    }

    @Test func sinkErrorStopsTheParserForGood() throws {
        let bytes = try fixtureBytes("push-one-tensor.hex")
        var parser = FrameParser()
        let refusal = WireError.rejected(code: .stepClosed, message: "step 7 is closed")
        var buf = buffer(bytes)
        #expect(throws: refusal) {
            try parser.parse(&buf) { event throws(WireError) in
                if case .chunkBegin = event { throw refusal }
            }
        }
        var more = buffer(try fixtureBytes("heartbeat.hex"))
        #expect(throws: refusal) { try parser.parse(&more) { _ throws(WireError) in } }
    }
}
