import ArgumentParser
import Core
import Foundation

/// `lars-bench worker`: the worker's compute against single-thread SGEMM of the same shapes in
/// the same run (DESIGN.md §6), then the demo job through the real lars-server and lars-worker
/// binaries (built beside this one) with 1, 2 and 4 workers.
struct WorkerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "MLP forward+backward vs. single-thread SGEMM of the same shapes; demo steps/s.")

    @Option(help: "Timed rounds per figure (the median is printed).")
    var rounds = 15

    @Option(help: "Micro-batch of the MLP figures.")
    var batch = 2048

    @Option(help: "Micro-batch of the CNN figure.")
    var cnnBatch = 256

    @Option(help: "The demo job file; its `steps` variant is timed.")
    var demoConfig = "configs/fashion-mnist-mlp-lars.json"

    @Option(help: "Worker counts of the demo figures.")
    var demoWorkers = [1, 2, 4]

    func run() throws {
        ChildProcesses.shared.stopOnSignals()
        BLAS.setThreads(1)
        try computeFigures()
        try cnnFigures()
        try demoFigures()
    }

    /// `demo_{N}w_steps_per_s`, `demo_{N}w_overhead_share`: the demo config as a job of
    /// `DemoRun.warmupSteps + DemoRun.timedSteps` steps through lars-server and N lars-worker
    /// processes on free ports; each worker writes its step timings (`--stats-file`). Over the
    /// timed steps (evaluation is not a step, so it is excluded): steps/s = timed steps / wall
    /// time, and share = 1 - (sum of forward/backward time) / (sum of step wall time), both the
    /// mean over workers. Beside them, what the share is made of: `compute_spread` (standard
    /// deviation of one forward/backward over its mean) and `peer_wait_share` (per step, the
    /// slowest rank's forward/backward minus this rank's, over the wall time: the synchronous
    /// wait for a slower peer, which no protocol work can remove).
    func demoFigures() throws {
        var job = try JobConfig.parse(json: try Data(contentsOf: URL(fileURLWithPath: demoConfig)))
        job.dataset = nil
        job.epochs = nil
        job.steps = DemoRun.warmupSteps + DemoRun.timedSteps
        job.checkpointEvery = 0
        // A steps job is one "epoch": warm up over all of it (the demo warms up over 35 of
        // its 420 steps, so its first 33 steps see about the same rates).
        job.schedule.warmupEpochs = min(job.schedule.warmupEpochs, 1)
        print("demo_global_batch=\(job.globalBatch)")
        print("demo_timed_steps=\(DemoRun.timedSteps)")
        for n in demoWorkers {
            job.workers = n
            job.name = "bench-demo-\(n)w"
            let result = try DemoRun(job: job).run()
            report("demo_\(n)w_steps_per_s", result.stepsPerSecond)
            report("demo_\(n)w_overhead_share", result.overheadShare, digits: 4)
            report("demo_\(n)w_compute_s_per_step", result.computePerStep, digits: 4)
            report("demo_\(n)w_compute_spread", result.computeSpread, digits: 4)
            report("demo_\(n)w_peer_wait_share", result.peerWaitShare, digits: 4)
        }
    }

    /// `sgemm_1t_gflops`, `worker_mlp_*`: one BLAS thread. Flops are counted exactly per GEMM
    /// (2 m n k): forward and weight gradient of all three layers, input gradient of fc2 and fc3
    /// (the network skips fc1's, the images need none), the same 8 GEMMs the bound times.
    func computeFigures() throws {
        let network = try Network(modelNamed: "mlp", maxBatch: batch)
        let spec = network.spec
        let weights = FloatArena(layout: spec.layout), gradients = FloatArena(layout: spec.layout)
        try spec.initialize(seed: 1, into: weights.buffers)
        let w = weights.buffers.map { UnsafeBufferPointer($0) }
        let data = ImageDataset.synthetic(count: batch, seed: 1)

        // The bound: the MLP's GEMMs alone, with their shapes and transposes, on scratch buffers.
        let widths = [784, 512, 512, 10]
        var gemms: [(transA: Bool, transB: Bool, m: Int, n: Int, k: Int)] = []
        for l in 0..<3 {
            let (i, o) = (widths[l], widths[l + 1])
            gemms.append((false, true, batch, o, i))   // y = x W^T
            gemms.append((true, false, o, i, batch))   // dW = dy^T x
            if l > 0 { gemms.append((false, false, batch, i, o)) }   // dx = dy W
        }
        let flops = gemms.reduce(0.0) { $0 + 2 * Double($1.m) * Double($1.n) * Double($1.k) }
        let largest = gemms.map { max($0.m * $0.k, $0.k * $0.n, $0.m * $0.n) }.max()!
        let a = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        let b = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        var rng = SplitMix64(seed: 2)
        for i in 0..<largest {
            a[i] = rng.nextFloat(in: -1...1)
            b[i] = rng.nextFloat(in: -1...1)
        }
        func sgemmPass() {
            for g in gemms {
                BLAS.sgemm(transA: g.transA, transB: g.transB, m: g.m, n: g.n, k: g.k, a: a, b: b, c: c)
            }
        }
        // Rounds alternate between the two so that load from other processes hits both alike.
        var sgemmTimes: [Double] = [], workerTimes: [Double] = []
        try data.images.withUnsafeBufferPointer { x in
            try data.labels.withUnsafeBufferPointer { y in
                func workerPass() throws {
                    try network.lossAndGradient(weights: w, images: x, labels: y, count: batch, gradients: gradients.buffers)
                }
                sgemmPass()
                try workerPass()
                for _ in 0..<rounds {
                    sgemmTimes.append(BenchClock.seconds(sgemmPass))
                    workerTimes.append(try BenchClock.seconds(workerPass))
                }
            }
        }
        let sgemmTime = sgemmTimes.sorted()[rounds / 2], workerTime = workerTimes.sorted()[rounds / 2]

        let sgemmRate = flops / sgemmTime / 1e9, workerRate = flops / workerTime / 1e9
        print("blas_threads=\(BLAS.threads)")
        print("worker_mlp_batch=\(batch)")
        report("worker_mlp_gemm_gflop_per_step", flops / 1e9)
        report("sgemm_1t_gflops", sgemmRate, digits: 1)
        report("worker_mlp_ms", workerTime * 1e3, digits: 2)
        report("worker_mlp_samples_per_s", Double(batch) / workerTime, digits: 0)
        report("worker_mlp_gflops", workerRate, digits: 1)
        report("worker_mlp_ratio_to_sgemm", workerRate / sgemmRate)
    }

    /// `worker_cnn_samples_per_s`: the CNN's forward+backward (one GEMM per sample and layer
    /// over im2col), at micro-batch `cnnBatch` on one thread.
    func cnnFigures() throws {
        let network = try Network(modelNamed: "cnn", maxBatch: cnnBatch)
        let weights = FloatArena(layout: network.spec.layout), gradients = FloatArena(layout: network.spec.layout)
        try network.spec.initialize(seed: 1, into: weights.buffers)
        let w = weights.buffers.map { UnsafeBufferPointer($0) }
        let data = ImageDataset.synthetic(count: cnnBatch, seed: 1)
        let time = try data.images.withUnsafeBufferPointer { x in
            try data.labels.withUnsafeBufferPointer { y in
                try BenchClock.median(rounds: 3, warmup: 1) {
                    try network.lossAndGradient(weights: w, images: x, labels: y, count: cnnBatch, gradients: gradients.buffers)
                }
            }
        }
        print("worker_cnn_batch=\(cnnBatch)")
        report("worker_cnn_samples_per_s", Double(cnnBatch) / time, digits: 0)
    }
}

