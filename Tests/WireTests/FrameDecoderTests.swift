import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing
@testable import Wire

@Suite struct FrameDecoderTests {
    @Test func verifierAcceptsEveryGoldenFrame() throws {
        let pairs = try Golden.cases.flatMap(\.frames).map { frame in
            (buffer(try Golden.encoded([frame])), [frame.frame])
        }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) {
            FrameDecoder(layout: Golden.layout)
        }
    }

    @Test func handshakeIsEnforcedInAChannel() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(requireHello: true)))
        let pull = try FrameEncoder().encode(.pull(step: 1))
        #expect(throws: WireError.handshakeRequired(found: .pull)) { try channel.writeInbound(pull) }
        _ = try? channel.finish()
    }

    @Test func helloThenAnythingInAChannel() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(requireHello: true)))
        let hello = Message.hello(Hello(workerName: "w"))
        var input = try FrameEncoder().encode(hello)
        try FrameEncoder().encode(.pull(step: 1), into: &input)
        try channel.writeInbound(input)
        #expect(try channel.readInbound(as: Frame.self) == .message(hello))
        #expect(try channel.readInbound(as: Frame.self) == .message(.pull(step: 1)))
        #expect(try channel.finish().isClean)
    }

    @Test func encoderIsAMessageToByteEncoder() throws {
        let channel = EmbeddedChannel(handler: MessageToByteHandler(FrameEncoder()))
        try channel.writeOutbound(Message.heartbeat(sequence: 3))
        let out = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(out.readableBytesView) == (try fixtureBytes("heartbeat.hex")))
        #expect(try channel.finish().isClean)
    }

    @Test func fourGiBHeaderFailsWithOnlyTheHeader() throws {
        var header = ByteBufferAllocator().buffer(capacity: 20)
        FrameHeader(type: .welcome, length: .max, id: 0).write(to: &header)
        var decoder = FrameDecoder()
        #expect(throws: WireError.frameTooLarge(type: .welcome, length: .max, limit: 1 << 20)) {
            _ = try decoder.decodeFrame(&header)
        }
    }

    @Test func truncatedAtEndOfStream() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        let bytes = try fixtureBytes("hello.hex")
        try channel.writeInbound(buffer(Array(bytes.dropLast(3))))
        #expect(throws: WireError.truncated(field: "frame", needed: bytes.count, available: bytes.count - 3)) {
            _ = try channel.finish()
        }
    }
}
