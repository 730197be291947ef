import Foundation

/// How the server runs a job: addresses, files and modes (the job itself is a `JobConfig`).
public struct ServerOptions: Sendable {
    /// Address and port workers connect to (port 0: any free port).
    public var bind = "127.0.0.1"
    public var port = 7070
    /// Address and port of /metrics, /status, /healthz (port 0: any free port).
    public var httpBind = "127.0.0.1"
    public var httpPort = 9470
    /// Where checkpoints go; `runs/<job name>` when nil.
    public var checkpointDir: String?
    /// The run log (JSON lines); `run.jsonl` in the checkpoint directory when nil.
    public var runLog: String?
    /// Continue from the latest checkpoint in the checkpoint directory.
    public var resume = false
    /// Sum contributions in rank order, so equal inputs give bit-identical weights.
    public var deterministic = false
    /// The token workers must present in HELLO; nil: none required.
    public var authToken: String?
    /// Elements per chunk of the grid pushes and weights travel in (4 MiB of float32).
    public var chunkElements = 1 << 20
    /// Threads the optimizer may use (models under 4 Mi parameters get one: see StepCoordinator).
    public var optimizerThreads = 2
    /// Serve pulls of workers on this host from a file in /dev/shm (PULL_SHARED) instead of
    /// sending the weights over loopback TCP; workers elsewhere, or that cannot map it, use TCP.
    public var sharedWeights = true
    /// Where the shared weight file goes: shared memory (tmpfs) by default.
    public var sharedWeightsDirectory = "/dev/shm"
    /// Seconds to wait for the final evaluation before ending without it.
    public var finalEvalTimeout: Double = 120

    public init() {}

    /// The directory checkpoints and, by default, the run log go to.
    public func checkpointDirectory(jobName: String) -> String {
        checkpointDir ?? "runs/\(jobName)"
    }

    /// The run log's path.
    public func runLogPath(jobName: String) -> String {
        runLog ?? (checkpointDirectory(jobName: jobName) as NSString).appendingPathComponent("run.jsonl")
    }
}
