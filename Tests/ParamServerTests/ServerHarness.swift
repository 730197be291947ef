import Client
import Core
import Foundation
import Logging
import NIOCore
import Wire

@testable import ParamServer

/// An in-process server on ephemeral ports, with helpers to drive it from real client
/// sessions over loopback and to compute what its weights must be.
final class ServerHarness: @unchecked Sendable {
    let server: ParameterServer
    let directory: String
    let layout: Layout

    /// A `steps` job for `model` with `workers` workers.
    static func job(
        model: String = "mlp", steps: Int = 3, workers: Int = 2, minWorkers: Int? = nil, globalBatch: Int = 64,
        optimizer: OptimizerConfig = OptimizerConfig(), deadline: Double = 30
    ) -> JobConfig {
        var job = JobConfig()
        job.name = "test"
        job.model = model
        job.steps = steps
        job.workers = workers
        job.minWorkers = minWorkers
        job.globalBatch = globalBatch
        job.optimizer = optimizer
        job.schedule.peakRate = 0.5
        job.schedule.warmupEpochs = 0.5
        job.stepDeadlineSeconds = deadline
        return job
    }

    init(
        job: JobConfig, deterministic: Bool = false, chunkElements: Int = 1 << 16, authToken: String? = nil, sharedWeights: Bool = true
    ) async throws {
        directory = NSTemporaryDirectory() + "lars-server-test-\(UUID().uuidString)"
        var options = ServerOptions()
        options.port = 0
        options.httpPort = 0
        options.checkpointDir = directory
        options.deterministic = deterministic
        options.chunkElements = chunkElements
        options.finalEvalTimeout = 300
        options.authToken = authToken
        options.sharedWeights = sharedWeights
        // The file goes to the test's own directory, so the tests need no /dev/shm.
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        options.sharedWeightsDirectory = directory
        var logger = Logger(label: "test-server")
        logger.logLevel = .warning
        server = try ParameterServer(job: job, options: options, logger: logger)
        layout = (try? ModelSpec.named(job.model).layout) ?? Layout([])
        try await server.start()
    }

    func session(_ name: String, rank: Int? = nil, token: String = "", sharedWeights: Bool = true) -> ClientSession {
        var logger = Logger(label: "test-client-\(name)")
        logger.logLevel = .critical
        return ClientSession(
            host: "127.0.0.1", port: server.port,
            options: ClientOptions(
                workerName: name, token: token, wantedRank: rank, connectTimeout: .seconds(10), reconnectTimeout: .seconds(10),
                sharedWeights: sharedWeights),
            logger: logger)
    }

    /// /status as a JSON object.
    func status() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: server.telemetry.renderStatus()) as? [String: Any] ?? [:]
    }

    /// The value of one metric line, e.g. `lars_skipped_steps_total`.
    func metric(_ line: String) -> Double? {
        for l in server.telemetry.renderMetrics().split(separator: "\n") where l.hasPrefix(line + " ") {
            let v = l.dropFirst(line.count + 1)
            return v == "nan" ? .nan : Double(v)
        }
        return nil
    }

    func finish() async {
        server.shutdown()
        _ = try? await server.run()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Float32 tensors in layout order, owned by a test. Keep the object alive while anything
/// writes through `storage`.
final class Tensors: @unchecked Sendable {
    let storage: [UnsafeMutableBufferPointer<Float>]

    init(_ layout: Layout) {
        storage = layout.tensors.map {
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.count)
            b.initialize(repeating: 0)
            return b
        }
    }

    deinit { storage.forEach { $0.deallocate() } }

    var readOnly: [UnsafeBufferPointer<Float>] { storage.map { UnsafeBufferPointer($0) } }
    var values: [[Float]] { storage.map(Array.init) }

    /// Fills with a seeded gradient-like pattern in [-scale, scale].
    func fill(seed: UInt64, scale: Float = 0.01) {
        var g = SplitMix64(seed: seed)
        for b in storage { for i in b.indices { b[i] = g.nextFloat(in: -scale...scale) } }
    }

    /// One filled set per seed.
    static func filled(_ layout: Layout, seeds: UInt64...) -> [Tensors] {
        seeds.map { seed in
            let t = Tensors(layout)
            t.fill(seed: seed)
            return t
        }
    }

    func copy(from other: Tensors) {
        for (d, s) in zip(storage, other.storage) { _ = d.update(from: s) }
    }
}

/// What the server must compute: the sample-weighted mean of the contributions (summed in the
/// order given, as `--deterministic` does in rank order), then Core's LARS step.
struct ReferenceTrainer {
    let optimizer: LARSOptimizer
    let schedule: LearningRateSchedule
    let weights: Tensors
    let momenta: Tensors

    init(job: JobConfig, layout: Layout, initial: Tensors) throws {
        optimizer = try LARSOptimizer(config: job.optimizer, layout: layout, threads: 1)
        schedule = try LearningRateSchedule(config: job.schedule, stepsPerEpoch: job.steps!, totalSteps: job.steps!)
        weights = Tensors(layout)
        weights.copy(from: initial)
        momenta = Tensors(layout)
    }

    func step(_ t: Int, contributions: [(samples: Int, gradient: Tensors)]) throws {
        let mean = Tensors(optimizer.layout)
        let total = Float(contributions.reduce(0) { $0 + $1.samples })
        for (k, buffer) in mean.storage.enumerated() {
            for i in buffer.indices {
                var acc = Float(contributions[0].samples) * contributions[0].gradient.storage[k][i]
                for c in contributions.dropFirst() { acc += Float(c.samples) * c.gradient.storage[k][i] }
                buffer[i] = acc / total
            }
        }
        try optimizer.step(rate: schedule.rate(at: t), weights: weights.storage, gradients: mean.readOnly, momenta: momenta.storage)
    }
}
