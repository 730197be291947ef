import Client
import Core
import Foundation
import Testing
import Wire

@testable import ParamServer

/// The synchronous step over real loopback sockets: client sessions pull, push known gradients,
/// and the weights they pull next must be Core's LARS applied to the sample-weighted average.
@Suite("Step integration", .serialized, .timeLimit(.minutes(2)))
struct StepIntegrationTests {
    /// Two workers with unequal sample counts, three steps, a grid of several chunks per tensor:
    /// with --deterministic the pulled weights equal the reference bit for bit, whether they
    /// come through the shared weight file or over TCP.
    @Test(arguments: [true, false])
    func deterministicStepsMatchCoreLARSBitForBit(sharedWeights: Bool) async throws {
        let job = ServerHarness.job(steps: 3, workers: 2)
        let h = try await ServerHarness(job: job, deterministic: true)
        let a = h.session("a", sharedWeights: sharedWeights), b = h.session("b", sharedWeights: sharedWeights)
        let ia = try await a.connect(), ib = try await b.connect()
        #expect(Set([ia.rank, ib.rank]) == [0, 1])
        let path = try #require(h.server.coordinator?.sharedWeights?.path)
        #expect(ia.sharedWeightsPath == (sharedWeights ? path : nil))
        #expect(ib.sharedWeightsPath == (sharedWeights ? path : nil))
        let wa = Tensors(h.layout), wb = Tensors(h.layout)
        _ = try await a.pull(step: 0, into: wa.storage)
        _ = try await b.pull(step: 0, into: wb.storage)
        #expect(wa.values == wb.values)
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: wa)
        let samples = [ia.rank: 20, ib.rank: 44]
        for t in 0..<3 {
            let ga = Tensors(h.layout), gb = Tensors(h.layout)
            ga.fill(seed: UInt64(100 + t))
            gb.fill(seed: UInt64(200 + t), scale: 0.02)
            async let ra = a.push(step: t, sampleCount: samples[ia.rank]!, loss: 2.0, gradients: ga.readOnly)
            async let rb = b.push(step: t, sampleCount: samples[ib.rank]!, loss: 2.5, gradients: gb.readOnly)
            let (resultA, resultB) = try await (ra, rb)
            #expect(resultA == .accepted)
            #expect(resultB == .accepted)
            // Rank order: rank 0's contribution first.
            let ordered = ia.rank == 0
                ? [(samples[ia.rank]!, ga), (samples[ib.rank]!, gb)] : [(samples[ib.rank]!, gb), (samples[ia.rank]!, ga)]
            try reference.step(t, contributions: ordered.map { (samples: $0.0, gradient: $0.1) })
            let pulled = try await a.pull(step: t + 1, into: wa.storage)
            #expect(pulled.step == t + 1)
            #expect(wa.values == reference.weights.values, "weights after step \(t) differ from Core's LARS")
        }
        #expect(h.metric("lars_steps_total") == 3)
        // Every pull of `a` (W_0 to W_3) came through the file, none again over TCP; or none did.
        let counted = await a.sharedPulls()
        #expect(counted.read == (sharedWeights ? 4 : 0))
        #expect(counted.fellBack == 0)
        // The server counts the same: a pulled W_0 to W_3 and b only W_0, five pulls in all.
        let viaShared = h.metric(#"lars_pulls_total{via="shared_memory"}"#) ?? -1
        let viaTCP = h.metric(#"lars_pulls_total{via="tcp"}"#) ?? -1
        #expect(viaShared + viaTCP == 5)
        #expect(viaShared == (sharedWeights ? 5 : 0))
        let loss = try #require(h.metric("lars_loss"))
        #expect(abs(loss - (20 * 2.0 + 44 * 2.5) / 64) < 1e-12)
        await a.close()
        await b.close()
        await h.finish()
    }

    /// Workers on the server's host offer their gradient files (SHARED_GRADIENTS) and push
    /// from them: every chunk goes as PUSH_SHARED, and the weights still equal Core's LARS bit
    /// for bit. A file that could be cut short under the server's mapping (a named file, not a
    /// sealed memfd) is refused, and that worker's pushes go in PUSH_CHUNK frames.
    @Test func gradientsReadFromTheWorkersFilesMatchCoreLARSBitForBit() async throws {
        let job = ServerHarness.job(steps: 2, workers: 2)
        let h = try await ServerHarness(job: job, deterministic: true)
        let a = h.session("a"), b = h.session("b")
        let ia = try await a.connect(), ib = try await b.connect()
        let weightsPath = try #require(ia.sharedWeightsPath)
        let directory = (weightsPath as NSString).deletingLastPathComponent
        let fa = try SharedWeightFile.createSealed(elements: h.layout.parameterCount)
        let fb = try SharedWeightFile.create(elements: h.layout.parameterCount, directory: directory)
        defer { fb.remove() }
        #expect(await a.shareGradients(fa))
        #expect(!(await b.shareGradients(fb)), "a file that could shrink was mapped")
        let counts = h.layout.tensors.map(\.count)
        let (va, vb) = (fa.tensors(inSlot: 0, counts: counts), fb.tensors(inSlot: 0, counts: counts))
        let w = Tensors(h.layout)
        _ = try await a.pull(step: 0, into: w.storage)
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w)
        for t in 0..<2 {
            let (ga, gb) = Self.gradients(h.layout, seeds: (UInt64(300 + t), UInt64(400 + t)), into: va, vb)
            // One after the other: a push returns once the server has read it, before the close.
            // Worker a's pull of the next step goes ahead of its PUSH_END, as a worker's does, so
            // it waits at the server when b's push closes the step: the update then writes
            // W_{t+1} straight into the shared file's slot, which a reads.
            let pa = try await a.beginPush(step: t, sampleCount: 24, gradients: va.map { UnsafeBufferPointer($0) })
            let next = pa.pullNext(t + 1, into: w.storage)
            #expect(try await pa.finish(loss: 1.0) == .accepted)
            #expect(try await b.push(step: t, sampleCount: 40, loss: 1.5, gradients: vb.map { UnsafeBufferPointer($0) }) == .accepted)
            let ordered = ia.rank == 0 ? [(24, ga), (40, gb)] : [(40, gb), (24, ga)]
            try reference.step(t, contributions: ordered.map { (samples: $0.0, gradient: $0.1) })
            #expect(try await next.step() == t + 1)
            await next.settle()
            #expect(w.values == reference.weights.values, "weights after step \(t) differ from Core's LARS")
            let file = try #require(h.server.coordinator?.sharedWeights)
            let inFile = Tensors(h.layout)
            #expect((0..<2).contains { file.read(step: UInt64(t + 1), slot: UInt32($0), into: inFile.storage) })
            #expect(inFile.values == reference.weights.values, "the shared file's slot differs from Core's LARS")
        }
        let chunks = h.layout.tensors.reduce(0) { $0 + ($1.count + 65_535) / 65_536 }   // the harness's grid
        #expect(await a.sharedPushChunks() == 2 * chunks)
        #expect(await b.sharedPushChunks() == 0)
        _ = ib
        await a.close()
        await b.close()
        await h.finish()
    }

