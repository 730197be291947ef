import Core
import Foundation
import Logging
import NIOCore
import Wire

/// What every connection talks to: the step coordinator once the model is known, and before
/// that — for a job whose model a worker brings (`"model": "from-worker"`) — the intake of the
/// first worker's INIT: its layout, then its initial values as INIT_CHUNK frames.
///
/// Confined to the server's event loop, like the coordinator.
final class JobHost: @unchecked Sendable {
    let telemetry: ServerTelemetry
    let logger: Logger
    let eventLoop: any EventLoop
    /// The coordinator, nil until the model's layout and initial values are in.
    private(set) var coordinator: StepCoordinator?
    /// Creates (and starts) the coordinator for a layout and its initial values.
    private let makeCoordinator: ((Layout, FloatArena) throws -> StepCoordinator)?
    private let job: JobConfig
    private let jobDescription: [String: Any]
    private let authToken: String?
    private let finished: EventLoopPromise<JobOutcome>

    /// The worker bringing the model, and what it has sent so far.
    private var intake: (link: any WorkerLink, rank: Int, layout: Layout, values: FloatArena, chunksLeft: Int)?

    /// A host for a model known from the start.
    init(coordinator: StepCoordinator, telemetry: ServerTelemetry, logger: Logger) {
        self.coordinator = coordinator
        self.telemetry = telemetry
        self.logger = logger
        self.eventLoop = coordinator.eventLoop
        self.makeCoordinator = nil
        self.job = coordinator.job
        self.jobDescription = coordinator.jobDescription
        self.authToken = coordinator.options.authToken
        self.finished = eventLoop.makePromise(of: JobOutcome.self)
        finished.completeWith(coordinator.outcomeFuture)
    }

    /// A host that waits for a worker's INIT.
    init(
        job: JobConfig, jobDescription: [String: Any], authToken: String?, eventLoop: any EventLoop,
        telemetry: ServerTelemetry, logger: Logger, makeCoordinator: @escaping (Layout, FloatArena) throws -> StepCoordinator
    ) {
        self.job = job
        self.jobDescription = jobDescription
        self.authToken = authToken
        self.eventLoop = eventLoop
        self.telemetry = telemetry
        self.logger = logger
        self.makeCoordinator = makeCoordinator
        self.finished = eventLoop.makePromise(of: JobOutcome.self)
    }

    /// Completes when the job has ended.
    var outcomeFuture: EventLoopFuture<JobOutcome> { finished.futureResult }

    /// Ends the job from outside (signal, tests), with or without a coordinator.
    func shutdown() {
        if let coordinator {
            coordinator.complete(.shutdown)
        } else {
            intake?.link.bye(.shutdown, detail: "the server is shutting down")
            intake = nil
            telemetry.setState(.shutdown)
            finished.succeed(.shutdown)
        }
    }

    // MARK: Intake of a worker's model

    /// HELLO before the model is known: the first worker gets WELCOME with an empty layout and
    /// must send INIT; any other waits (`rank_unavailable`, which clients retry).
    func helloBeforeModel(_ link: any WorkerLink, _ hello: Hello) -> Result<Welcome, WireError.Refusal> {
        if let refusal = Handshake.refusal(for: hello, token: authToken, telemetry: telemetry) {
            return .failure(refusal)
        }
        guard intakeOwner == nil, intake == nil else {
            return .failure(.init(code: .rankUnavailable, message: "waiting for the first worker's INIT (the model); try again"))
        }
        let rank = Int(hello.wantedRank ?? 0)
        guard rank < job.workers else {
            return .failure(.init(code: .rankUnavailable, message: "rank \(rank) does not exist: the job has \(job.workers) workers"))
        }
        logger.info("worker brings the model", metadata: ["rank": "\(rank)", "name": "\(hello.workerName)"])
        intakeOwner = (link, rank)
        return .success(Handshake.welcome(
            job: job, description: jobDescription, rank: rank, step: 0, layout: WireLayout([]),
            extra: ["awaiting_init": true]))
    }

    /// The worker welcomed by `helloBeforeModel`, before its INIT.
    private var intakeOwner: (link: any WorkerLink, rank: Int)?

    /// INIT: the layout; `chunkCount` INIT_CHUNK frames with the initial values follow.
    func beginInit(_ link: any WorkerLink, layout: WireLayout, chunkCount: Int) -> Result<Void, WireError.Refusal> {
        guard let owner = intakeOwner, owner.link === link, intake == nil, coordinator == nil else {
            return .failure(.init(code: .unexpectedMessage, message: "INIT is accepted once, from the worker welcomed to bring the model"))
        }
        guard !layout.tensors.isEmpty, chunkCount >= 1 else {
            return .failure(.init(code: .malformedPayload, message: "INIT needs at least one tensor and one INIT_CHUNK"))
        }
        let model = layout.layout
        if let big = WeightBuffers.oversizedTensor(in: model) {
            return .failure(.init(code: .limitExceeded, message: "tensor '\(big.name)' has \(big.count) elements; the server holds a tensor in one buffer of at most \(WeightBuffers.maxTensorElements) elements"))
        }
        intake = (link, owner.rank, model, FloatArena(layout: model), chunkCount)
        return .success(())
    }

    /// Where an INIT_CHUNK's float32 data goes, or a refusal.
    func initTarget(_ header: ChunkHeader) -> Result<UnsafeMutablePointer<Float>, WireError.Refusal> {
        guard let intake else {
            return .failure(.init(code: .unexpectedMessage, message: "INIT_CHUNK without INIT"))
        }
        guard header.dtype == .float32 else {
            return .failure(.init(code: .wrongDtype, message: "INIT_CHUNK data must be float32, got \(header.dtype)"))
        }
        let t = Int(header.tensor)
        guard t < intake.layout.tensors.count,
              Int(header.offset) + Int(header.count) <= intake.layout.tensors[t].count else {
            return .failure(.init(code: .chunkOutOfRange, message: "INIT_CHUNK offset \(header.offset) count \(header.count) outside tensor \(t)"))
        }
        return .success(intake.values.buffers[t].baseAddress! + Int(header.offset))
    }

    /// One INIT_CHUNK is complete; after the last, the coordinator starts with these values
    /// and the bringing worker takes its rank.
    func initChunkDone() -> Result<Void, WireError.Refusal> {
        guard var current = intake, let makeCoordinator else { return .success(()) }
        current.chunksLeft -= 1
        intake = current
        guard current.chunksLeft == 0 else { return .success(()) }
        do {
            let c = try makeCoordinator(current.layout, current.values)
            coordinator = c
            intake = nil
            intakeOwner = nil
            telemetry.adoptLayers(current.layout.tensors.map(\.name))
            finished.completeWith(c.outcomeFuture)
            c.adopt(current.link, rank: current.rank)
            logger.info("model received from a worker", metadata: [
                "tensors": "\(current.layout.tensors.count)", "parameters": "\(current.layout.parameterCount)",
                "layout_hash": "\(String(format: "%016llx", current.layout.hash))",
            ])
            return .success(())
        } catch {
            return .failure(.init(code: .internal, message: "cannot start the job with this model: \(error)"))
        }
    }

    /// The link closed before the model was complete: the next worker may bring it.
    func disconnectedBeforeModel(_ link: any WorkerLink) {
        if let owner = intakeOwner, owner.link === link {
            intakeOwner = nil
            intake = nil
            logger.warning("the worker bringing the model left before its INIT was complete")
        }
    }
}
