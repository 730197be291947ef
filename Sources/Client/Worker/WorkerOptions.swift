/// How `lars-worker` runs: where the server is, how it introduces itself, how patiently it
/// reconnects, and what it reports. The job itself comes from the server.
public struct WorkerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 7070
    /// The auth token; empty when the server has none.
    public var token = ""
    /// The name the server shows in its logs and /status.
    public var name: String
    /// The rank to ask for; nil for any free one.
    public var wantedRank: Int?
    /// OpenBLAS threads (one per worker when workers and server share the cores).
    public var blasThreads = 1
    /// Samples per forward/backward pass (nil: the model's `Network.passSize`).
    public var microBatch: Int?
    /// How long to keep trying to reach the server (first connection and after a loss).
    public var reconnectTimeout: Duration = .seconds(60)
    /// Where the data set is, overriding the job's directory.
    public var dataDirectory: String?
    /// A progress line on stderr every this many steps (0: none).
    public var progressEvery = 10
    /// A file that gets one JSON line of timings per step (for `lars-bench worker`).
    public var statsFile: String?
    /// Pull through the server's shared weight file when on its host (``ClientOptions/sharedWeights``).
    public var sharedWeights = true

    public init(name: String) {
        self.name = name
    }
}
