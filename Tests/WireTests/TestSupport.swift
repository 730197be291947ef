import Foundation
import NIOCore
@testable import Wire

/// Parses hex text: rows of space-separated byte pairs, an optional leading offset column
/// ending in `:`, and `#` comments.
func bytes(fromHex text: String) -> [UInt8] {
    var out: [UInt8] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        for token in content.split(separator: " ") where !token.hasSuffix(":") {
            if let byte = UInt8(token, radix: 16) { out.append(byte) }
        }
    }
    return out
}

/// Formats bytes as fixture text: 16 pairs a row after a 4-digit hex offset.
func hexDump(_ bytes: [UInt8]) -> String {
    stride(from: 0, to: bytes.count, by: 16).map { row in
        let offset = String(row, radix: 16)
        let pairs = bytes[row..<min(row + 16, bytes.count)].map { b in
            (b < 16 ? "0" : "") + String(b, radix: 16)
        }
        return String(repeating: "0", count: 4 - offset.count) + offset + ": " + pairs.joined(separator: " ")
    }.joined(separator: "\n") + "\n"
}

let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
let fixturesDirectory = testsDirectory.appendingPathComponent("Fixtures")
let repositoryRoot = testsDirectory.deletingLastPathComponent().deletingLastPathComponent()

func fixtureBytes(_ name: String) throws -> [UInt8] {
    let url = Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)
        ?? fixturesDirectory.appendingPathComponent(name)
    return bytes(fromHex: try String(contentsOf: url, encoding: .utf8))
}

func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
    buffer.writeBytes(bytes)
    return buffer
}

func float32Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) }
}

/// Seeded generator for the randomized tests (SplitMix64).
struct TestRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// What a parser emitted, normalised so that runs fed differently split input compare equal:
/// the data of one chunk is joined, and its pieces are checked for whole elements in order.
enum ParsedEvent: Hashable {
    case message(Message)
    case chunk(ChunkHeader, data: [UInt8])
}

/// A sink that records events and checks the FrameSink contract as it goes.
struct RecordingSink: FrameSink {
    var events: [ParsedEvent] = []
    var open: ChunkHeader?
    var data: [UInt8] = []
    var nextElement = 0
    var contractViolations: [String] = []

    mutating func receive(_ message: Message) throws(WireError) {
        if open != nil { contractViolations.append("message inside a chunk") }
        events.append(.message(message))
    }
    mutating func beginChunk(_ header: ChunkHeader) throws(WireError) {
        if open != nil { contractViolations.append("chunk inside a chunk") }
        open = header
        data = []
        nextElement = Int(header.offset)
    }
    mutating func chunkData(_ bytes: UnsafeRawBufferPointer, header: ChunkHeader, firstElement: Int) throws(WireError) {
        if open != header { contractViolations.append("data outside its chunk") }
        if bytes.count % header.dtype.size != 0 { contractViolations.append("partial element (\(bytes.count) bytes)") }
        if bytes.isEmpty { contractViolations.append("empty data call") }
        if firstElement != nextElement { contractViolations.append("element \(firstElement), expected \(nextElement)") }
        nextElement = firstElement + bytes.count / header.dtype.size
        data.append(contentsOf: bytes)
    }
    mutating func endChunk(_ header: ChunkHeader) throws(WireError) {
        if open != header { contractViolations.append("end of a chunk not open") }
        if data.count != header.dataBytes { contractViolations.append("chunk data \(data.count) bytes, expected \(header.dataBytes)") }
        events.append(.chunk(header, data: data))
        open = nil
    }
}

/// Feeds `pieces` to a fresh parser in order; returns the events and the error, if any.
func parse(
    _ pieces: [ArraySlice<UInt8>], limits: WireLimits = .default, layout: WireLayout? = nil, requireHello: Bool = false,
    finish: Bool = true
) -> (events: [ParsedEvent], error: WireError?, violations: [String]) {
    var parser = FrameParser(limits: limits, layout: layout, requireHello: requireHello)
    var sink = RecordingSink()
    do throws(WireError) {
        for piece in pieces {
            var buf = buffer(Array(piece))
            try parser.parse(&buf, into: &sink)
            if buf.readableBytes != 0 { sink.contractViolations.append("parse left \(buf.readableBytes) bytes") }
        }
        if finish { try parser.finish() }
        return (sink.events, nil, sink.contractViolations)
    } catch {
        return (sink.events, error, sink.contractViolations)
    }
}
