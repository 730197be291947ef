import NIOCore
import Testing
@testable import Wire

/// Seeded random and mutated frames: every outcome is a message (that re-encodes to the same
/// message) or a WireError; the streaming parser and the NIO decoder agree on which.
@Suite struct RandomizedFrameTests {
    static let iterations = 100_000

    @Test func randomAndMutatedFrames() throws {
        var rng = TestRNG(seed: 0x1A25_0001)
        let golden = try Golden.allFrames()
        var outcomes = (messages: 0, chunks: 0, errors: [ErrorCode: Int]())
        for i in 0..<Self.iterations {
            let input = i % 2 == 0 ? Self.mutate(golden.randomElement(using: &rng) ?? [], &rng) : Self.random(&rng)
            let layout = rng.next() % 2 == 0 ? Golden.layout : nil
            let requireHello = rng.next() % 4 == 0
            let cut = input.isEmpty ? 0 : Int(rng.next() % UInt64(input.count + 1))
            let streamed = parse([input[..<cut], input[cut...]], layout: layout, requireHello: requireHello)
            #expect(streamed.violations.isEmpty, "input \(i): \(streamed.violations)")

            var decoder = FrameDecoder(layout: layout, requireHello: requireHello)
            var buf = buffer(input)
            var decoded: [ParsedEvent] = []
            var decoderError: WireError?
            do throws(WireError) {
                while let frame = try decoder.decodeFrame(&buf) {
                    switch frame {
                    case .message(let m): decoded.append(.message(m))
                    case .chunk(let h, let data): decoded.append(.chunk(h, data: Array(data.readableBytesView)))
                    }
                }
                if buf.readableBytes > 0 { decoderError = .truncated(field: "frame", needed: 0, available: buf.readableBytes) }
            } catch {
                decoderError = error
            }
            #expect(sameOutcome(streamed.events, decoded), "input \(i): parser and decoder disagree")
            #expect((streamed.error == nil) == (decoderError == nil), "input \(i): \(String(describing: streamed.error)) vs \(String(describing: decoderError))")

            for event in streamed.events {
                switch event {
                case .message(let m):
                    outcomes.messages += 1
                    let once = try FrameEncoder().encode(m)
                    let again = parse([Array(once.readableBytesView)[...]])
                    #expect(again.error == nil && again.events.count == 1, "input \(i): \(m) does not re-encode")
                    if case .message(let m2) = again.events.first {
                        #expect(Array(try FrameEncoder().encode(m2).readableBytesView) == Array(once.readableBytesView))
                    }
                case .chunk:
                    outcomes.chunks += 1
                }
            }
            if let error = streamed.error { outcomes.errors[error.code, default: 0] += 1 }
        }
        // The mutations must reach deep enough to exercise both outcomes and many error kinds.
        #expect(outcomes.messages > 1_000)
        #expect(outcomes.chunks > 100)
        #expect(outcomes.errors.count >= 10, "\(outcomes.errors)")
    }

    /// NaN payloads make Message equality fail, so compare the frames' bytes instead.
    private func sameOutcome(_ a: [ParsedEvent], _ b: [ParsedEvent]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).allSatisfy { x, y in
            switch (x, y) {
            case (.message(let m), .message(let n)):
                m == n || (try? FrameEncoder().encode(m)) == (try? FrameEncoder().encode(n))
            default: x == y
            }
        }
    }

    static func mutate(_ frame: [UInt8], _ rng: inout TestRNG) -> [UInt8] {
        var bytes = frame
        for _ in 0..<(1 + Int(rng.next() % 3)) {
            let at = bytes.isEmpty ? 0 : Int(rng.next() % UInt64(bytes.count))
            switch rng.next() % 8 {
            case 0, 1:  // flip one bit
                if !bytes.isEmpty { bytes[at] ^= UInt8(1) << (rng.next() % 8) }
            case 2:  // replace a byte
                if !bytes.isEmpty { bytes[at] = UInt8(truncatingIfNeeded: rng.next()) }
            case 3:  // truncate
                bytes.removeLast(bytes.count - at)
            case 4:  // insert bytes
                bytes.insert(contentsOf: (0..<(1 + rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
            case 5:  // rewrite the payload length (small, off by a little, or huge)
                if bytes.count >= 12 {
                    let length = [UInt32(truncatingIfNeeded: rng.next()), UInt32(max(0, bytes.count - 20)) &+ UInt32(truncatingIfNeeded: rng.next() % 9) &- 4,
                                  UInt32(rng.next() % 64)][Int(rng.next() % 3)]
                    withUnsafeBytes(of: length.littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
                }
            case 6:  // change the type to another known one
                if bytes.count > 6 { bytes[6] = MessageType.allCases.randomElement(using: &rng)?.rawValue ?? 0 }
            default:  // append another frame's start
                bytes += bytes.prefix(Int(rng.next() % 40))
            }
        }
        return bytes
    }

    /// Random bytes, half of them behind a valid magic and version so they reach the payload
    /// decoders.
    static func random(_ rng: inout TestRNG) -> [UInt8] {
        let count = Int(rng.next() % 96)
        var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        if rng.next() % 2 == 0 {
            let type = MessageType.allCases.randomElement(using: &rng)?.rawValue ?? 0
            var header = HostileInputTests.header(type, length: UInt32(count), id: rng.next() % 4)
            if type >= 0x20, count >= 20 {
                bytes[16] = UInt8(1 + rng.next() % 3)  // a valid dtype
                bytes[17] = 0; bytes[18] = 0; bytes[19] = 0
            }
            header += bytes
            bytes = header
        }
        return bytes
    }
}
