import Core
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import Wire

/// Why the server could not start: each case names what to fix.
public enum ServerStartError: Error, CustomStringConvertible {
    case config(ConfigError)
    case model(String)
    case dataset(String)
    case checkpoint(String)
    case bind(what: String, address: String, port: Int, underlying: String)

    public var description: String {
        switch self {
        case .config(let e): "\(e)"
        case .model(let m): m
        case .dataset(let m): m
        case .checkpoint(let m): m
        case .bind(let what, let address, let port, let underlying):
            "cannot listen for \(what) on \(address):\(port): \(underlying)"
        }
    }
}

/// The parameter server: owns the job's parameters and optimizer state, accepts workers over
/// TCP, runs the synchronous steps and serves /metrics, /status and /healthz.
///
/// `start()` binds both ports and returns; `run()` waits for the job to end. Every worker
/// connection and the step coordinator share one event loop, so the step state needs no locks;
/// the HTTP server has its own thread and reads the telemetry.
public final class ParameterServer: @unchecked Sendable {
    public let job: JobConfig
    public let options: ServerOptions
    let logger: Logger
    /// The built-in model; nil for `from-worker`, whose layout arrives with a worker's INIT.
    let model: ModelSpec?
    let schedule: LearningRateSchedule
    let fingerprint: DatasetFingerprint?
    public let telemetry: ServerTelemetry

    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let loop: any EventLoop
    private(set) var host: JobHost!
    /// The step coordinator, once the model is known.
    var coordinator: StepCoordinator? { host?.coordinator }
    private var channel: (any Channel)?
    private var http: HTTPServer?
    private var signalSources: [any DispatchSourceSignal] = []

    /// The bound worker port (useful with port 0).
    public private(set) var port = 0
    /// The bound HTTP port.
    public private(set) var httpPort = 0