    /// Without --deterministic the server adds chunks as they arrive. Every worker pushes from
    /// its gradient file, one after the other, so the first's values are scaled into an empty
    /// sum, a middle one's added scaled, and the last's added scaled and turned into the mean in
    /// the same pass (one worker: scaled, then the mean): the weights still equal Core's LARS
    /// over the contributions in arrival order, bit for bit. A NaN in the last worker's file
    /// skips the step (weights unchanged, counted), as over TCP.
    @Test(arguments: [1, 2, 3])
    func gradientFilesAddedOnArrivalMatchCoreLARSBitForBit(workers: Int) async throws {
        let samples = [24, 40, 32].prefix(workers)
        let job = ServerHarness.job(steps: 3, workers: workers, globalBatch: samples.reduce(0, +))
        let h = try await ServerHarness(job: job)
        let sessions = (0..<workers).map { h.session("w\($0)", rank: $0) }
        var views: [[UnsafeMutableBufferPointer<Float>]] = []
        var files: [SharedWeightFile] = []
        for s in sessions {
            _ = try await s.connect()
            let f = try SharedWeightFile.createSealed(elements: h.layout.parameterCount)
            #expect(await s.shareGradients(f))
            files.append(f)
            views.append(f.tensors(inSlot: 0, counts: h.layout.tensors.map(\.count)))
        }
        let w = Tensors(h.layout)
        _ = try await sessions[0].pull(step: 0, into: w.storage)
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w)
        for t in 0..<3 {
            var contributions: [(samples: Int, gradient: Tensors)] = []
            for (r, s) in sessions.enumerated() {
                let g = Tensors(h.layout)
                g.fill(seed: UInt64(500 + 10 * t + r), scale: r == 0 ? 1 : 0.02)
                // In the SIMD body of fc1.weight.
                if t == 2 && r == workers - 1 { g.storage[0][3] = .nan }
                for (k, v) in views[r].enumerated() { _ = v.update(fromContentsOf: g.storage[k]) }
                contributions.append((samples[r], g))
                // A push returns once the server has read it whole: the next one's values go in after.
                let result = try await s.push(step: t, sampleCount: samples[r], loss: 1.0, gradients: views[r].map { UnsafeBufferPointer($0) })
                #expect(result == .accepted)
            }
            let before = w.values
            #expect(try await sessions[0].pull(step: t + 1, into: w.storage).step == t + 1)
            if t < 2 {
                try reference.step(t, contributions: contributions)
                #expect(w.values == reference.weights.values, "weights after step \(t) differ from Core's LARS")
            } else {
                #expect(w.values == before, "a step with a NaN pushed through a gradient file changed the weights")
                #expect(h.metric("lars_skipped_steps_total") == 1)
                #expect(h.metric(#"lars_rejected_frames_total{reason="non_finite"}"#) == 1)
            }
        }
        let chunks = h.layout.tensors.reduce(0) { $0 + ($1.count + 65_535) / 65_536 }   // the harness's grid
        for s in sessions {
            #expect(await s.sharedPushChunks() == 3 * chunks)
            await s.close()
        }
        _ = files
        await h.finish()
    }

    /// A server started with --no-shared-weights names no file in WELCOME: a worker that would
    /// pull through one pulls over TCP, and PULL_SHARED is answered like PULL, with WEIGHTS.
    @Test func withoutASharedFileEveryPullGoesOverTCP() async throws {
        let job = ServerHarness.job(steps: 1, workers: 2)
        let h = try await ServerHarness(job: job, sharedWeights: false)
        let a = h.session("a", rank: 0)
        let ia = try await a.connect()
        #expect(ia.job.sharedWeights == nil)
        #expect(ia.sharedWeightsPath == nil)
        let w = Tensors(h.layout)
        _ = try await a.pull(step: 0, into: w.storage)

        let raw = try RawWorker(port: h.server.port)
        try raw.send(.hello(Hello(wantedRank: 1, workerName: "raw")))
        _ = raw.receive { if case .welcome = $0 { true } else { false } }
        try raw.send(.pullShared(step: 0))
        let answer = try #require(raw.receiveWeights(counts: h.layout.tensors.map(\.count)))
        #expect(answer.step == 0)
        let same = answer.values == w.values
        #expect(same)
        raw.close()
        await a.close()
        await h.finish()
    }

    /// Three workers, arrival order free: the weights match the reference within Float32
    /// rounding of a different summation order (1e-6 of max|w|).
    @Test func concurrentStepsMatchWithinRounding() async throws {
        let job = ServerHarness.job(steps: 2, workers: 3, globalBatch: 96)
        let h = try await ServerHarness(job: job)
        let sessions = (0..<3).map { h.session("w\($0)", rank: $0) }
        for s in sessions { _ = try await s.connect() }
        let w = Tensors(h.layout)
        _ = try await sessions[0].pull(step: 0, into: w.storage)
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w)
        for t in 0..<2 {
            let grads = (0..<3).map { r -> Tensors in
                let g = Tensors(h.layout)
                g.fill(seed: UInt64(1000 * t + r))
                return g
            }
            try await withThrowingTaskGroup(of: PushResult.self) { group in
                for r in 0..<3 {
                    group.addTask { try await sessions[r].push(step: t, sampleCount: 32, loss: 1, gradients: grads[r].readOnly) }
                }
                for try await result in group { #expect(result == .accepted) }
            }
            try reference.step(t, contributions: grads.map { (samples: 32, gradient: $0) })
            _ = try await sessions[1].pull(step: t + 1, into: w.storage)
            let maxW = reference.weights.values.flatMap { $0 }.map(abs).max() ?? 1
            let err = zip(w.values.flatMap { $0 }, reference.weights.values.flatMap { $0 }).map { abs($0 - $1) }.max() ?? 0
            #expect(err <= 1e-6 * maxW, "max error \(err) vs max|w| \(maxW)")
        }
        for s in sessions { await s.close() }
        await h.finish()
    }

    /// A NaN in one worker's gradient: the step is skipped as a whole (weights unchanged,
    /// counted), and the next step trains normally.
    @Test func nonFiniteGradientSkipsTheStep() async throws {
        let job = ServerHarness.job(steps: 3, workers: 2)
        let h = try await ServerHarness(job: job, deterministic: true)
        let a = h.session("a", rank: 0), b = h.session("b", rank: 1)
        _ = try await a.connect()
        _ = try await b.connect()
        let w0 = Tensors(h.layout), w1 = Tensors(h.layout)
        _ = try await a.pull(step: 0, into: w0.storage)
        let ga = Tensors(h.layout), gb = Tensors(h.layout)
        ga.fill(seed: 1)
        gb.fill(seed: 2)
        gb.storage[2][17] = .nan
        try await pushTogether(step: 0, a, ga, b, gb, samples: 32)
        let pulled = try await a.pull(step: 1, into: w1.storage)
        #expect(pulled.step == 1)
        #expect(w1.values == w0.values, "a skipped step must leave the weights unchanged")
        #expect(h.metric("lars_skipped_steps_total") == 1)
        #expect(h.metric(#"lars_rejected_frames_total{reason="non_finite"}"#) == 1)
        // The next step is normal and uses unchanged momentum (zero): equal to a fresh reference.
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w0)
        gb.fill(seed: 3)
        try await pushTogether(step: 1, a, ga, b, gb, samples: 32)
        try reference.step(1, contributions: [(32, ga), (32, gb)])
        _ = try await b.pull(step: 2, into: w1.storage)
        #expect(w1.values == reference.weights.values)
        #expect(h.metric("lars_steps_total") == 2)
        await a.close()
        await b.close()
        await h.finish()
    }

    /// Backup workers: with K = 2 of N = 3 the step closes at two pushes; the third, late,
    /// gets STEP_CLOSED and is counted.
    /// A deterministic job of 3 workers with a quorum of 2, sessions for ranks 0..<`sessions`
    /// connected, and W_0 as rank 0 pulled it.
    func quorumOfTwoOfThree(sessions: Int) async throws -> (JobConfig, ServerHarness, [ClientSession], Tensors) {
        let job = ServerHarness.job(steps: 3, workers: 3, minWorkers: 2, globalBatch: 96)
        let h = try await ServerHarness(job: job, deterministic: true)
        let s = (0..<sessions).map { h.session("w\($0)", rank: $0) }
        for x in s { _ = try await x.connect() }
        let w = Tensors(h.layout)
        _ = try await s[0].pull(step: 0, into: w.storage)
        return (job, h, s, w)
    }

    @Test func backupWorkersCloseAtQuorumAndLatePushesGetStepClosed() async throws {
        let (job, h, s, w) = try await quorumOfTwoOfThree(sessions: 3)
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w)
        let g = Tensors.filled(h.layout, seeds: 10, 11, 12)
        let (g0, g1, g2) = (g[0], g[1], g[2])
        #expect(try await s[0].push(step: 0, sampleCount: 32, loss: 1, gradients: g0.readOnly) == .accepted)
        #expect(try await s[1].push(step: 0, sampleCount: 32, loss: 1, gradients: g1.readOnly) == .accepted)
        _ = try await s[0].pull(step: 1, into: w.storage)
        try reference.step(0, contributions: [(32, g0), (32, g1)])
        #expect(w.values == reference.weights.values, "the step closes on ranks 0 and 1 alone")
        let late = try await s[2].push(step: 0, sampleCount: 32, loss: 1, gradients: g2.readOnly)
        #expect(late == .stepClosed(current: 1))
        #expect(h.metric(#"lars_rejected_frames_total{reason="step_closed"}"#) == 1)
        for x in s { await x.close() }
        await h.finish()
    }

    /// A backup worker streams: its PUSH_BEGIN went out before the quorum closed the step
    /// (workers send it before their forward pass), and the close answers it STEP_CLOSED at
    /// once. The stream says so (`isClosed`, which the worker's forward/backward asks between
    /// layers), its `finish` reports the step closed instead of `.accepted`, nothing it sends
    /// reaches the weights, and the rejection is counted.
    @Test func aBackupWorkersStreamedPushIsToldTheStepClosed() async throws {
        let (job, h, s, w) = try await quorumOfTwoOfThree(sessions: 3)
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w)
        let g = Tensors.filled(h.layout, seeds: 40, 41, 42)
        let (g0, g1, g2) = (g[0], g[1], g[2])
        let stream = try await s[2].beginPush(step: 0, sampleCount: 32, gradients: g2.readOnly)
        #expect(!stream.isClosed)
        #expect(try await s[0].push(step: 0, sampleCount: 32, loss: 1, gradients: g0.readOnly) == .accepted)
        #expect(try await s[1].push(step: 0, sampleCount: 32, loss: 1, gradients: g1.readOnly) == .accepted)
        // What a worker's forward/backward asks between layers: it stops once this is true.
        let deadline = ContinuousClock.now + .seconds(10)
        while !stream.isClosed && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(stream.isClosed)
        #expect(try await stream.finish(loss: 1) == .stepClosed(current: 1))
        #expect(h.metric(#"lars_rejected_frames_total{reason="step_closed"}"#) == 1)
        _ = try await s[2].pull(step: 1, into: w.storage)
        try reference.step(0, contributions: [(32, g0), (32, g1)])
        let exact = w.values == reference.weights.values
        #expect(exact, "the step closes on ranks 0 and 1 alone")
        for x in s { await x.close() }
        await h.finish()
    }

    /// A reader that lags: rank 2 asks for W_0 three times (8 MB, more than the server's socket
    /// buffer of at most 4 MB takes) and stops reading, so W_0 is still queued in the server when
    /// steps 0 and 1 close on ranks 0 and 1 (quorum 2 of 3). Step 1 writes W_2 into the weight
    /// set that holds W_0; the lagging reader must still get W_0 exactly, three times, and the
    /// others W_2 exactly as Core's LARS computes it.
    @Test func aLaggingReaderKeepsItsWeightsWhileTheirSetIsWrittenAgain() async throws {
        let (job, h, s, w) = try await quorumOfTwoOfThree(sessions: 2)
        let initial = w.values

        let lagging = try RawWorker(port: h.server.port, receiveBuffer: 4096)
        try lagging.send(.hello(Hello(wantedRank: 2, workerName: "lagging")))
        _ = lagging.receive { if case .welcome = $0 { true } else { false } }
        for _ in 0..<3 { try lagging.send(.pull(step: 0)) }

        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w)
        let g0 = Tensors(h.layout), g1 = Tensors(h.layout)
        for t in 0..<2 {
            g0.fill(seed: UInt64(20 + t))
            g1.fill(seed: UInt64(30 + t))
            async let r0 = s[0].push(step: t, sampleCount: 32, loss: 1, gradients: g0.readOnly)
            async let r1 = s[1].push(step: t, sampleCount: 32, loss: 1, gradients: g1.readOnly)
            #expect(try await (r0, r1) == (.accepted, .accepted))
            try reference.step(t, contributions: [(32, g0), (32, g1)])
            _ = try await s[0].pull(step: t + 1, into: w.storage)
        }
        let exact = w.values == reference.weights.values
        #expect(exact, "W_2 from the set that held W_0")

        let late = try #require(lagging.receiveWeights(counts: h.layout.tensors.map(\.count), answers: 3))
        for (copy, answer) in late.enumerated() {
            #expect(answer.step == 0)
            let intact = answer.values == initial  // compared first: a failed #expect would print 2.7 MB of floats
            #expect(intact, "copy \(copy) of the lagging reader's W_0 was overwritten by a later step")
        }
        lagging.close()
        for x in s { await x.close() }
        await h.finish()
    }

    /// Finite contributions whose sum overflows Float: no chunk is poisoned, the optimizer's
    /// own finite check refuses the mean, and the step is skipped with W_t still published.
    @Test func anOverflowingSumSkipsTheStepInTheOptimizer() async throws {
        let job = ServerHarness.job(steps: 3, workers: 2, globalBatch: 8)
        let h = try await ServerHarness(job: job)
        let a = h.session("a", rank: 0), b = h.session("b", rank: 1)
        _ = try await a.connect()
        _ = try await b.connect()
        let w0 = Tensors(h.layout), w1 = Tensors(h.layout)
        _ = try await a.pull(step: 0, into: w0.storage)
        let big = Tensors(h.layout)
        big.fill(seed: 5)
        big.storage[1][3] = 3e38
        try await pushTogether(step: 0, a, big, b, big, samples: 1)
        let pulled = try await b.pull(step: 1, into: w1.storage)
        #expect(pulled.step == 1)
        #expect(w1.values == w0.values, "a skipped step must leave the weights unchanged")
        #expect(h.metric("lars_skipped_steps_total") == 1)
        #expect(h.metric(#"lars_rejected_frames_total{reason="non_finite"}"#) ?? 0 == 0, "no chunk was poisoned")

        // The next step reads the set that still holds W_0 (momentum still zero).
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w0)
        let ga = Tensors(h.layout), gb = Tensors(h.layout)
        ga.fill(seed: 6)
        gb.fill(seed: 7)
        try await pushTogether(step: 1, a, ga, b, gb, samples: 4)
        try reference.step(1, contributions: [(4, ga), (4, gb)])
        _ = try await a.pull(step: 2, into: w1.storage)
        let maxW = reference.weights.values.flatMap { $0 }.map(abs).max() ?? 1
        let err = zip(w1.values.flatMap { $0 }, reference.weights.values.flatMap { $0 }).map { abs($0 - $1) }.max() ?? 0
        #expect(err <= 1e-6 * maxW, "weights after the step that followed the skip: max error \(err)")
        await a.close()
        await b.close()
        await h.finish()
    }

    /// Two workers' gradients drawn from `seeds` (the second 50 times smaller), written into the
    /// buffers they push from (their gradient files' slot 0).
    static func gradients(
        _ layout: Layout, seeds: (UInt64, UInt64), into va: [UnsafeMutableBufferPointer<Float>], _ vb: [UnsafeMutableBufferPointer<Float>]
    ) -> (Tensors, Tensors) {
        let ga = Tensors(layout), gb = Tensors(layout)
        ga.fill(seed: seeds.0)
        gb.fill(seed: seeds.1, scale: 0.02)
        for (k, v) in va.enumerated() { _ = v.update(fromContentsOf: ga.storage[k]) }
        for (k, v) in vb.enumerated() { _ = v.update(fromContentsOf: gb.storage[k]) }
        return (ga, gb)
    }

    /// Pushes from both sessions at once (with two workers a step closes only when both are in).
    func pushTogether(step: Int, _ a: ClientSession, _ ga: Tensors, _ b: ClientSession, _ gb: Tensors, samples: Int) async throws {
        async let ra = a.push(step: step, sampleCount: samples, loss: 1, gradients: ga.readOnly)
        async let rb = b.push(step: step, sampleCount: samples, loss: 1, gradients: gb.readOnly)
        _ = try await (ra, rb)
    }
}
