import Core
import Foundation
import Logging
import Wire

/// A worker's training loop (DESIGN.md §2): connects, checks its data against the job,
/// then every step pulls the weights, computes the mean gradient of its slice of the global
/// batch and pushes it with its loss and sample count; evaluates on the test set when the
/// server asks; ends on BYE.
///
/// Its slice of step t: epoch t / steps_per_epoch, global batch t % steps_per_epoch of that
/// epoch's seeded order (`BatchPlan`), positions `offset(rank) ..< offset(rank) + share(rank)`.
/// After a reconnect it continues at the step the server is at.
public final class TrainingLoop {
    public let options: WorkerOptions
    let logger: Logger

    public init(options: WorkerOptions, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until the job ends for this worker.
    public func run() async -> WorkerExit {
        BLAS.setThreads(options.blasThreads)
        let clientOptions = ClientOptions(
            workerName: options.name, token: options.token, wantedRank: options.wantedRank,
            connectTimeout: options.reconnectTimeout, reconnectTimeout: options.reconnectTimeout,
            sharedWeights: options.sharedWeights)
        let session = ClientSession(host: options.host, port: options.port, options: clientOptions, logger: logger)
        let watch = SessionWatch.watching(session)
        let info: SessionInfo
        do {
            info = try await session.connect()
        } catch {
            return Self.exit(for: error)
        }
        let job = info.job
        let directory = options.dataDirectory ?? job.config.dataset?.dir ?? DatasetFiles.fashionMNISTDirectory
        let data: TrainingData
        do {
            data = try TrainingData.load(directory: directory, expected: job.fingerprint, dataset: job.config.dataset)
        } catch {
            await session.close(reporting: .dataset, message: "rank \(info.rank): \(error.description)")
            return .dataset(error.description)
        }
        // On the server's host (the shared weight file mapped), the gradients are computed into
        // a sealed file of this worker's, which the server maps and reads pushes from.
        var gradientFile: SharedWeightFile?
        if info.sharedWeightsPath != nil {
            do {
                gradientFile = try SharedWeightFile.createSealed(elements: info.layout.layout.parameterCount)
            } catch {
                logger.info("pushing over TCP", metadata: ["reason": "\(error)"])
            }
        }
        let trainer: Trainer
        do {
            trainer = try Trainer(info: info, data: data, microBatch: options.microBatch, gradientFile: gradientFile)
        } catch {
            await session.close(reporting: .internal, message: "rank \(info.rank): \(error)")
            return .failed("\(error)")
        }
        logger.info("training", metadata: [
            "rank": "\(info.rank)", "world": "\(info.worldSize)", "model": "\(job.config.model)",
            "share": "\(job.share)", "data": "\(directory)", "step": "\(info.currentStep)",
            "total_steps": "\(trainer.totalSteps)", "blas_threads": "\(BLAS.threads)", "micro_batch": "\(trainer.network.maxBatch)",
        ])
        if let gradientFile {
            let taken = await session.shareGradients(gradientFile)
            logger.info(taken ? "pushing through the gradient file" : "pushing over TCP: the server did not map the gradient file",
                        metadata: ["path": "\(gradientFile.path)"])
        }
        var progress = Progress(rank: info.rank, every: options.progressEvery, totalSteps: trainer.totalSteps, stepsPerEpoch: trainer.plan.stepsPerEpoch)
        let stats = StatsFile(path: options.statsFile)
        do {
            try await train(session: session, watch: watch, trainer: trainer, from: info.currentStep, progress: &progress, stats: stats)
        } catch let error as ClientError {
            return Self.exit(for: error)
        } catch {
            return .failed("\(error)")
        }
        return .failed("the session ended without BYE")
    }

    /// Steps until the session ends (always by throwing: BYE is `ClientError.byeReceived`).
    private func train(
        session: ClientSession, watch: SessionWatch, trainer: Trainer, from start: Int, progress: inout Progress, stats: StatsFile?
    ) async throws {
        let clock = ContinuousClock()
        var step = start
        var pendingEvals: [Int] = []
        var reconnectsSeen = 0
        // The pull of the next step, sent ahead of the push's PUSH_END (`StreamingPush.pullNext`):
        // every worker's PULL, the closing worker's too, is waiting at the server when the step
        // closes, and all are answered at the close (docs/performance.md, worker, sessions 4 and 9).
        var nextPull: NextPull?
        // The pull answered last. Read from the shared weight file, its answer may still be on
        // the way (and is dropped): it must end before the connection pulls again.
        var lastPull: NextPull?
        do {
            while true {
                var timings = StepTimings()
                timings.start = Date().timeIntervalSince1970
                var mark = clock.now
                func lap() -> Double {
                    let now = clock.now
                    defer { mark = now }
                    return (now - mark).seconds
                }
                // The batch of the step asked for is gathered (if the gatherer is not on it
                // already) while the weights are on their way.
                let asked = step
                trainer.prefetch(step: asked)
                if let pull = nextPull {
                    nextPull = nil
                    lastPull = pull
                    // While the server closes the step, this thread copies rows of the next
                    // batch that the gatherer has not reached. On the server's host the weights
                    // are then read where the server wrote them, in its shared file, unless
                    // steps may close without this worker.
                    if trainer.mayReadInPlace {
                        let pulled = try await pull.borrow(whileWaiting: { trainer.gatherSome(step: asked) })
                        trainer.useWeights(pulled.weights)
                        step = pulled.step
                    } else {
                        step = try await pull.step(whileWaiting: { trainer.gatherSome(step: asked) })
                        trainer.useWeights(nil)
                    }
                } else {
                    await lastPull?.settle()
                    lastPull = nil
                    trainer.useWeights(nil)
                    step = try await session.pull(step: asked, into: trainer.weights.buffers).step
                }
                timings.pull = lap()
                try await answerEvals(&pendingEvals, session: session, trainer: trainer, weightsStep: step, lastPull: lastPull)
                if step >= trainer.totalSteps {
                    // Every step ran: answer the final EVAL_REQUEST, then wait for BYE (or a
                    // reconnect to a server that came back at an earlier step).
                    reconnectsSeen = watch.latestReconnect.count
                    while !watch.hasEnded {
                        try await answerEvals(&pendingEvals, session: session, trainer: trainer, weightsStep: step, lastPull: lastPull)
                        let r = watch.latestReconnect
                        if r.count > reconnectsSeen {
                            reconnectsSeen = r.count
                            if r.step < trainer.totalSteps { break }
                        }
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                    if watch.hasEnded {
                        // The session is over: a pull throws why (BYE, refusal, timeout).
                        _ = try await session.pull(step: step, into: trainer.weights.buffers)
                        throw ClientError.closed
                    }
                    step = watch.latestReconnect.step
                    continue
                }
                mark = clock.now
                timings.gather = trainer.awaitBatch(step: step)   // near zero unless the gatherer fell behind
                // The push starts before the gradient exists: each layer's chunks leave as soon
                // as the last pass has finished them (the last layer first), so only the first
                // layer's are left to send when forward/backward ends.
                let gradients = GradientSource(buffers: trainer.gradientViews)
                let stream = try await session.beginPush(
                    step: step, sampleCount: trainer.batchCount(step: step), gradients: gradients.buffers)
                timings.pull += lap()
                let cpuBefore = StepTimings.threadCPUSeconds()   // forward/backward never suspends: one thread
                let computed = trainer.computeGradient(
                    step: step, shouldStop: { stream.isClosed }, gradientsFinal: { stream.release(tensors: $0) })
                timings.compute = lap()
                timings.computeCPU = StepTimings.threadCPUSeconds() - cpuBefore
                guard let (loss, n) = computed else {
                    // The step closed without this worker (a backup worker, K < N): it stops
                    // computing at once and goes on with the server's step.
                    let stopped = step
                    let result = try await stream.finish(loss: .nan)
                    if case .stepClosed(let current) = result { step = current } else { step += 1 }
                    logger.info("the step closed without this worker; stopped computing it", metadata: ["step": "\(stopped)", "server_step": "\(step)"])
                    continue
                }
                // The next pull leaves with the push unless an evaluation of these weights is due
                // (it needs them in hand after the push).
                Self.collectEvalRequests(into: &pendingEvals, from: session)
                let evaluationDue = pendingEvals.contains { $0 <= step }
                if !evaluationDue {
                    await lastPull?.settle()
                    lastPull = nil
                    nextPull = stream.pullNext(step + 1, into: trainer.weights.buffers)
                }
                let result = try await stream.finish(loss: loss)
                timings.push = lap()
                timings.step = step
                timings.samples = n
                stats?.append(timings)
                progress.record(step: step, loss: loss, timings: timings)
                if evaluationDue {
                    try await answerEvals(&pendingEvals, session: session, trainer: trainer, weightsStep: step, lastPull: lastPull)
                }
                switch result {
                case .accepted: step += 1
                case .stepClosed(let current):
                    // A pull in flight brings the server's step anyway.
                    logger.warning("push not taken: the step closed without it", metadata: ["step": "\(step)", "server_step": "\(current)"])
                    step = current
                }
            }
        } catch {
            // A pull in flight writes into the trainer's buffers: it must end before they go.
            for pull in [nextPull, lastPull].compactMap({ $0 }) {
                pull.cancel()
                await pull.settle()
            }
            throw error
        }
    }

    /// Evaluates the weights in hand (those of `weightsStep`) for every request up to that
    /// step and sends EVAL; requests for later steps wait. `lastPull`: the pull that brought
    /// them, if it may still be under way.
    private func answerEvals(
        _ pending: inout [Int], session: ClientSession, trainer: Trainer, weightsStep: Int, lastPull: NextPull?
    ) async throws(ClientError) {
        Self.collectEvalRequests(into: &pending, from: session)
        guard pending.contains(where: { $0 <= weightsStep }) else { return }
        pending.removeAll { $0 <= weightsStep }
        var weightsStep = weightsStep
        if !trainer.ownWeights() {
            // The server wrote the slot they were read from again, which it does only after a
            // step closed without this worker (`Trainer.mayReadInPlace` rules that out): pull
            // the server's weights and evaluate those.
            await lastPull?.settle()
            weightsStep = try await session.pull(step: weightsStep, into: trainer.weights.buffers).step
            logger.warning("the shared weights moved on before the evaluation", metadata: ["evaluated_step": "\(weightsStep)"])
        }
        let started = ContinuousClock.now
        let (loss, accuracy) = trainer.evaluate()
        try await session.sendEval(step: weightsStep, testLoss: loss, accuracy: accuracy, sampleCount: trainer.data.test.count)
        FileHandle.standardError.write(Data(String(
            format: "lars-worker rank %d: eval step %d epoch %.2f test_loss %.4f test_accuracy %.4f (%.2f s)\n",
            trainer.rank, weightsStep, Double(weightsStep) / Double(trainer.plan.stepsPerEpoch), loss, accuracy,
            (ContinuousClock.now - started).seconds).utf8))
    }

    /// Moves the EVAL_REQUEST steps the session has received into `pending`.
    private static func collectEvalRequests(into pending: inout [Int], from session: ClientSession) {
        while let r = session.takeEvalRequest() { pending.append(r) }
    }

    static func exit(for error: ClientError) -> WorkerExit {
        switch error {
        case .byeReceived(let reason, let detail): .bye(reason: reason, detail: detail)
        case .connectFailed: .unreachable("\(error)")
        default: .failed("\(error)")
        }
    }
}

/// The gradient buffers a push reads while the loop gathers the next batch: the loop does not
/// touch them until the push returns.
struct GradientSource: @unchecked Sendable {
    let buffers: [UnsafeBufferPointer<Float>]
}

/// Progress lines on stderr: step, epoch, loss, this worker's samples/s since the last line.
struct Progress {
    let rank: Int
    let every: Int
    let totalSteps: Int
    let stepsPerEpoch: Int
    private var samples = 0
    private var seconds = 0.0
    private var lossSum = 0.0
    private var steps = 0
    private var computeSeconds = 0.0

    init(rank: Int, every: Int, totalSteps: Int, stepsPerEpoch: Int) {
        self.rank = rank
        self.every = every
        self.totalSteps = totalSteps
        self.stepsPerEpoch = stepsPerEpoch
    }

    mutating func record(step: Int, loss: Double, timings: StepTimings) {
        guard every > 0 else { return }
        samples += timings.samples
        seconds += timings.wall
        computeSeconds += timings.compute
        lossSum += loss
        steps += 1
        guard (step + 1) % every == 0 || step + 1 == totalSteps else { return }
        FileHandle.standardError.write(Data(String(
            format: "lars-worker rank %d: step %d/%d epoch %.2f loss %.4f %.0f samples/s (compute %.0f%%)\n",
            rank, step + 1, totalSteps, Double(step + 1) / Double(stepsPerEpoch), lossSum / Double(steps),
            Double(samples) / max(seconds, 1e-9), 100 * computeShare).utf8))
        samples = 0
        seconds = 0
        lossSum = 0
        steps = 0
        computeSeconds = 0
    }

    private var computeShare: Double { seconds > 0 ? computeSeconds / seconds : 0 }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
