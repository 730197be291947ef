import Core
import Foundation
import Logging
import NIOCore
import Wire

/// Why the job ended: the process exit status follows from it.
public enum JobOutcome: Sendable, Equatable {
    /// All steps ran, the final checkpoint is written: exit 0.
    case done
    /// Loss non-finite or above the limit, or too many skipped steps in a row: exit 3.
    case diverged(String)
    /// A signal or the operator stopped the server; a checkpoint was written: exit 0.
    case shutdown

    /// The BYE reason workers get for this outcome.
    public var byeReason: ByeReason {
        switch self {
        case .done: .done
        case .diverged: .diverged
        case .shutdown: .shutdown
        }
    }

    public var exitStatus: Int32 {
        switch self {
        case .done, .shutdown: 0
        case .diverged: 3
        }
    }
}

/// The synchronous step (DESIGN.md §2): admits contributions for step t, adds each delivered
/// chunk as n_i x g_i into one accumulator per tensor, records per chunk which ranks added it
/// and the samples it holds, closes the step at the quorum, runs the optimizer and publishes
/// W_{t+1}.
///
/// Confined to the server's event loop: every method must be called there.
final class StepCoordinator: @unchecked Sendable {
    let job: JobConfig
    let options: ServerOptions
    let layout: Layout
    let wireLayout: WireLayout
    let grid: ChunkGrid
    let schedule: LearningRateSchedule
    let optimizer: LARSOptimizer
    let eventLoop: any EventLoop
    let telemetry: ServerTelemetry
    let logger: Logger
    /// What WELCOME carries besides the layout: the job, plus per-rank fields added at handshake.
    let jobDescription: [String: Any]

    /// Parameters (twice: W_t and the set W_{t+1} is written into), momentum and the gradient
    /// accumulator, one buffer per tensor each.
    let weights: WeightBuffers
    let momenta: FloatArena
    let accumulator: FloatArena
    /// Deterministic mode: each rank's scaled contribution, summed in rank order at close.
    private var rankBuffers: [FloatArena?]

    /// t: the open step. Every closed step advances it, a skipped one too.
    private(set) var step: Int
    private(set) var snapshot: WeightSnapshot
    private var links: [Int: any WorkerLink] = [:]
    private var pendingPulls: [(link: any WorkerLink, step: Int, shared: Bool)] = []
    /// The shared weight file workers on this host read W_t from, nil when off or unavailable.
    let sharedWeights: SharedWeightFile?
    /// The step last written to `sharedWeights`, and its slot: written at the first shared pull
    /// of a step, so a job without such workers never copies.
    private var sharedSlot: (step: Int, slot: UInt32)?

    // The open step's bookkeeping.
    private var began: [Int: Int] = [:]
    private var losses: [Int: Double] = [:]
    private var chunkSamples: [Int]
    private var addedBy: [[Bool]]
    private var chunksAdded: [Int]
    /// Chunks whose last contribution has been added and turned into the mean on arrival (every
    /// rank of the job added it), with the terms of their ||g||^2 (`AccumulatorKernels.finalize`)
    /// at `termOffset[i]` in `finalTerms`, `termCount[i]` of them: the close only adds those up.
    private var finalized: [Bool]
    private var termCount: [Int]
    private let termOffset: [Int]
    private let finalTerms: UnsafeMutablePointer<Double>
    private var poison: (rank: Int, tensor: String)?
    private var stepStarted = NIODeadline.now()
    private var deadlineTask: Scheduled<Void>?
    private var consecutiveSkips = 0

    private(set) var outcome: JobOutcome?
    private var finishing = false
    /// A close is queued on the event loop (`pushEnd`).
    private var closeScheduled = false
    private var finalEvalTimer: Scheduled<Void>?
    /// The rank asked for the final evaluation, while its answer is outstanding; nil when no
    /// worker was there to ask.
    private var finalEvaluator: Int?
    private let finished: EventLoopPromise<JobOutcome>
    /// Called on the loop with the state to save; returns nil on success or a reason.
    var checkpointWriter: ((_ reason: String) -> Void)?

    /// Loss above this ends the job as diverged.
    static let lossLimit = 50.0
    /// This many skipped steps in a row end the job as diverged.
    static let skipLimit = 10
    /// The optimizer gets a second thread only from twice this many parameters on.
    static let parametersPerOptimizerThread = 2 << 20

