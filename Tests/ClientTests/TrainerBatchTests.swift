import Core
import Foundation
import Synchronization
import Testing
import Wire

@testable import Client

/// The trainer's batches come from a gatherer thread ahead of time: every step must still
/// compute on exactly its own slice of the global batch — across epoch boundaries, and after a
/// jump to another step (a reconnect) while a gather for a different step is in flight.
@Suite(.timeLimit(.minutes(1)))
struct TrainerBatchTests {
    static let trainCount = 600
    static let globalBatch = 256
    static let workers = 2
    static let rank = 1

    /// A trainer for rank 1 of 2 on a synthetic data set, as the handshake would set it up.
    static func trainer(weightsSeed: UInt64 = 3) throws -> (Trainer, TrainingData) {
        var config = JobConfig()
        config.name = "trainer-batches"
        config.model = "mlp"
        config.globalBatch = globalBatch
        config.workers = workers
        config.steps = 12
        config.seed = 7
        let plan = BatchPlan(sampleCount: trainCount, globalBatch: globalBatch, workers: workers, seed: config.seed)
        var object = try #require(try JSONSerialization.jsonObject(with: Data(config.jsonString().utf8)) as? [String: Any])
        object["share"] = plan.share(ofRank: rank)
        object["chunk_elements"] = 1 << 20
        object["total_steps"] = 12
        let json = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        let job = try JobDescription(json: json)
        let spec = ModelSpec.mlp
        let info = SessionInfo(rank: rank, worldSize: workers, currentStep: 0, layout: WireLayout(spec.layout), job: job)
        let data = TrainingData(
            train: ImageDataset.synthetic(count: trainCount, seed: 11), test: ImageDataset.synthetic(count: 50, seed: 12))
        let trainer = try Trainer(info: info, data: data)
        try spec.initialize(seed: weightsSeed, into: trainer.weights.buffers)
        return (trainer, data)
    }

    /// Loss and gradient of step `step`'s slice for this rank, gathered directly (no trainer).
    static func reference(step: Int, trainer: Trainer, data: TrainingData) throws -> (loss: Double, gradients: [[Float]]) {
        let plan = trainer.plan
        let (epoch, batch) = plan.position(ofStep: step)
        let indices = plan.slice(ofRank: rank, batch: batch, in: plan.permutation(epoch: epoch))
        let f = data.train.featureCount
        let images = UnsafeMutableBufferPointer<Float>.allocate(capacity: indices.count * f)
        let labels = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: indices.count)
        defer { images.deallocate(); labels.deallocate() }
        data.train.gather(indices, images: images, labels: labels)
        let network = try Network(modelNamed: "mlp", maxBatch: indices.count)
        let gradients = FloatArena(layout: network.spec.layout)
        let loss = try network.lossAndGradient(
            weights: trainer.weights.buffers.map { UnsafeBufferPointer($0) }, images: UnsafeBufferPointer(images),
            labels: UnsafeBufferPointer(labels), count: indices.count, gradients: gradients.buffers).loss
        return (loss, gradients.buffers.map { Array($0) })
    }

    static func expectMatches(step: Int, trainer: Trainer, data: TrainingData) throws {
        let (loss, count) = try #require(trainer.computeGradient(step: step))
        let want = try reference(step: step, trainer: trainer, data: data)
        #expect(count == trainer.plan.share(ofRank: rank))
        // Same samples, same order, same kernels: bit for bit.
        #expect(loss == want.loss, "step \(step): loss \(loss), reference \(want.loss)")
        for (t, g) in trainer.gradientViews.enumerated() {
            // Compared here, not inside #expect, which would print both 400k-element arrays.
            let differing = zip(g, want.gradients[t]).filter { $0 != $1 }.count
            #expect(differing == 0, "step \(step): \(differing) elements of tensor \(t)'s gradient differ from its slice's")
        }
    }

    @Test func everyStepComputesOnItsOwnSliceAcrossEpochs() throws {
        let (trainer, data) = try Self.trainer()
        #expect(trainer.plan.stepsPerEpoch == 2)
        // The loop's order: ask for the step's batch while the pull is out, wait for it, compute
        // (which starts the next step's gather on the gatherer thread).
        for step in 0..<7 {
            trainer.prefetch(step: step)
            _ = trainer.awaitBatch(step: step)
            try Self.expectMatches(step: step, trainer: trainer, data: data)
        }
    }

    @Test func aJumpWhileAGatherIsInFlightStillGetsTheRightSlice() throws {
        let (trainer, data) = try Self.trainer()
        try Self.expectMatches(step: 0, trainer: trainer, data: data)   // leaves step 1 in flight
        trainer.prefetch(step: 9)                                        // a reconnect asked for 9...
        try Self.expectMatches(step: 4, trainer: trainer, data: data)   // ...the server was at 4
        try Self.expectMatches(step: 5, trainer: trainer, data: data)
        try Self.expectMatches(step: 1, trainer: trainer, data: data)   // back to an older step
    }

    /// With no patience and both cores kept busy by normal-priority threads (so the idle-priority
    /// gatherer hardly runs), the training thread copies batches itself — and every step still
    /// gets exactly its own slice, whichever of the two made the copy.
    @Test func aStarvedGathererIsTakenOverAndEveryStepStaysExact() throws {
        let (trainer, data) = try Self.trainer()
        trainer.gatherPatience = .zero
        let spinning = Spinners(count: 3)
        defer { spinning.stop() }
        for step in 0..<7 {
            trainer.prefetch(step: step)
            _ = trainer.awaitBatch(step: step)
            try Self.expectMatches(step: step, trainer: trainer, data: data)
        }
    }

    /// A gather asked to wait before it starts (as the next step's does) does not hold up a
    /// step that needs the batch sooner: the training thread copies it and gets the step's own
    /// slice, and the trainer's end cuts the wait short (a fresh trainer per step, so that each
    /// step's first gather is the delayed one).
    @Test func aDelayedGatherNeededEarlyIsCopiedAndStaysExact() throws {
        for step in [0, 3, 8] {
            let (trainer, data) = try Self.trainer()
            let started = ContinuousClock.now
            trainer.prefetch(step: step, after: .seconds(600))
            _ = trainer.awaitBatch(step: step)
            try Self.expectMatches(step: step, trainer: trainer, data: data)
            #expect(started.duration(to: .now) < .seconds(60))
        }
    }
}

