import Foundation
import NIOConcurrencyHelpers
import Prometheus

/// Everything the server reports about its job: the Prometheus families of DESIGN.md §5, the
/// /status document, and (when given one) the run log.
///
/// The step coordinator calls the update methods from its event loop; the HTTP server renders
/// from its own thread. The /status state sits behind one lock, held only to copy or update a
/// few values; the Prometheus series are atomics of their own. No method blocks on I/O except
/// the run log's line append (one `write(2)`, outside the lock).
public final class ServerTelemetry: Sendable {
    /// Content type of ``renderMetrics()``: the Prometheus text exposition format 0.0.4.
    public static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"
    /// How many recent trust ratios per layer /status keeps.
    public static let historyLength = 64

    /// Names of the layout's tensors, in layout order; `stepClosed`'s `layers` follow it.
    public var layerNames: [String] { layers.withLockedValue { $0.names } }
    private let metrics: TelemetryMetrics
    /// Set once at init, or by `adoptLayers` when the model arrives from a worker.
    private let layers: NIOLockedValueBox<LayerSeries>
    private let runLog: RunLog?
    private let state: NIOLockedValueBox<State>
    private let job: Job

    private struct Job: Sendable {
        var name: String
        /// The job config, verbatim, when it is one JSON object; else nil (shown as null).
        var configJSON: String?
        var model: String
        var totalSteps: Int
        var stepsPerEpoch: Int
        var workers: Int
        var version: String
    }

    private struct Worker: Sendable {
        var name: String
        var address: String
        var lastPush: Date?
    }

    private struct Layer: Sendable {
        var figures: LayerFigures?
        /// (step, trust ratio), oldest first, at most `historyLength`.
        var history: [(step: Int, trustRatio: Double)] = []
    }

    private struct Evaluation: Sendable {
        var step: Int
        var epoch: Double
        var testLoss: Double
        var accuracy: Double
    }

    private struct State: Sendable {
        var runState = RunState.waiting
        var stateDetail: String?
        var step: Int?
        var epoch: Double?
        var learningRate: Double?
        var loss: Double?
        var lastStepTime: Date?
        var lastStepDuration: Double?
        var stepsTotal = 0
        var skippedStepsTotal = 0
        var pushBytesTotal = 0
        var pulls = (sharedMemory: 0, tcp: 0)
        var evaluation: Evaluation?
        var workers: [Int: Worker] = [:]
        var missingRanks: [Int] = []
        var waitingSeconds: Double?
        var layers: [Layer]
        var rejected: [RejectReason: Int]
    }

    /// - Parameters:
    ///   - jobName: the job's name (also the default checkpoint folder).
    ///   - jobJSON: the effective job config as JSON text; /status embeds it as an object.
    ///   - model: the model or layout name (`mlp`, `resnet50-shapes`, `from-worker`).
    ///   - layerNames: the layout's tensor names, in layout order.
    ///   - totalSteps: T, the job's step count.
    ///   - stepsPerEpoch: floor(n / B), or T when the job gives `steps`.
    ///   - workers: N, the workers the job expects.
    ///   - version: the server's version, exported as `lars_build_info{version=...}`.
    ///   - runLog: where step, eval and state lines go; nil for none.
    public init(
        jobName: String, jobJSON: String, model: String, layerNames: [String], totalSteps: Int,
        stepsPerEpoch: Int, workers: Int, version: String, runLog: RunLog? = nil
    ) {
        let metrics = TelemetryMetrics(version: version)
        self.metrics = metrics
        self.layers = NIOLockedValueBox(metrics.layerSeries(layerNames))
        self.runLog = runLog
        self.job = Job(
            name: jobName, configJSON: Self.jsonObjectText(jobJSON), model: model, totalSteps: totalSteps,
            stepsPerEpoch: stepsPerEpoch, workers: workers, version: version)
        self.state = NIOLockedValueBox(
            State(
                layers: Array(repeating: Layer(), count: layerNames.count),
                rejected: Dictionary(uniqueKeysWithValues: RejectReason.allCases.map { ($0, 0) })))
    }

    // MARK: Updates (from the step coordinator)

