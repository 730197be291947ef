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
    /// with --deterministic the pulled weights equal the reference bit for bit.
    @Test func deterministicStepsMatchCoreLARSBitForBit() async throws {
        let job = ServerHarness.job(steps: 3, workers: 2)
        let h = try await ServerHarness(job: job, deterministic: true)
        let a = h.session("a"), b = h.session("b")
        let ia = try await a.connect(), ib = try await b.connect()
        #expect(Set([ia.rank, ib.rank]) == [0, 1])
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
        let loss = try #require(h.metric("lars_loss"))
        #expect(abs(loss - (20 * 2.0 + 44 * 2.5) / 64) < 1e-12)
        await a.close()
        await b.close()
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
        async let ra = a.push(step: 0, sampleCount: 32, loss: 1, gradients: ga.readOnly)
        async let rb = b.push(step: 0, sampleCount: 32, loss: 1, gradients: gb.readOnly)
        _ = try await (ra, rb)
        let pulled = try await a.pull(step: 1, into: w1.storage)
        #expect(pulled.step == 1)
        #expect(w1.values == w0.values, "a skipped step must leave the weights unchanged")
        #expect(h.metric("lars_skipped_steps_total") == 1)
        #expect(h.metric(#"lars_rejected_frames_total{reason="non_finite"}"#) == 1)
        // The next step is normal and uses unchanged momentum (zero): equal to a fresh reference.
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w0)
        gb.fill(seed: 3)
        async let ra2 = a.push(step: 1, sampleCount: 32, loss: 1, gradients: ga.readOnly)
        async let rb2 = b.push(step: 1, sampleCount: 32, loss: 1, gradients: gb.readOnly)
        _ = try await (ra2, rb2)
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
    @Test func backupWorkersCloseAtQuorumAndLatePushesGetStepClosed() async throws {
        let job = ServerHarness.job(steps: 3, workers: 3, minWorkers: 2, globalBatch: 96)
        let h = try await ServerHarness(job: job, deterministic: true)
        let s = (0..<3).map { h.session("w\($0)", rank: $0) }
        for x in s { _ = try await x.connect() }
        let w = Tensors(h.layout)
        _ = try await s[0].pull(step: 0, into: w.storage)
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w)
        let g0 = Tensors(h.layout), g1 = Tensors(h.layout), g2 = Tensors(h.layout)
        g0.fill(seed: 10)
        g1.fill(seed: 11)
        g2.fill(seed: 12)
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
}