/// One timed demo job: a temporary directory with the job file, the server's log and one stats
/// file per worker; the server and workers run as child processes of this one.
struct DemoRun {
    static let warmupSteps = 3
    static let timedSteps = 30

    let job: JobConfig

    struct Result {
        var stepsPerSecond: Double
        var overheadShare: Double
        var computePerStep: Double
        /// Standard deviation of one step's forward/backward time over its mean (all ranks).
        var computeSpread: Double
        /// The part of the overhead share that is waiting for a slower peer's forward/backward.
        var peerWaitShare: Double
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    func run() throws -> Result {
        let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("lars-bench-\(job.name)-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        ChildProcesses.shared.removeOnSignal(dir)
        defer { try? FileManager.default.removeItem(at: dir) }
        let jobFile = dir.appendingPathComponent("job.json")
        try Data(job.jsonString().utf8).write(to: jobFile)

        let serverLog = dir.appendingPathComponent("server.log")
        let server = try Self.launch(binaries.appendingPathComponent("lars-server"), [
            "--config", jobFile.path, "--port", "0", "--http-port", "0", "--checkpoint-dir", dir.path,
        ], log: serverLog)
        defer { if server.isRunning { server.terminate() } }
        let port = try Self.waitForPort(in: serverLog, server: server)

        var workers: [Process] = []
        defer { for w in workers where w.isRunning { w.terminate() } }
        for rank in 0..<job.workers {
            workers.append(try Self.launch(binaries.appendingPathComponent("lars-worker"), [
                "--server", "127.0.0.1:\(port)", "--rank", "\(rank)", "--name", "bench-\(rank)", "--progress-every", "0",
                "--stats-file", dir.appendingPathComponent("stats-\(rank).jsonl").path,
            ], log: dir.appendingPathComponent("worker-\(rank).log")))
        }
        for w in workers { w.waitUntilExit() }
        server.waitUntilExit()
        ChildProcesses.shared.parkIfInterrupted()
        let statuses = workers.map(\.terminationStatus) + [server.terminationStatus]
        guard statuses.allSatisfy({ $0 == 0 }) else {
            let log = (try? String(contentsOf: serverLog, encoding: .utf8)) ?? ""
            throw Failure(description: "demo job \(job.name): exit statuses \(statuses); server log tail: \(log.suffix(600))")
        }

        // Per rank, the timed steps' wall and forward/backward times, by step.
        var walls: [[Int: Double]] = [], computes: [[Int: Double]] = []
        for rank in 0..<job.workers {
            let text = try String(contentsOf: dir.appendingPathComponent("stats-\(rank).jsonl"), encoding: .utf8)
            var wall: [Int: Double] = [:], compute: [Int: Double] = [:]
            for line in text.split(separator: "\n") {
                guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let step = o["step"] as? Int, step >= Self.warmupSteps, step < Self.warmupSteps + Self.timedSteps,
                      let w = o["wall_s"] as? Double, let c = o["compute_s"] as? Double else { continue }
                wall[step] = w
                compute[step] = c
            }
            guard wall.count == Self.timedSteps else {
                throw Failure(description: "worker \(rank) of \(job.name) recorded \(wall.count) of \(Self.timedSteps) timed steps")
            }
            walls.append(wall)
            computes.append(compute)
        }
        let mean = { (xs: [Double]) in xs.reduce(0, +) / Double(xs.count) }
        let sum = { (xs: Dictionary<Int, Double>.Values) in xs.reduce(0, +) }
        let steps = Array(walls[0].keys)
        // Waiting for a slower peer: per step, the slowest forward/backward minus this rank's.
        let slowest = Dictionary(uniqueKeysWithValues: steps.map { t in (t, computes.map { $0[t]! }.max()!) })
        let waits = (0..<job.workers).map { r in steps.reduce(0.0) { $0 + slowest[$1]! - computes[r][$1]! } / sum(walls[r].values) }
        let all = computes.flatMap(\.values)
        let m = mean(all)
        let sd = (all.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(all.count)).squareRoot()
        return Result(
            stepsPerSecond: Double(Self.timedSteps) / mean(walls.map { sum($0.values) }),
            overheadShare: mean((0..<job.workers).map { 1 - sum(computes[$0].values) / sum(walls[$0].values) }),
            computePerStep: m, computeSpread: sd / m, peerWaitShare: mean(waits))
    }

    static func launch(_ executable: URL, _ arguments: [String], log: URL) throws -> Process {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw Failure(description: "\(executable.path) is not built: swift build -c release builds it")
        }
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        let handle = try FileHandle(forWritingTo: log)
        p.standardOutput = handle
        p.standardError = handle
        try ChildProcesses.shared.start(p)
        return p
    }

