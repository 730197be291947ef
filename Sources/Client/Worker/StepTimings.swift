import Foundation

/// Where one training step's wall time went, as `--stats-file` records it (one JSON line per
/// step). Forward/backward is `compute`; everything else is the worker's overhead.
struct StepTimings {
    var step = 0
    var samples = 0
    /// When the step's pull was sent (seconds since 1970), to line steps up with the server's log.
    var start = 0.0
    /// From sending PULL until the weights and this step's samples are in: waiting for the
    /// previous step to close, receiving, and waiting for the batch (or copying it) if the
    /// gatherer fell behind.
    var pull = 0.0
    /// Waiting for the gatherer thread or copying the batch on the training thread (part of
    /// `pull`, not added to the wall time); near zero when the gatherer was ahead.
    var gather = 0.0
    /// Network.lossAndGradient.
    var compute = 0.0
    /// The CPU time the training thread spent in it: `compute` less the time the thread was off
    /// its core (other threads running there). With more than one BLAS thread (`--threads`) the
    /// other BLAS threads' time is not in it.
    var computeCPU = 0.0
    /// From the end of forward/backward until the server has read the push (PUSH_BEGIN and
    /// the later layers' chunks left during backward; what remains goes now).
    var push = 0.0

    /// The step's wall time, evaluation excluded.
    var wall: Double { pull + compute + push }

    var jsonLine: String {
        String(format: #"{"step":%d,"start":%.6f,"samples":%d,"pull_s":%.6f,"gather_s":%.6f,"compute_s":%.6f,"compute_cpu_s":%.6f,"push_s":%.6f,"wall_s":%.6f}"#,
               step, start, samples, pull, gather, compute, computeCPU, push, wall) + "\n"
    }

    /// CPU seconds the calling thread has used.
    static func threadCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
}

/// Appends timing lines to a file; a file that cannot be opened is reported once and ignored.
final class StatsFile {
    private let handle: FileHandle?

    init?(path: String?) {
        guard let path else { return nil }
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        handle = FileHandle(forWritingAtPath: path)
        if handle == nil { FileHandle.standardError.write(Data("lars-worker: cannot write --stats-file \(path)\n".utf8)) }
    }

    func append(_ timings: StepTimings) {
        handle?.write(Data(timings.jsonLine.utf8))
    }

    deinit {
        try? handle?.close()
    }
}