    init(
        job: JobConfig, options: ServerOptions, layout: Layout, schedule: LearningRateSchedule,
        jobDescription: [String: Any], eventLoop: any EventLoop, telemetry: ServerTelemetry, logger: Logger
    ) throws {
        self.job = job
        self.options = options
        self.layout = layout
        // One thread per 2 Mi parameters at most: on a small model (the MLP has 0.67 M) the
        // join costs more than the second thread saves, and on a busy machine the step's close
        // would wait for that thread to be scheduled.
        let threads = max(1, min(options.optimizerThreads, layout.parameterCount / Self.parametersPerOptimizerThread))
        self.optimizer = try LARSOptimizer(config: job.optimizer, layout: layout, threads: threads)
        self.wireLayout = WireLayout(layout, adapt: job.optimizer.adapts)
        self.grid = ChunkGrid(layout: wireLayout, chunkElements: options.chunkElements)
        self.schedule = schedule
        self.jobDescription = jobDescription
        self.eventLoop = eventLoop
        self.telemetry = telemetry
        self.logger = logger
        // Tensors outside the adapt mask are stepped with the global rate itself: worth saying,
        // because a LARS peak rate (16 in the demo) is far above what plain SGD survives on a
        // bias without normalization (docs/results.md, "The adapt mask").
        let fixedRate = zip(layout.tensors, optimizer.adapts).filter { !$1 }.map(\.0.name)
        if job.optimizer.kind == .lars && !fixedRate.isEmpty {
            logger.info("tensors outside the adapt mask take the global rate without trust ratio or weight decay", metadata: [
                "tensors": "\(fixedRate.count) of \(layout.tensors.count): \(fixedRate.prefix(8).joined(separator: ", "))\(fixedRate.count > 8 ? ", ..." : "")",
                "peak_rate": "\(job.schedule.peakRate)",
            ])
        }
        self.weights = try WeightBuffers(layout: layout)
        self.momenta = FloatArena(layout: layout)
        self.accumulator = FloatArena(layout: layout)
        self.rankBuffers = Array(repeating: nil, count: job.workers)
        self.step = 0
        self.chunkSamples = Array(repeating: 0, count: grid.count)
        self.addedBy = Array(repeating: Array(repeating: false, count: job.workers), count: grid.count)
        self.chunksAdded = Array(repeating: 0, count: job.workers)
        self.finalized = Array(repeating: false, count: grid.count)
        self.termCount = Array(repeating: 0, count: grid.count)
        var offsets: [Int] = []
        var terms = 0
        for range in grid.ranges {
            offsets.append(terms)
            terms += AccumulatorKernels.termCapacity(count: Int(range.count))
        }
        self.termOffset = offsets
        self.finalTerms = .allocate(capacity: max(terms, 1))
        self.snapshot = WeightSnapshot(step: 0, chunks: [], ranges: [])
        self.finished = eventLoop.makePromise(of: JobOutcome.self)
        if options.sharedWeights {
            do {
                sharedWeights = try SharedWeightFile.create(elements: layout.parameterCount, directory: options.sharedWeightsDirectory)
            } catch {
                sharedWeights = nil
                logger.warning("workers on this host pull over TCP", metadata: ["reason": "\(error)"])
            }
        } else {
            sharedWeights = nil
        }
    }

    deinit {
        finalTerms.deallocate()
    }

    /// Completes when the job has ended.
    var outcomeFuture: EventLoopFuture<JobOutcome> { finished.futureResult }

    var totalSteps: Int { schedule.totalSteps }
    var epoch: Double { Double(step) / Double(schedule.stepsPerEpoch) }

    /// Continues at `step` (weights and momenta already loaded from a checkpoint).
    func resume(at resumed: Int) {
        step = resumed
        telemetry.resumed(step: resumed, epoch: epoch)
    }

    /// Publishes the current weights (after init or resume) and starts the first step's clock.
    func start() {
        publish()
        beginStep()
        telemetry.setState(.waiting)
        if step >= totalSteps { finish() }
    }

    // MARK: Handshake and membership