    /// Records a closed step (a skipped one too: every closed step advances t).
    /// - Parameters:
    ///   - step: the number of the step that closed.
    ///   - epoch: progress in epochs at that step (step / steps per epoch, fractional).
    ///   - rate: the global learning rate gamma_t the step used.
    ///   - loss: the mean training loss the workers reported for it, if any; nil keeps the last.
    ///   - duration: seconds from the step's opening to its close.
    ///   - skipped: true when a non-finite gradient made the server skip the update.
    ///   - layers: per tensor, in `layerNames` order; nil for a skipped step (the last figures stay).
    public func stepClosed(
        step: Int, epoch: Double, rate: Double, loss: Double?, duration: Double, skipped: Bool,
        layers: [LayerFigures]?
    ) {
        let now = Date()
        state.withLockedValue { state in
            state.step = step
            state.epoch = epoch
            state.learningRate = rate
            if let loss { state.loss = loss }
            state.lastStepTime = now
            state.lastStepDuration = duration
            state.stepsTotal += 1
            if skipped { state.skippedStepsTotal += 1 }
            if let layers {
                for (index, figures) in zip(state.layers.indices, layers) {
                    state.layers[index].figures = figures
                    state.layers[index].history.append((step, figures.trustRatio))
                    if state.layers[index].history.count > Self.historyLength {
                        state.layers[index].history.removeFirst()
                    }
                }
            }
        }
        metrics.stepsTotal.increment()
        if skipped { metrics.skippedStepsTotal.increment() }
        metrics.stepDuration.record(duration)
        metrics.step.set(to: Double(step))
        metrics.epoch.set(to: epoch)
        metrics.learningRate.set(to: rate)
        if let loss { metrics.loss.set(to: loss) }
        metrics.lastStepTimestamp.set(to: now.timeIntervalSince1970)
        let series = self.layers.withLockedValue { $0 }
        if let layers {
            for (index, figures) in zip(series.names.indices, layers) {
                series.trustRatio[index].set(to: figures.trustRatio)
                series.weightNorm[index].set(to: figures.weightNorm)
                series.gradientNorm[index].set(to: figures.gradientNorm)
            }
        }
        runLog?.appendStep(
            step: step, epoch: epoch, rate: rate, loss: loss, skipped: skipped, duration: duration,
            layerNames: series.names, layers: layers, time: now)
    }

    /// Records the result of an evaluation on the test set.
    public func evaluated(step: Int, epoch: Double, testLoss: Double, accuracy: Double) {
        state.withLockedValue { state in
            state.evaluation = Evaluation(step: step, epoch: epoch, testLoss: testLoss, accuracy: accuracy)
        }
        metrics.testLoss.set(to: testLoss)
        metrics.testAccuracy.set(to: accuracy)
        runLog?.appendEval(step: step, epoch: epoch, testLoss: testLoss, accuracy: accuracy)
    }

    /// Counts one refused frame.
    public func rejected(_ reason: RejectReason) {
        state.withLockedValue { $0.rejected[reason, default: 0] += 1 }
        metrics.rejectedFrames[reason]?.increment()
    }

    /// Counts one answered pull, through the shared weight file or over TCP.
    public func pulled(sharedMemory: Bool) {
        state.withLockedValue { state in
            if sharedMemory { state.pulls.sharedMemory += 1 } else { state.pulls.tcp += 1 }
        }
        (sharedMemory ? metrics.pullsSharedMemory : metrics.pullsTCP).increment()
    }

    /// Counts gradient payload bytes received.
    public func pushBytes(_ count: Int) {
        state.withLockedValue { $0.pushBytesTotal += count }
        metrics.pushBytesTotal.increment(by: Int64(count))
    }

    /// A worker completed its handshake and holds `rank`.
    public func workerJoined(rank: Int, name: String, address: String) {
        let count = state.withLockedValue { state in
            state.workers[rank] = Worker(name: name, address: address, lastPush: nil)
            return state.workers.count
        }
        metrics.workersConnected.set(to: Double(count))
    }

    /// The worker holding `rank` disconnected (or was dropped).
    public func workerLeft(rank: Int) {
        let count = state.withLockedValue { state in
            state.workers[rank] = nil
            return state.workers.count
        }
        metrics.workersConnected.set(to: Double(count))
    }

    /// The model's layout became known (a model brought by a worker's INIT): creates the
    /// per-layer series. Call before the first step.
    public func adoptLayers(_ names: [String]) {
        let series = metrics.layerSeries(names)
        layers.withLockedValue { $0 = series }
        state.withLockedValue { $0.layers = Array(repeating: Layer(), count: names.count) }
    }

    /// The server continued from a checkpoint: `step` steps are already done, so /status and
    /// `lars_step` show where training stands before the first new step closes.
    public func resumed(step: Int, epoch: Double) {
        state.withLockedValue { state in
            state.step = step
            state.epoch = epoch
        }
        metrics.step.set(to: Double(step))
        metrics.epoch.set(to: epoch)
    }

    /// The worker holding `rank` completed a push at `at`.
    public func workerPushed(rank: Int, at date: Date) {
        state.withLockedValue { $0.workers[rank]?.lastPush = date }
    }