    /// The worker port the server logged in its `listening` line.
    static func waitForPort(in log: URL, server: Process, timeout: Double = 30) throws -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("listening") && $0.contains(" workers=") }),
               let field = line.split(separator: " ").first(where: { $0.hasPrefix("workers=") }),
               let port = field.split(separator: ":").last.flatMap({ Int($0) }) {
                return port
            }
            guard server.isRunning else { throw Failure(description: "lars-server exited: \(text.suffix(600))") }
            usleep(20_000)
        }
        throw Failure(description: "lars-server did not report its port within \(Int(timeout)) s")
    }
}

/// The lars-server and lars-worker processes a suite started. Interrupted (SIGINT, SIGTERM),
/// lars-bench stops them before it exits, so that no server keeps waiting for its workers and
/// no worker keeps computing into the next measurement.
final class ChildProcesses: @unchecked Sendable {
    static let shared = ChildProcesses()
    private let lock = NSLock()
    private var processes: [Process] = []
    private var directories: [URL] = []
    private var sources: [any DispatchSourceSignal] = []
    private var interrupted = false

    /// After a signal the handler ends the process: the caller, whose children it stopped,
    /// waits here rather than report their exit as a failure.
    func parkIfInterrupted() {
        while lock.withLock({ interrupted }) { sleep(1) }
    }

    func start(_ process: Process) throws {
        try lock.withLock {
            processes.removeAll { !$0.isRunning }
            try process.run()
            processes.append(process)
        }
    }

    /// A scratch directory to remove on a signal too (normal exits remove their own).
    func removeOnSignal(_ directory: URL) {
        lock.withLock { directories.append(directory) }
    }

    /// Installs the handlers (once): stop every child still running, remove the scratch
    /// directories, then exit 128 + signal.
    func stopOnSignals() {
        lock.withLock {
            guard sources.isEmpty else { return }
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { [self] in
                    let running = lock.withLock {
                        interrupted = true
                        return processes.filter(\.isRunning)
                    }
                    for p in running { p.terminate() }
                    for p in running { p.waitUntilExit() }
                    for d in lock.withLock({ directories }) { try? FileManager.default.removeItem(at: d) }
                    FileHandle.standardError.write(Data("lars-bench: interrupted; stopped \(running.count) child processes\n".utf8))
                    exit(128 + sig)
                }
                source.resume()
                sources.append(source)
            }
        }
    }
}