    /// Answers HELLO: checks version, token and layout, assigns a rank.
    func hello(_ link: any WorkerLink, _ hello: Hello) -> Result<Welcome, WireError.Refusal> {
        if let refusal = Handshake.refusal(for: hello, token: options.authToken, telemetry: telemetry) {
            return .failure(refusal)
        }
        if let h = hello.layoutHash, h != layout.hash {
            return .failure(.init(code: .layoutMismatch, message: String(
                format: "layout hash %016llx differs from the job's %016llx (model %@)", h, layout.hash, job.model)))
        }
        let rank: Int
        if let wanted = hello.wantedRank {
            guard Int(wanted) < job.workers else {
                return .failure(.init(code: .rankUnavailable, message: "rank \(wanted) does not exist: the job has \(job.workers) workers (ranks 0...\(job.workers - 1))"))
            }
            guard links[Int(wanted)] == nil else {
                return .failure(.init(code: .rankUnavailable, message: "rank \(wanted) is held by a live connection"))
            }
            rank = Int(wanted)
        } else {
            guard let free = (0..<job.workers).first(where: { links[$0] == nil }) else {
                return .failure(.init(code: .rankUnavailable, message: "all \(job.workers) ranks are taken"))
            }
            rank = free
        }
        links[rank] = link
        telemetry.workerJoined(rank: rank, name: hello.workerName, address: link.address)
        logger.info("worker joined", metadata: ["rank": "\(rank)", "name": "\(hello.workerName)", "address": "\(link.address)", "step": "\(step)"])
        var extra: [String: Any] = [:]
        if let file = sharedWeights {
            extra["shared_weights"] = ["path": file.path, "nonce": String(file.nonce, radix: 16), "elements": file.elements]
        }
        return .success(Handshake.welcome(job: job, description: jobDescription, rank: rank, step: step, layout: wireLayout, extra: extra))
    }

    /// Gives up on a coordinator that could not be set up (its state failed to load): settles
    /// its outcome so nothing waits on it.
    func abandon(_ error: any Error) {
        guard outcome == nil else { return }
        finished.fail(error)
    }

    /// Registers the worker that brought the model (its HELLO went to the host).
    func adopt(_ link: any WorkerLink, rank: Int) {
        links[rank] = link
        telemetry.workerJoined(rank: rank, name: link.name, address: link.address)
    }

    /// After WELCOME went out: while the final evaluation waits for a worker to ask (the one
    /// asked left, and no other was there), the new one, now the only live rank, is asked.
    func welcomed() {
        guard finishing, outcome == nil, finalEvaluator == nil else { return }
        requestEvaluation(final: true)
    }

    /// The link closed (BYE, error or lost connection).
    func disconnected(_ link: any WorkerLink) {
        pendingPulls.removeAll { $0.link === link }
        guard let rank = link.rank, let held = links[rank], held === link else { return }
        links[rank] = nil
        telemetry.workerLeft(rank: rank)
        logger.info("worker left", metadata: ["rank": "\(rank)", "step": "\(step)", "chunks_added": "\(chunksAdded[rank])/\(grid.count)"])
        if finishing, outcome == nil, finalEvaluator == rank {
            // Its answer will not come: ask the lowest rank still here, or the next to join.
            requestEvaluation(final: true)
            logger.info("the worker asked for the final evaluation left; asking another", metadata: [
                "left": "\(rank)", "asked": "\(finalEvaluator.map(String.init) ?? "the next worker to join")",
            ])
        }
    }

    // MARK: Pull

    /// PULL (`shared` false) or PULL_SHARED: answered now if the step is published, else when
    /// it is. A shared pull gets WEIGHTS_SHARED when the server has a shared weight file, and
    /// the weights over TCP when it has none.
    func pull(_ link: any WorkerLink, step wanted: Int, shared: Bool = false) {
        if wanted <= step {
            answer(link, shared: shared)
        } else {
            pendingPulls.append((link, wanted, shared))
        }
    }

    private func answer(_ link: any WorkerLink, shared: Bool) {
        guard shared, let slot = writeSharedSlot() else {
            telemetry.pulled(sharedMemory: false)
            return link.sendWeights(snapshot)
        }
        telemetry.pulled(sharedMemory: true)
        link.send(.weightsShared(step: UInt64(snapshot.step), slot: slot))
    }

