import Core
import Logging
import NIOCore
import NIOEmbedded
import Testing
import Wire

@testable import Client

/// `SessionHandler` without sockets: bytes split anywhere, control frames between weight
/// chunks, and the push window following the channel's writability.
struct SessionHandlerTests {
    static let layout = WireLayout([
        WireTensor(spec: TensorSpec(name: "w", shape: [3, 4]), adapt: true),
        WireTensor(spec: TensorSpec(name: "b", shape: [3]), adapt: false),
    ])

    final class Events: @unchecked Sendable {
        var events: [SessionEvent] = []
        var closed: [ConnectionFailure] = []
    }

    /// A handshaken handler on an embedded channel, and what it reported.
    func handshaken() throws -> (EmbeddedChannel, SessionHandler, Events) {
        let channel = EmbeddedChannel()
        let events = Events()
        let handler = SessionHandler(
            hello: Hello(workerName: "embedded"), limits: .default, heartbeatInterval: nil, eventLoop: channel.eventLoop,
            logger: Logger(label: "test"), onEvent: { events.events.append($0) }, onClosed: { events.closed.append($0) })
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let hello = try #require(try outbound(channel).first)
        #expect(hello == .message(.hello(Hello(workerName: "embedded"))))
        let job = #"{"share": 4, "chunk_elements": 1024}"#
        try feedBytewise(channel, [.welcome(Welcome(rank: 0, worldSize: 1, currentStep: 5, job: job, layout: Self.layout))])
        let welcome = try handler.welcome.futureResult.completedValue()
        #expect(welcome.currentStep == 5)
        return (channel, handler, events)
    }

