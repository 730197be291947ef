import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The observability endpoint: `GET /metrics` (Prometheus text), `GET /status` (JSON),
/// `GET /healthz` ("ok"); 404 for any other path, 405 for any other method.
///
/// It runs on an event loop thread of its own, so it answers while the step coordinator is
/// busy; it only reads ``ServerTelemetry``. Connections are kept alive as HTTP/1.1 asks
/// (NIO's pipelining handler serializes pipelined requests); a client that misbehaves gets a
/// 400 and loses only its own connection.
public final class HTTPServer: Sendable {
    /// The address asked for; port 0 picks a free one (see ``start()``).
    public let host: String
    public let port: Int
    private let telemetry: ServerTelemetry
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)

    public init(host: String, port: Int, telemetry: ServerTelemetry, logger: Logger) {
        self.host = host
        self.port = port
        self.telemetry = telemetry
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    /// Binds and starts serving; returns the bound port (the ephemeral one when `port` was 0).
    /// Throws when the address cannot be bound (in use, not local, bad host).
    public func start() async throws -> Int {
        let telemetry = self.telemetry
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPRequestHandler(telemetry: telemetry))
                }
            }
        let bound = try await bootstrap.bind(host: host, port: port).get()
        channel.withLockedValue { $0 = bound }
        let boundPort = bound.localAddress?.port ?? port
        logger.info("HTTP listening", metadata: ["address": "\(host):\(boundPort)"])
        return boundPort
    }

    /// Stops accepting, closes every connection and ends the event loop thread.
    /// Call once; the server cannot be started again.
    public func shutdown() async throws {
        let bound = channel.withLockedValue { channel in
            defer { channel = nil }
            return channel
        }
        try? await bound?.close()
        try await group.shutdownGracefully()
    }
}