    /// Writes the weights served into the shared weight file, once per step, which also wakes
    /// the local workers waiting on it; the slot, or nil without a file.
    private func writeSharedSlot() -> UInt32? {
        guard let file = sharedWeights else { return nil }
        let published = snapshot.step
        if let written = sharedSlot, written.step == published { return written.slot }
        let slot = file.publish(step: UInt64(published), tensors: weights.readable)
        sharedSlot = (published, slot)
        return slot
    }

    // MARK: Push

    /// What a connection should do with the push it is receiving.
    enum PushAdmission {
        /// Stage and commit the chunks of this push.
        case accepted(sampleCount: Int)
        /// The step already closed: answer STEP_CLOSED, drop the data.
        case closed(current: Int)
    }

    func pushBegin(rank: Int, step pushStep: Int, sampleCount: Int) -> Result<PushAdmission, WireError.Refusal> {
        guard outcome == nil, !finishing else { return .success(.closed(current: step)) }
        if pushStep < step {
            telemetry.rejected(.stepClosed)
            return .success(.closed(current: step))
        }
        guard pushStep == step else {
            return .failure(.init(code: .unexpectedMessage, message: "push for step \(pushStep) but step \(step) is open; pull step \(step) first"))
        }
        // A data set job knows its batch; a `steps` job (benchmark layouts, models brought by
        // a worker) takes any count >= 1.
        let most = job.dataset == nil ? Int(UInt32.max) : job.globalBatch
        guard sampleCount >= 1, sampleCount <= most else {
            return .failure(.init(code: .malformedPayload, message: "sample count \(sampleCount) outside 1...\(most)"))
        }
        began[rank] = sampleCount
        if deadlineTask == nil { armDeadline() }
        return .success(.accepted(sampleCount: sampleCount))
    }

    /// Whether `rank` still has to add grid chunk `index` to the open step.
    func needsChunk(rank: Int, step pushStep: Int, index: Int) -> Bool {
        pushStep == step && outcome == nil && !finishing && !addedBy[index][rank]
    }

    /// Adds a complete chunk of `rank`'s push to the open step: Float32 values at `values` (any
    /// alignment), times `factor` — a worker's mapped gradient file scaled by its sample count
    /// (PUSH_SHARED), or a staging buffer already scaled (PUSH_CHUNK, factor 1; x * 1 is x) —
    /// into its own buffer with --deterministic, else into the sum, where the job's last rank to
    /// add it turns it into the mean. A non-finite value poisons the step (skipped at the close).
    func commitChunk(rank: Int, step pushStep: Int, index: Int, values: UnsafeRawPointer, factor: Float) {
        guard needsChunk(rank: rank, step: pushStep, index: index), let n = began[rank] else { return }
        let range = grid.ranges[index]
        let tensor = Int(range.tensor)
        let count = Int(range.count)
        let finite: Bool
        if options.deterministic {
            if rankBuffers[rank] == nil { rankBuffers[rank] = FloatArena(layout: layout) }
            let dst = rankBuffers[rank]!.buffers[tensor].baseAddress! + Int(range.offset)
            finite = AccumulatorKernels.scale(values, dtype: .float32, count: count, by: factor, into: dst)
        } else {
            let dst = accumulator.buffers[tensor].baseAddress! + Int(range.offset)
            // The job's last rank to add this chunk turns it into the mean right away, so the
            // close has no pass over it (and the mean overlaps the chunks still arriving).
            let last = addedBy[index].lazy.filter { $0 }.count + 1 == job.workers
            let first = chunkSamples[index] == 0
            let total = Float(chunkSamples[index] + n)
            let terms = finalTerms + termOffset[index]
            if first {
                finite = AccumulatorKernels.scale(values, dtype: .float32, count: count, by: factor, into: dst)
                if last { termCount[index] = AccumulatorKernels.finalize(dst, count: count, total: total, terms: terms) }
            } else if last {
                (termCount[index], finite) = AccumulatorKernels.finalizeScaled(
                    dst, adding: values, by: factor, count: count, total: total, terms: terms)
            } else {
                finite = AccumulatorKernels.addScaled(values, by: factor, into: dst, count: count)
            }
            if last { finalized[index] = true }
        }
        if !finite && poison == nil {
            poison = (rank, layout.tensors[tensor].name)
            telemetry.rejected(.nonFinite)
        }
        chunkSamples[index] += n
        addedBy[index][rank] = true
        chunksAdded[rank] += 1
        telemetry.pushBytes(count * 4)
    }

