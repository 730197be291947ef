import Logging
import NIOCore
import NIOPosix
import Synchronization
import Wire

/// One TCP connection to the server after its handshake: the channel, its ``SessionHandler``
/// and the WELCOME it answered with.
final class Connection: Sendable {
    /// Counts the connections of a session, so a late close report is matched to its own.
    let id: Int
    let channel: any Channel
    let handler: SessionHandler
    let welcome: Welcome
    private let sharedFile = Mutex<SharedWeightFile?>(nil)

    private init(id: Int, channel: any Channel, handler: SessionHandler, welcome: Welcome) {
        self.id = id
        self.channel = channel
        self.handler = handler
        self.welcome = welcome
    }

    /// Connects, sends HELLO and waits for WELCOME. Throws ``ConnectionFailure``.
    static func open(
        id: Int, host: String, port: Int, hello: Hello, resumed: Bool, options: ClientOptions, eventLoop: any EventLoop, logger: Logger,
        onEvent: @escaping @Sendable (SessionEvent) -> Void, onClosed: @escaping @Sendable (ConnectionFailure) -> Void
    ) async throws -> Connection {
        let handler = SessionHandler(
            hello: hello, resumed: resumed, limits: options.limits, heartbeatInterval: options.heartbeatInterval, eventLoop: eventLoop,
            logger: logger, onEvent: onEvent, onClosed: onClosed)
        // Until WELCOME gives the grid, the water marks assume the default 4 MiB chunk.
        let chunk = ChunkHeader.frameOverhead + (4 << 20)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: chunk, high: 2 * chunk))
            .channelOption(
                ChannelOptions.recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 65_536, maximum: 4 << 20))
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            eventLoop.execute { handler.connectFailed(error) }
            throw ConnectionFailure.lost("\(error)")
        }
        let welcome = try await handler.welcome.futureResult.get()
        return Connection(id: id, channel: channel, handler: handler, welcome: welcome)
    }

    /// Sets the write buffer water marks to one grid chunk (low) and two (high): a few chunks
    /// in flight, never the whole model.
    func configure(chunkBytes: Int) async {
        let frame = ChunkHeader.frameOverhead + chunkBytes
        try? await channel.setOption(ChannelOptions.writeBufferWaterMark, value: .init(low: frame, high: 2 * frame)).get()
    }

    /// ``SessionHandler/sharedPulls`` of this connection.
    func sharedPulls() async -> (read: Int, fellBack: Int) {
        (try? await channel.eventLoop.submit { self.handler.sharedPulls }.get()) ?? (0, 0)
    }

    /// Pulls through `file` from now on.
    func useSharedWeights(_ file: SharedWeightFile) async {
        try? await channel.eventLoop.submit { self.handler.shared = file }.get()
        sharedFile.withLock { $0 = file }
    }

    /// Offers the server this worker's gradient file; true when the server mapped it (pushes
    /// of the file's buffers then go as PUSH_SHARED), false when it refused or the connection
    /// failed.
    func offerGradients(_ file: SharedWeightFile, counts: [Int]) async -> Bool {
        (try? await channel.eventLoop.flatSubmit { self.handler.offerGradients(file, counts: counts) }.get()) ?? false
    }

    /// ``SessionHandler/sharedPushChunks`` of this connection.
    func sharedPushChunks() async -> Int {
        (try? await channel.eventLoop.submit { self.handler.sharedPushChunks }.get()) ?? 0
    }

    /// The file ``useSharedWeights(_:)`` gave, if any.
    var sharedWeights: SharedWeightFile? { sharedFile.withLock { $0 } }

    func pull(step: UInt64, into buffers: WeightBuffers) async throws -> PulledStep {
        try await startPull(step: step, into: buffers).get()
    }

    /// Starts a pull from any thread: its PULL goes out ahead of whatever is submitted to this
    /// connection after the call (a push's PUSH_END, say).
    func startPull(step: UInt64, into buffers: WeightBuffers) -> EventLoopFuture<PulledStep> {
        channel.eventLoop.flatSubmit { self.handler.startPull(step: step, into: buffers) }
    }

    func push(step: UInt64, sampleCount: UInt32, loss: Double, gradients: GradientBuffers, ranges: [ChunkRange]) async throws -> PushResult {
        try await channel.eventLoop.flatSubmit {
            self.handler.startPush(step: step, sampleCount: sampleCount, loss: loss, gradients: gradients, ranges: ranges)
        }.get()
    }

    /// Starts a streamed push (see ``SessionHandler/startPush``); returns at once, from any
    /// thread, with the push's future, which fails like a push's (a push that cannot start
    /// included). PUSH_BEGIN goes out from the event loop ahead of anything submitted later.
    func beginPush(step: UInt64, sampleCount: UInt32, gradients: GradientBuffers, ranges: [ChunkRange]) -> EventLoopFuture<PushResult> {
        channel.eventLoop.flatSubmit {
            self.handler.startPush(step: step, sampleCount: sampleCount, loss: nil, gradients: gradients, ranges: ranges)
        }
    }

    /// Releases tensors of the streamed push of `step`; returns at once, from any thread.
    func releasePush(step: UInt64, tensors: Range<Int>) {
        channel.eventLoop.execute { self.handler.releasePush(step: step, tensors: tensors) }
    }

    /// Completes the streamed push of `step`; returns at once, from any thread.
    func completePush(step: UInt64, loss: Double) {
        channel.eventLoop.execute { self.handler.completePush(step: step, loss: loss) }
    }

    func send(_ message: Message) async throws {
        try await channel.eventLoop.flatSubmit { self.handler.sendMessage(message) }.get()
    }

    /// Sends `message` (if any) and closes; returns once the channel is closed.
    func close(sending message: Message?) async {
        channel.eventLoop.execute { self.handler.close(sending: message) }
        try? await channel.closeFuture.get()
    }
}