/// Threads that spin at normal priority until stopped.
final class Spinners: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private let done = DispatchGroup()

    init(count: Int) {
        for _ in 0..<count {
            done.enter()
            Thread { [self] in
                var x = 0.0
                while lock.withLock({ running }) {
                    for i in 0..<10_000 { x += Double(i) }
                }
                _ = x
                done.leave()
            }.start()
        }
    }

    func stop() {
        lock.withLock { running = false }
        done.wait()
    }
}

/// The gatherer on its own: a bounded wait gives up on a job that does not finish, and an
/// abandoned job is told to stop at its next check.
@Suite(.timeLimit(.minutes(1)))
struct BatchGathererTests {
    @Test func boundedWaitAndAbandon() {
        let gatherer = BatchGatherer()
        defer { gatherer.stop() }
        let started = DispatchSemaphore(value: 0)
        let sawStop = DispatchSemaphore(value: 0)
        gatherer.submit { shouldStop in
            started.signal()
            while !shouldStop() { usleep(100) }
            sawStop.signal()
        }
        started.wait()
        #expect(!gatherer.wait(upTo: .milliseconds(20)), "a job that cannot finish was reported done")
        #expect(!gatherer.isIdle)
        gatherer.abandon()
        sawStop.wait()
        #expect(gatherer.wait(upTo: .seconds(10)))
        #expect(gatherer.isIdle)

        // A fresh job after an abandoned one is not told to stop.
        let finished = DispatchSemaphore(value: 0)
        gatherer.submit { shouldStop in
            if !shouldStop() { finished.signal() }
        }
        finished.wait()
        #expect(gatherer.wait(upTo: .seconds(10)))
    }

    /// A job submitted with a delay starts no sooner, and counts as running meanwhile; one
    /// abandoned while it waits starts at once and is told to stop.
    @Test func aDelayedJobWaitsUnlessAbandoned() {
        let gatherer = BatchGatherer()
        defer { gatherer.stop() }
        let submitted = ContinuousClock.now
        let started = Mutex<ContinuousClock.Instant?>(nil)
        gatherer.submit(after: .milliseconds(100)) { _ in started.withLock { $0 = ContinuousClock.now } }
        #expect(!gatherer.isIdle)
        #expect(gatherer.wait(upTo: .seconds(10)))
        let waited = started.withLock { $0 }.map { submitted.duration(to: $0) }
        #expect(waited != nil && waited! >= .milliseconds(100), "started after \(String(describing: waited))")

        let sawStop = DispatchSemaphore(value: 0)
        let abandonedAt = ContinuousClock.now
        gatherer.submit(after: .seconds(600)) { shouldStop in
            if shouldStop() { sawStop.signal() }
        }
        gatherer.abandon()
        #expect(sawStop.wait(timeout: .now() + 10) == .success, "abandon did not end the wait")
        #expect(abandonedAt.duration(to: .now) < .seconds(10))
        #expect(gatherer.wait(upTo: .seconds(10)))
    }

    /// A job submitted while the one before waits out its delay ends that wait: the one before
    /// runs at once (the trainer submits only when its rows are all copied), then the new one.
    @Test func theNextSubmitEndsADelay() {
        let gatherer = BatchGatherer()
        defer { gatherer.stop() }
        let ran = Mutex<[Int]>([])
        gatherer.submit(after: .seconds(600)) { _ in ran.withLock { $0.append(1) } }
        let deadline = ContinuousClock.now + .seconds(10)
        while !gatherer.canSubmit && ContinuousClock.now < deadline { usleep(1000) }   // taken, waiting
        #expect(gatherer.canSubmit)
        gatherer.submit { _ in ran.withLock { $0.append(2) } }
        #expect(gatherer.wait(upTo: .seconds(10)), "the first job's delay held up the second")
        #expect(ran.withLock { $0 } == [1, 2])
    }

    @Test func stopReturnsOnlyOnceTheThreadIsIdle() {
        let gatherer = BatchGatherer()
        let release = DispatchSemaphore(value: 0)
        gatherer.submit { _ in release.wait() }
        release.signal()
        gatherer.stop()
        #expect(gatherer.isIdle)
    }
}