    func pushEnd(rank: Int, step pushStep: Int, loss: Double) -> Result<Void, WireError.Refusal> {
        guard pushStep == step, outcome == nil, !finishing else { return .success(()) }
        guard began[rank] != nil else {
            return .failure(.init(code: .unexpectedMessage, message: "PUSH_END for step \(pushStep) without PUSH_BEGIN"))
        }
        guard chunksAdded[rank] == grid.count else {
            return .failure(.init(code: .wrongLength, message: "PUSH_END after \(chunksAdded[rank]) of \(grid.count) chunks"))
        }
        losses[rank] = loss
        telemetry.workerPushed(rank: rank, at: Date())
        if losses.count >= job.quorum && !closeScheduled {
            // The step closes once the event loop has handled what it read with this PUSH_END:
            // the HEARTBEAT the worker sent in the same write, its push's acknowledgement, is
            // echoed first instead of waiting behind the update and the bookkeeping.
            closeScheduled = true
            eventLoop.execute { [self] in
                closeScheduled = false
                guard outcome == nil, !finishing, losses.count >= job.quorum else { return }
                closeStep()
            }
        }
        return .success(())
    }

    // MARK: Closing a step

    private func closeStep() {
        let started = stepStarted
        let t = step
        let rate = schedule.rate(at: t)
        if options.deterministic { sumInRankOrder() }

        // The mean gradient per chunk, and ||g||^2 per tensor taken on the way.
        var gsq = [Double](repeating: 0, count: layout.tensors.count)
        for (index, range) in grid.ranges.enumerated() {
            let tensor = Int(range.tensor)
            if finalized[index] {
                let terms = finalTerms + termOffset[index]
                for k in 0..<termCount[index] { gsq[tensor] += terms[k] }
                continue
            }
            let p = accumulator.buffers[tensor].baseAddress! + Int(range.offset)
            let total = chunkSamples[index]
            if total == 0 {
                p.update(repeating: 0, count: Int(range.count))
                continue
            }
            gsq[tensor] = AccumulatorKernels.mean(p, count: Int(range.count), total: Float(total), running: gsq[tensor])
        }
        var completeSamples = 0
        var lossSum = 0.0
        for (rank, l) in losses {
            let n = began[rank] ?? 0
            completeSamples += n
            lossSum += Double(n) * l
        }
        let loss = completeSamples > 0 ? lossSum / Double(completeSamples) : .nan

        var skippedReason: String?
        var report: StepReport?
        if let p = poison {
            skippedReason = "non-finite gradient from rank \(p.rank) in tensor '\(p.tensor)'"
        } else {
            // W_{t+1} goes into the other weight set, which the next snapshot slices. When local
            // workers wait on the shared weight file, it goes into the file's next slot instead,
            // which wakes them as soon as the update ends, and is copied into the weight set
            // after. With `weightsOut` given the optimizer only reads `weights`.
            let slotWrite = pendingPulls.contains(where: { $0.shared && $0.step <= t + 1 })
                ? sharedWeights?.beginWrite(counts: layout.tensors.map(\.count)) : nil
            do {
                report = try optimizer.step(
                    rate: rate, weights: weights.readable.map { UnsafeMutableBufferPointer(mutating: $0) },
                    gradients: accumulator.buffers.map { UnsafeBufferPointer($0) },
                    momenta: momenta.buffers, gradientNormsSquared: gsq, weightsOut: slotWrite?.tensors ?? weights.nextWritable)
                if let slotWrite, let file = sharedWeights {
                    sharedSlot = (t + 1, file.finishWrite(step: UInt64(t + 1)))
                    for (target, source) in zip(weights.nextWritable, slotWrite.tensors) where source.count > 0 {
                        target.baseAddress!.update(from: source.baseAddress!, count: source.count)
                    }
                }
                weights.swap()
            } catch {
                if slotWrite != nil { sharedWeights?.abandonWrite() }
                skippedReason = "\(error)"
            }
        }
        let duration = Double((NIODeadline.now() - started).nanoseconds) / 1e9
        step = t + 1
        if let reason = skippedReason {
            consecutiveSkips += 1
            logger.warning("step skipped", metadata: ["step": "\(t)", "reason": "\(reason)", "in_a_row": "\(consecutiveSkips)"])
            // The weights did not change: workers that pulled t+1 get W_t's buffers relabelled.
            snapshot = WeightSnapshot(step: step, chunks: snapshot.chunks, ranges: snapshot.ranges)
        } else {
            consecutiveSkips = 0
            publish()
        }
        // The workers waiting on the shared weight file get the weights first (writing them
        // wakes them all; the update above has done so unless the step was skipped); then the
        // step's figures are recorded, so that every answer sent on a connection comes after
        // them; then the pulls are answered.
        if pendingPulls.contains(where: { $0.shared && $0.step <= step }) { _ = writeSharedSlot() }
        let layers = report.map { r in
            r.tensors.map { LayerFigures(weightNorm: $0.weightNorm, gradientNorm: $0.gradientNorm, trustRatio: $0.trustRatio, effectiveRate: $0.effectiveRate) }
        }
        telemetry.stepClosed(step: t, epoch: Double(t + 1) / Double(schedule.stepsPerEpoch), rate: rate,
                             loss: loss.isNaN ? nil : loss, duration: duration, skipped: skippedReason != nil, layers: layers)
        telemetry.setState(.training)
        // A push begun but not ended (a backup worker still computing, or still sending: workers
        // send PUSH_BEGIN before their forward pass) is answered STEP_CLOSED now, ahead of any
        // WEIGHTS sequence on its connection; the chunks it added before the close count, each
        // averaged by its own sample total.
        for rank in began.keys.sorted() where losses[rank] == nil {
            if links[rank]?.pushOutlived(step: t, current: step) == true { telemetry.rejected(.stepClosed) }
        }
        answerPendingPulls()
        resetStepState()

        if !loss.isNaN && (!loss.isFinite || loss > Self.lossLimit) {
            return diverge("loss \(loss) at step \(t) (limit \(Self.lossLimit))")
        }
        if consecutiveSkips >= Self.skipLimit {
            return diverge("\(consecutiveSkips) skipped steps in a row (last: \(skippedReason ?? "?"))")
        }
        if job.checkpointEvery > 0 && step % job.checkpointEvery == 0 && step < totalSteps {
            checkpointWriter?("every \(job.checkpointEvery) steps")
        }
        if step >= totalSteps {
            finish()
        } else if step % schedule.stepsPerEpoch == 0 {
            requestEvaluation()
        }
    }