    /// Every frame the handler has written so far.
    func outbound(_ channel: EmbeddedChannel) throws -> [Frame] {
        var decoder = FrameDecoder()
        var frames: [Frame] = []
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            while let frame = try decoder.decodeFrame(&buffer) { frames.append(frame) }
        }
        return frames
    }

    /// Feeds control messages and weight chunks one byte per read.
    func feedBytewise(_ channel: EmbeddedChannel, _ messages: [Message], chunks: [(ChunkHeader, [Float])] = [], chunkAfter: Int = 0) throws {
        var all = ByteBuffer()
        let encoder = FrameEncoder()
        func writeChunks() throws {
            for (header, values) in chunks {
                try encoder.encodeChunkHeader(header, into: &all)
                values.withUnsafeBytes { _ = all.writeBytes($0) }
            }
        }
        if messages.isEmpty { try writeChunks() }
        for (index, message) in messages.enumerated() {
            try encoder.encode(message, into: &all)
            if index == chunkAfter { try writeChunks() }
        }
        while let byte = all.readSlice(length: 1) {
            try channel.writeInbound(byte)
        }
    }

    @Test func weightsSplitIntoSingleBytesLandInTheCallersBuffers() throws {
        let (channel, handler, events) = try handshaken()
        let arena = FloatArena(layout: Self.layout.layout)
        let pulled = handler.startPull(step: 5, into: WeightBuffers(tensors: arena.buffers))
        #expect(try outbound(channel) == [.message(.pull(step: 5))])
        let w: [Float] = (0..<12).map { Float($0) * 1.5 }
        let b: [Float] = [-1, .infinity, 0.25]
        try feedBytewise(
            channel, [.weights(step: 5, chunkCount: 3), .evalRequest(step: 5), .heartbeat(sequence: 1)],
            chunks: [
                (ChunkHeader(kind: .weights, step: 5, tensor: 0, offset: 0, count: 7), Array(w[0..<7])),
                (ChunkHeader(kind: .weights, step: 5, tensor: 0, offset: 7, count: 5), Array(w[7...])),
            ])
        try feedBytewise(channel, [], chunks: [(ChunkHeader(kind: .weights, step: 5, tensor: 1, offset: 0, count: 3), b)])
        #expect(try pulled.completedValue() == PulledStep(step: 5))
        #expect(Array(arena.buffers[0]) == w)
        #expect(Array(arena.buffers[1]) == b)
        #expect(events.events == [.evalRequest(step: 5)])
    }

    @Test func aWeightsChunkOutsideTheLayoutIsAnsweredWithErrorAndCloses() throws {
        let (channel, handler, events) = try handshaken()
        let arena = FloatArena(layout: Self.layout.layout)
        let pulled = handler.startPull(step: 5, into: WeightBuffers(tensors: arena.buffers))
        _ = try outbound(channel)
        try feedBytewise(
            channel, [.weights(step: 5, chunkCount: 1)],
            chunks: [(ChunkHeader(kind: .weights, step: 5, tensor: 1, offset: 2, count: 2), [1, 2])])
        #expect(throws: ConnectionFailure.self) { try pulled.completedValue() }
        guard case .message(.error(let code, _, _)) = try #require(try outbound(channel).first) else {
            Issue.record("no ERROR sent")
            return
        }
        #expect(code == .chunkOutOfRange)
        #expect(!channel.isActive)
        #expect(events.closed.count == 1)
    }

    @Test func thePushWaitsForWritabilityOneChunkAtATime() throws {
        let (channel, handler, _) = try handshaken()
        let arena = FloatArena(layout: Self.layout.layout)
        for (t, buffer) in arena.buffers.enumerated() {
            for i in buffer.indices { buffer[i] = Float(t * 100 + i) }
        }
        let ranges = Self.layout.grid(chunkElements: 1024)
        channel.isWritable = false
        let pushed = handler.startPush(
            step: 5, sampleCount: 4, loss: 0.5, gradients: GradientBuffers(tensors: arena.buffers.map { UnsafeBufferPointer($0) }),
            ranges: ranges)
        #expect(try outbound(channel) == [.message(.pushBegin(step: 5, sampleCount: 4))])
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        let frames = try outbound(channel)
        #expect(frames.count == 4)
        guard frames.count == 4, case .chunk(let h0, var d0) = frames[0], case .chunk(let h1, _) = frames[1],
            case .message(.heartbeat(let sequence)) = frames[3]
        else { return }
        #expect(h0 == ChunkHeader(kind: .push, step: 5, tensor: 0, offset: 0, count: 12))
        #expect(h1 == ChunkHeader(kind: .push, step: 5, tensor: 1, offset: 0, count: 3))
        #expect(d0.readFloats(12) == Array(arena.buffers[0]))
        #expect(frames[2] == .message(.pushEnd(step: 5, loss: 0.5)))
        // Not done until the server has read it all: the echo of the HEARTBEAT says so.
        #expect(throws: CancellationError.self) { try pushed.completedValue() }
        try feedBytewise(channel, [.heartbeat(sequence: sequence)])
        #expect(try pushed.completedValue() == .accepted)
    }

    @Test func aPushForAnotherStepIsNotSent() throws {
        let (channel, handler, _) = try handshaken()
        let arena = FloatArena(layout: Self.layout.layout)
        let result = handler.startPush(
            step: 4, sampleCount: 4, loss: 0.5, gradients: GradientBuffers(tensors: arena.buffers.map { UnsafeBufferPointer($0) }),
            ranges: Self.layout.grid(chunkElements: 1024))
        #expect(try result.completedValue() == .stepClosed(current: 5))
        #expect(try outbound(channel).isEmpty)
    }

    @Test(arguments: [(10, [10]), (2048, [1024, 1024]), (2500, [1024, 1024, 452]), (0, [0])])
    func theGridMatchesTheServers(elements: Int, counts: [Int]) {
        let layout = WireLayout([WireTensor(spec: TensorSpec(name: "t", shape: [elements]), adapt: false)])
        #expect(layout.grid(chunkElements: 1024).map { Int($0.count) } == counts)
    }
}

extension EventLoopFuture {
    /// The value of a future an embedded loop has already completed; never blocks.
    fileprivate func completedValue() throws -> Value {
        var result: Result<Value, any Error>?
        whenComplete { result = $0 }
        guard let result else { throw CancellationError() }
        return try result.get()
    }
}

extension ByteBuffer {
    fileprivate mutating func readFloats(_ count: Int) -> [Float] {
        (0..<count).map { _ in Float(bitPattern: readInteger(endianness: .little)!) }
    }
}