    /// Resolves the model, the data set and the schedule; binds nothing yet.
    public init(job: JobConfig, options: ServerOptions, logger: Logger) throws(ServerStartError) {
        self.job = job
        self.options = options
        self.logger = logger
        self.loop = group.next()
        do { try job.validate() } catch { throw .config(error) }
        if job.model == Self.fromWorker {
            model = nil
            guard job.steps != nil else {
                throw .config(ConfigError(key: "model", value: "\"from-worker\"", allowed: "with \"steps\" (a worker's own model has no data set here)"))
            }
            guard !options.resume else {
                throw .config(ConfigError(key: "--resume", value: "set", allowed: "only for built-in models (a from-worker job starts from its worker's INIT)"))
            }
        } else {
            do {
                model = try ModelSpec.named(job.model)
            } catch {
                throw .model("\(error); or \"\(Self.fromWorker)\" for a model a worker brings (INIT)")
            }
        }
        let stepsPerEpoch: Int
        let totalSteps: Int
        if let dataset = job.dataset, let epochs = job.epochs {
            do {
                let files = try DatasetFiles(directory: dataset.dir)
                let fp = try DatasetFingerprint(files: files)
                fingerprint = fp
                stepsPerEpoch = fp.sampleCount / job.globalBatch
            } catch {
                throw .dataset("\(error); \(dataset.installHint(for: dataset.dir))")
            }
            guard stepsPerEpoch >= 1 else {
                throw .config(ConfigError(key: "global_batch", value: "\(job.globalBatch)",
                                          allowed: "at most the training set size (\(fingerprint!.sampleCount) samples)"))
            }
            totalSteps = epochs * stepsPerEpoch
        } else {
            fingerprint = nil
            totalSteps = job.steps ?? 1
            stepsPerEpoch = totalSteps
        }
        do {
            schedule = try LearningRateSchedule(config: job.schedule, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
        } catch {
            throw .config(error)
        }
        telemetry = ServerTelemetry(
            jobName: job.name, jobJSON: job.jsonString(), model: job.model,
            layerNames: model?.layout.tensors.map(\.name) ?? [], totalSteps: totalSteps,
            stepsPerEpoch: stepsPerEpoch, workers: job.workers, version: larsVersion,
            runLog: RunLog(path: options.runLogPath(jobName: job.name), logger: logger))
    }

    /// What WELCOME tells a worker about the job.
    private func jobDescription() -> [String: Any] {
        var d = (try? JSONSerialization.jsonObject(with: Data(job.jsonString().utf8))) as? [String: Any] ?? [:]
        d["chunk_elements"] = options.chunkElements
        d["steps_per_epoch"] = schedule.stepsPerEpoch
        d["total_steps"] = schedule.totalSteps
        d["warmup_steps"] = schedule.warmupSteps
        if let model { d["layout_hash"] = String(format: "%016llx", model.layout.hash) }
        if let fp = fingerprint {
            d["fingerprint"] = ["sample_count": fp.sampleCount, "label_crc32": Int(fp.labelCRC32)]
        }
        return d
    }

    /// Creates the coordinator (from a checkpoint with `--resume`), binds the worker and HTTP
    /// ports and starts serving.
    public func start() async throws {
        logger.info("effective config", metadata: [
            "job": "\(job.jsonString())",
            "steps_per_epoch": "\(schedule.stepsPerEpoch)", "total_steps": "\(schedule.totalSteps)",
            "warmup_steps": "\(schedule.warmupSteps)",
            "fingerprint": "\(fingerprint.map { "\($0)" } ?? "none")",
            "bind": "\(options.bind):\(options.port)", "http": "\(options.httpBind):\(options.httpPort)",
            "checkpoint_dir": "\(options.checkpointDirectory(jobName: job.name))",
            "deterministic": "\(options.deterministic)",
        ])
        let host = try await loop.submit { [self] in
            let description = self.jobDescription()
            // Builds the coordinator on the loop, from initial values (a worker's INIT) or from
            // the model's init / a checkpoint.
            func makeCoordinator(layout: Layout, initial: FloatArena?) throws -> StepCoordinator {
                let c = try StepCoordinator(
                    job: job, options: options, layout: layout, schedule: schedule,
                    jobDescription: description, eventLoop: loop, telemetry: telemetry, logger: logger)
                if let initial {
                    for (dst, src) in zip(c.weights.writable, initial.buffers) { _ = dst.update(from: src) }
                } else {
                    do {
                        try self.initializeState(c)
                    } catch {
                        c.abandon(error)
                        throw error
                    }
                }
                c.checkpointWriter = { [weak self, unowned c] reason in self?.writeCheckpoint(c, reason: reason) }
                c.start()
                return c
            }
            if let model {
                return JobHost(coordinator: try makeCoordinator(layout: model.layout, initial: nil), telemetry: telemetry, logger: logger)
            }
            telemetry.setState(.waiting, detail: "waiting for a worker's INIT (the model)")
            return JobHost(
                job: job, jobDescription: description, authToken: options.authToken, eventLoop: loop,
                telemetry: telemetry, logger: logger,
                makeCoordinator: { layout, values in try makeCoordinator(layout: layout, initial: values) })
        }.get()
        self.host = host

        let http = HTTPServer(host: options.httpBind, port: options.httpPort, telemetry: telemetry, logger: logger)
        do {
            httpPort = try await http.start()
        } catch {
            throw ServerStartError.bind(what: "HTTP", address: options.httpBind, port: options.httpPort, underlying: "\(error)")
        }
        self.http = http

        let chunkBytes = options.chunkElements * 4
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64 << 10, initial: 1 << 20, maximum: 4 << 20))
            .childChannelOption(.writeBufferWaterMark, value: .init(low: chunkBytes, high: 2 * chunkBytes))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(WorkerConnection(host: host))
                }
            }
        do {
            let channel = try await bootstrap.bind(host: options.bind, port: options.port).get()
            self.channel = channel
            port = channel.localAddress?.port ?? options.port
        } catch {
            throw ServerStartError.bind(what: "workers", address: options.bind, port: options.port, underlying: "\(error)")
        }
        logger.info("listening", metadata: [
            "workers": "\(options.bind):\(port)", "metrics": "http://\(options.httpBind):\(httpPort)/metrics",
            "status": "http://\(options.httpBind):\(httpPort)/status",
        ])
    }

    /// Initial weights: a checkpoint with `--resume`, else the model's seeded init.
    private func initializeState(_ c: StepCoordinator) throws {
        if options.resume, let path = CheckpointStore.latest(in: options.checkpointDirectory(jobName: job.name)) {
            let state = try CheckpointStore.load(path: path, layout: c.layout)
            for (i, buffer) in c.weights.writable.enumerated() {
                _ = buffer.update(from: state.weights[i])
                _ = c.momenta.buffers[i].update(from: state.momenta[i])
            }
            c.resume(at: state.step)
            logger.info("resumed from checkpoint", metadata: ["path": "\(path)", "step": "\(state.step)"])
        } else {
            if options.resume {
                logger.warning("--resume: no checkpoint found; starting fresh",
                               metadata: ["dir": "\(options.checkpointDirectory(jobName: job.name))"])
            }
            try model?.initialize(seed: job.seed, into: c.weights.writable)
        }
    }

    private func writeCheckpoint(_ c: StepCoordinator, reason: String) {
        let dir = options.checkpointDirectory(jobName: job.name)
        do {
            let path = try CheckpointStore.save(
                directory: dir, step: c.step, layout: c.layout, weights: c.weights.readable,
                momenta: c.momenta.buffers.map { UnsafeBufferPointer($0) }, metadata: [
                    "job": job.jsonString(),
                    "layout_hash": String(format: "%016llx", c.layout.hash),
                    "optimizer": (try? String(decoding: JSONEncoder().encode(job.optimizer), as: UTF8.self)) ?? "{}",
                ])
            logger.info("checkpoint written", metadata: ["path": "\(path)", "step": "\(c.step)", "reason": "\(reason)"])
        } catch {
            logger.error("checkpoint failed", metadata: ["dir": "\(dir)", "error": "\(error)"])
        }
    }

    /// Ends the job gracefully on SIGTERM and SIGINT (checkpoint, BYE(shutdown)).
    public func handleSignals() {
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.logger.notice("signal received; shutting down", metadata: ["signal": "\(sig)"])
                self.loop.execute { self.host?.shutdown() }
            }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Waits until the job ends, then closes the ports. Returns how it ended.
    public func run() async throws -> JobOutcome {
        let outcome = try await host.outcomeFuture.get()
        // Let BYE frames flush before the listening socket and loops go away.
        try? await Task.sleep(nanoseconds: 200_000_000)
        try await stop()
        return outcome
    }

    /// Closes both ports and the event loop.
    public func stop() async throws {
        // The shared weight file's name goes; mappings workers still hold stay valid.
        try? await loop.submit { self.coordinator?.sharedWeights?.remove() }.get()
        try? await channel?.close()
        channel = nil
        try? await http?.shutdown()
        http = nil
        try await group.shutdownGracefully()
    }

    /// Ends the job from outside (tests): same as a signal.
    public func shutdown() {
        loop.execute { self.host?.shutdown() }
    }
}

extension ParameterServer {
    /// The `model` of a job whose layout and initial values come from its first worker's INIT.
    public static let fromWorker = "from-worker"
}

/// The version `lars_build_info` and logs report.
public let larsVersion = "0.1.0"