    private func sumInRankOrder() {
        for (index, range) in grid.ranges.enumerated() {
            let tensor = Int(range.tensor)
            let dst = accumulator.buffers[tensor].baseAddress! + Int(range.offset)
            var first = true
            for rank in 0..<job.workers where addedBy[index][rank] {
                let src = rankBuffers[rank]!.buffers[tensor].baseAddress! + Int(range.offset)
                if first {
                    dst.update(from: src, count: Int(range.count))
                    first = false
                } else {
                    AccumulatorKernels.add(src, into: dst, count: Int(range.count))
                }
            }
        }
    }

    private func resetStepState() {
        began.removeAll(keepingCapacity: true)
        losses.removeAll(keepingCapacity: true)
        for i in chunkSamples.indices { chunkSamples[i] = 0 }
        for i in addedBy.indices { for r in addedBy[i].indices { addedBy[i][r] = false } }
        for r in chunksAdded.indices { chunksAdded[r] = 0 }
        for i in finalized.indices { finalized[i] = false }
        poison = nil
        beginStep()
    }

    private func beginStep() {
        stepStarted = .now()
        deadlineTask?.cancel()
        deadlineTask = nil
        telemetry.setMissing(ranks: [], waitingSeconds: 0)
    }

    /// Makes the current weights what pulls are served: slices of their buffers, no copy.
    private func publish() {
        snapshot = weights.snapshot(step: step, grid: grid)
    }

