import Wire

/// How a worker ended; the process exit status follows from it.
public enum WorkerExit: Sendable, Equatable, CustomStringConvertible {
    /// The server said BYE (job done, diverged, or server stopping): status 0.
    case bye(reason: ByeReason, detail: String)
    /// The data set is missing or not the job's: status 3 (the server got ERROR(dataset)).
    case dataset(String)
    /// The server could not be reached within the reconnect timeout: status 1.
    case unreachable(String)
    /// Anything else (refused by the server, a job this worker cannot train): status 1.
    case failed(String)

    public var exitStatus: Int32 {
        switch self {
        case .bye: 0
        case .dataset: 3
        case .unreachable, .failed: 1
        }
    }

    public var description: String {
        switch self {
        case .bye(let reason, let detail): detail.isEmpty ? "the server said bye (\(reason))" : "the server said bye (\(reason)): \(detail)"
        case .dataset(let message): message
        case .unreachable(let message): message
        case .failed(let message): message
        }
    }
}
