import NIOCore
import Wire

/// The coordinator's view of one connected worker. Implemented by the connection handler; every
/// call happens on the server's event loop.
protocol WorkerLink: AnyObject {
    /// The rank the handshake gave, nil before it.
    var rank: Int? { get }
    /// The worker's name from HELLO.
    var name: String { get }
    /// The peer address, for logs and /status.
    var address: String { get }
    /// Sends one control message.
    func send(_ message: Message)
    /// Sends WEIGHTS and every chunk of `snapshot`, windowed by the channel's writability.
    func sendWeights(_ snapshot: WeightSnapshot)
    /// The step closed while this worker's push for it was still open (a backup worker's,
    /// K < N): answers STEP_CLOSED(step, current) and drops the rest of that push. False if the
    /// connection has no such push open.
    func pushOutlived(step: Int, current: Int) -> Bool
    /// Sends ERROR and closes the connection.
    func fail(_ code: ErrorCode, _ message: String, requestID: UInt64)
    /// Sends BYE and closes the connection once it is flushed.
    func bye(_ reason: ByeReason, detail: String)
}

/// The published weights of one step: one ByteBuffer per grid chunk (a slice of the tensor's
/// buffer in `WeightBuffers`), shared by every pull of that step.
final class WeightSnapshot: @unchecked Sendable {
    let step: Int
    let chunks: [ByteBuffer]
    let ranges: [ChunkRange]

    init(step: Int, chunks: [ByteBuffer], ranges: [ChunkRange]) {
        self.step = step
        self.chunks = chunks
        self.ranges = ranges
    }

    var totalBytes: Int { chunks.reduce(0) { $0 + $1.readableBytes } }
}
