import Foundation

/// What the session's events said, read by the training loop between steps: whether the session
/// has ended and the latest reconnect. Filled by a task that reads ``ClientSession/events``.
final class SessionWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var ended = false
    private var reconnects = 0
    private var reconnectStep = 0

    /// Reads `session.events` until the stream ends (the session is over).
    static func watching(_ session: ClientSession) -> SessionWatch {
        let watch = SessionWatch()
        Task {
            for await event in session.events {
                if case .reconnected(_, let step) = event {
                    watch.lock.withLock {
                        watch.reconnects += 1
                        watch.reconnectStep = step
                    }
                }
            }
            watch.lock.withLock { watch.ended = true }
        }
        return watch
    }

    var hasEnded: Bool { lock.withLock { ended } }

    /// How many reconnects so far, and the server's step at the latest one.
    var latestReconnect: (count: Int, step: Int) { lock.withLock { (reconnects, reconnectStep) } }
}
