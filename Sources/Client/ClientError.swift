import Foundation
import Wire

/// Why a ``ClientSession`` operation failed. A lost connection is not an error by itself: the
/// session reconnects and retries, and reports ``connectFailed(host:port:attempts:seconds:lastError:)``
/// only when it could not get one back in time.
public enum ClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No connection (and handshake) succeeded within the connect or reconnect timeout.
    case connectFailed(host: String, port: Int, attempts: Int, seconds: Double, lastError: String)
    /// The server refused with an ERROR frame that ends the session (bad token, other layout, a
    /// push it could not accept, ...).
    case refused(code: ErrorCode, message: String)
    /// The server sent bytes this side cannot accept; the session answered ERROR and closed.
    case `protocol`(WireError)
    /// The server said BYE: the job is over (done or diverged) or the server is stopping.
    case byeReceived(reason: ByeReason, detail: String)
    /// The caller's buffers do not match the layout: `tensor` nil means the tensor count.
    case buffersMismatch(tensor: Int?, expected: Int, found: Int)
    /// A pull (or a push) was started while another one was still running.
    case overlapping(operation: String)
    /// An operation other than ``ClientSession/connect()`` ran before the session connected.
    case notConnected
    /// The session was closed by its owner.
    case closed

    public var description: String {
        switch self {
        case .connectFailed(let host, let port, let attempts, let seconds, let last):
            "could not reach the server at \(host):\(port): gave up after \(attempts) attempts in \(String(format: "%.1f", seconds)) s (last: \(last))"
        case .refused(let code, let message):
            "the server refused: \(code.name): \(message)"
        case .protocol(let error):
            "protocol error from the server: \(error)"
        case .byeReceived(let reason, let detail):
            detail.isEmpty ? "the server said bye (\(reason))" : "the server said bye (\(reason)): \(detail)"
        case .buffersMismatch(let tensor, let expected, let found):
            if let tensor {
                "buffer for tensor \(tensor) holds \(found) floats, the layout needs \(expected)"
            } else {
                "\(found) buffers given, the layout has \(expected) tensors"
            }
        case .overlapping(let operation):
            "a \(operation) is already running on this session"
        case .notConnected:
            "the session is not connected: call connect() first"
        case .closed:
            "the session is closed"
        }
    }
}
