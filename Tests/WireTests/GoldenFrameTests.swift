import Foundation
import NIOCore
import Testing
@testable import Wire

@Suite struct GoldenFrameTests {
    /// Run with WIRE_WRITE_FIXTURES=1 to rewrite the fixtures after a deliberate protocol
    /// change (then update docs/wire-protocol.md, which the doc test checks).
    @Test(arguments: Golden.cases.map(\.name))
    func encodingMatchesFixture(_ name: String) throws {
        let frames = try #require(Golden.cases.first { $0.name == name }).frames
        let encoded = try Golden.encoded(frames)
        if ProcessInfo.processInfo.environment["WIRE_WRITE_FIXTURES"] == "1" {
            // One block per frame, offsets relative to the frame's first byte.
            let text = try frames.map { "# \(describe($0))\n" + hexDump(try Golden.encoded([$0])) }.joined()
            try text.write(to: fixturesDirectory.appendingPathComponent("\(name).hex"), atomically: true, encoding: .utf8)
        }
        let fixture = try fixtureBytes("\(name).hex")
        #expect(hexDump(encoded) == hexDump(fixture))
    }

    @Test(arguments: Golden.cases.map(\.name))
    func fixtureDecodesToItsMessages(_ name: String) throws {
        let frames = try #require(Golden.cases.first { $0.name == name }).frames
        let result = parse([try fixtureBytes("\(name).hex")[...]], layout: Golden.layout)
        #expect(result.error == nil)
        #expect(result.violations.isEmpty)
        #expect(result.events == frames.map(\.parsed))
    }

    @Test func everyMessageTypeHasAFixture() throws {
        var seen = Set<MessageType>()
        for (name, _) in Golden.cases {
            var buf = buffer(try fixtureBytes("\(name).hex"))
            while let header = try FrameHeader.peek(buf, limits: .default) {
                seen.insert(header.type)
                buf.moveReaderIndex(forwardBy: FrameHeader.size + Int(header.length))
            }
        }
        #expect(seen == Set(MessageType.allCases))
        #expect(Set(ByeReason.allCases).count == 3)
    }

    /// The worked hex dumps in docs/wire-protocol.md are the fixtures, byte for byte. Each dump
    /// follows a `<!-- fixture: NAME.hex -->` line.
    @Test func specHexDumpsMatchFixtures() throws {
        let doc = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/wire-protocol.md"), encoding: .utf8)
        let parts = doc.components(separatedBy: "<!-- fixture: ").dropFirst()
        var checked: [String] = []
        for part in parts {
            let name = String(part.prefix { $0 != " " })
            let afterFence = try #require(part.components(separatedBy: "```").dropFirst().first)
            let body = afterFence.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).dropFirst().first.map(String.init) ?? ""
            #expect(bytes(fromHex: body) == (try fixtureBytes(name)), "docs dump of \(name)")
            checked.append(name)
        }
        #expect(checked.contains("hello.hex"))
        #expect(checked.contains("push-one-tensor.hex"))
    }

    private func describe(_ frame: GoldenFrame) -> String {
        switch frame {
        case .message(let m):
            "\(m.type) \(m)".replacingOccurrences(of: "Wire.", with: "")
                .replacingOccurrences(of: #"Optional\(([^()]*)\)"#, with: "$1", options: .regularExpression)
        case .chunk(let h, _): "\(h.kind.messageType) step \(h.step) tensor \(h.tensor) offset \(h.offset) count \(h.count) \(h.dtype)"
        }
    }
}