    /// The open step is past its deadline waiting for `ranks` (empty: nothing is missing).
    public func setMissing(ranks: [Int], waitingSeconds: Double) {
        state.withLockedValue { state in
            state.missingRanks = ranks.sorted()
            state.waitingSeconds = ranks.isEmpty ? nil : waitingSeconds
        }
    }

    /// The job moved to `newState`; `detail` says why, where there is more to say
    /// ("loss 61.2 above 50"). A change is also written to the run log.
    public func setState(_ newState: RunState, detail: String? = nil) {
        let (changed, step) = state.withLockedValue { state in
            let changed = state.runState != newState || state.stateDetail != detail
            state.runState = newState
            state.stateDetail = detail
            return (changed, state.step)
        }
        if changed { runLog?.appendState(newState, step: step, detail: detail) }
    }

    /// The job's current state.
    public var runState: RunState {
        state.withLockedValue { $0.runState }
    }

    // MARK: Rendering (from the HTTP server)

    /// The Prometheus text exposition of every family; serve as ``metricsContentType``.
    public func renderMetrics() -> String {
        metrics.registry.emitToString()
    }

    /// The /status document: the job, progress, workers, the per-layer table with its recent
    /// trust-ratio history, and rejected frames by reason. Every key is always present; what
    /// is not known yet is `null`.
    public func renderStatus() -> Data {
        let state = self.state.withLockedValue { $0 }
        let workers = state.workers.sorted { $0.key < $1.key }.map { rank, worker -> TelemetryJSON in
            .object([
                ("rank", .int(rank)),
                ("name", .string(worker.name)),
                ("address", .string(worker.address)),
                ("last_push_time", .optional(worker.lastPush?.timeIntervalSince1970)),
            ])
        }
        let layers = zip(layerNames, state.layers).map { name, layer -> TelemetryJSON in
            .object([
                ("name", .string(name)),
                ("weight_norm", .optional(layer.figures?.weightNorm)),
                ("gradient_norm", .optional(layer.figures?.gradientNorm)),
                ("trust_ratio", .optional(layer.figures?.trustRatio)),
                ("effective_rate", .optional(layer.figures?.effectiveRate)),
                (
                    "history",
                    .array(
                        layer.history.map {
                            .object([("step", .int($0.step)), ("trust_ratio", .number($0.trustRatio))])
                        })
                ),
            ])
        }
        let rejected = RejectReason.allCases.map { ($0.rawValue, TelemetryJSON.int(state.rejected[$0] ?? 0)) }
        let document = TelemetryJSON.object([
            (
                "job",
                .object([
                    ("name", .string(job.name)),
                    ("model", .string(job.model)),
                    ("config", job.configJSON.map(TelemetryJSON.verbatim) ?? .null),
                ])
            ),
            ("version", .string(job.version)),
            ("state", .string(state.runState.rawValue)),
            ("state_detail", .optional(state.stateDetail)),
            ("step", .optional(state.step)),
            ("total_steps", .int(job.totalSteps)),
            ("steps_per_epoch", .int(job.stepsPerEpoch)),
            ("epoch", .optional(state.epoch)),
            ("learning_rate", .optional(state.learningRate)),
            ("loss", .optional(state.loss)),
            ("test_accuracy", .optional(state.evaluation?.accuracy)),
            ("test_loss", .optional(state.evaluation?.testLoss)),
            ("eval_step", .optional(state.evaluation?.step)),
            ("steps_total", .int(state.stepsTotal)),
            ("skipped_steps_total", .int(state.skippedStepsTotal)),
            ("push_bytes_total", .int(state.pushBytesTotal)),
            ("pulls", .object([("shared_memory", .int(state.pulls.sharedMemory)), ("tcp", .int(state.pulls.tcp))])),
            ("last_step_time", .optional(state.lastStepTime?.timeIntervalSince1970)),
            ("last_step_duration", .optional(state.lastStepDuration)),
            ("workers_expected", .int(job.workers)),
            ("workers", .array(workers)),
            ("missing_ranks", .array(state.missingRanks.map(TelemetryJSON.int))),
            ("waiting_seconds", .optional(state.waitingSeconds)),
            ("layers", .array(layers)),
            ("rejected_frames", .object(rejected)),
        ])
        var text = document.text
        text += "\n"
        return Data(text.utf8)
    }

    /// `text` trimmed when it parses as one JSON object, else nil.
    private static func jsonObjectText(_ text: String) -> String? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)),
            object is [String: Any]
        else { return nil }
        return trimmed
    }
}