    private func answerPendingPulls() {
        let ready = pendingPulls.filter { $0.step <= step }
        pendingPulls.removeAll { $0.step <= step }
        // Shared pulls first: each costs a few bytes, while a TCP pull writes the whole model.
        for p in ready where p.shared { answer(p.link, shared: true) }
        for p in ready where !p.shared { answer(p.link, shared: false) }
    }

    // MARK: Deadline

    private func armDeadline() {
        let seconds = job.stepDeadlineSeconds
        deadlineTask = eventLoop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) { [weak self] in
            self?.deadlinePassed()
        }
    }

    private func deadlinePassed() {
        guard outcome == nil else { return }
        let complete = Set(losses.keys)
        let missing = (0..<job.workers).filter { !complete.contains($0) }
        let waited = Double((NIODeadline.now() - stepStarted).nanoseconds) / 1e9
        let detail = missing.map { r -> String in
            let state = links[r] == nil ? "not connected" : (began[r] == nil ? "no push yet" : "\(chunksAdded[r])/\(grid.count) chunks")
            return "\(r) (\(state))"
        }.joined(separator: ", ")
        logger.warning("step deadline passed; waiting", metadata: [
            "step": "\(step)", "complete": "\(complete.count)/\(job.quorum) needed", "missing_ranks": "\(detail)",
            "waited_s": "\(String(format: "%.1f", waited))",
        ])
        telemetry.setMissing(ranks: missing, waitingSeconds: waited)
        armDeadline()
    }

    // MARK: Evaluation and the end of the job

    /// Sends EVAL_REQUEST for the current step to the lowest live rank. For the `final`
    /// evaluation the rank asked is kept in `finalEvaluator` (nil with no worker to ask), set
    /// before the send: a send to a dead socket closes the link at once, and `disconnected`
    /// must then find that rank to ask the next one.
    private func requestEvaluation(final: Bool = false) {
        guard let rank = links.keys.min(), let link = links[rank] else {
            if final { finalEvaluator = nil }
            return
        }
        if final { finalEvaluator = rank }
        link.send(.evalRequest(step: UInt64(step)))
    }

    func evaluated(rank: Int, step evalStep: Int, testLoss: Double, accuracy: Double) {
        let epoch = Double(evalStep) / Double(schedule.stepsPerEpoch)
        telemetry.evaluated(step: evalStep, epoch: epoch, testLoss: testLoss, accuracy: accuracy)
        logger.info("evaluation", metadata: [
            "step": "\(evalStep)", "epoch": "\(String(format: "%.2f", epoch))",
            "test_loss": "\(testLoss)", "accuracy": "\(accuracy)", "rank": "\(rank)",
        ])
        if finishing && evalStep >= totalSteps { complete(.done) }
    }

    private func finish() {
        guard !finishing, outcome == nil else { return }
        finishing = true
        telemetry.setState(.training, detail: "final evaluation")
        logger.info("all steps done; final evaluation", metadata: ["steps": "\(totalSteps)"])
        if links.isEmpty {
            complete(.done)
            return
        }
        requestEvaluation(final: true)
        finalEvalTimer = eventLoop.scheduleTask(in: .nanoseconds(Int64(options.finalEvalTimeout * 1e9))) { [weak self] in
            self?.logger.warning("no final evaluation arrived in time; ending without it")
            self?.complete(.done)
        }
    }

    private func diverge(_ why: String) {
        logger.error("training diverged", metadata: ["reason": "\(why)", "step": "\(step)"])
        complete(.diverged(why))
    }

    /// Ends the job: final checkpoint (unless diverged), BYE to every worker.
    func complete(_ result: JobOutcome) {
        guard outcome == nil else { return }
        outcome = result
        finalEvalTimer?.cancel()
        deadlineTask?.cancel()
        switch result {
        case .done:
            telemetry.setState(.done)
            checkpointWriter?("end of job")
        case .diverged(let why):
            telemetry.setState(.diverged, detail: why)
        case .shutdown:
            telemetry.setState(.shutdown)
            checkpointWriter?("shutdown")
        }
        for link in links.values { link.bye(result.byeReason, detail: "\(result)") }
        finished.succeed(result)
    }
}

extension WireError {
    /// A refusal the server sends as ERROR before closing the connection.
    struct Refusal: Error {
        var code: ErrorCode
        var message: String
    }
}
