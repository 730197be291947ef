import Testing
@testable import Core

/// Core's optimizer and schedules against the Float64 numpy reference (scripts/lars_reference.py),
/// on one and two threads. Tolerances: see `Tolerance`.
@Suite("LARS against the numpy reference")
struct LARSReferenceTests {
    @Test func fixturesLoad() throws {
        let file = try ReferenceFixtures.load(ReferenceFixtures.SmallFile.self, file: "lars_cases")
        #expect(file.cases.count >= 30)
        #expect(file.schedules.count >= 10)
        #expect(file.cases.contains { $0.totalSteps == 20 })
    }

    @Test(arguments: ReferenceFixtures.cases, [1, 2])
    func matchesReference(_ c: ReferenceFixtures.Case, threads: Int) throws {
        let optimizer = try LARSOptimizer(config: c.optimizer, layout: c.layout, threads: threads)
        let schedule = try LearningRateSchedule(config: c.schedule, stepsPerEpoch: c.stepsPerEpoch,
                                                totalSteps: c.totalSteps)
        #expect(schedule.warmupSteps == c.warmupSteps)
        let names = c.layout.tensors.map(\.name)
        let state = TensorBuffers(layout: c.layout)
        state.setWeights(c.initialWeights.map(\.float32))
        let snapshots = Dictionary(uniqueKeysWithValues: c.snapshots.map { ($0.step, $0) })
        #expect(c.gradients.count == c.totalSteps)

        for t in 0..<c.totalSteps {
            let rate = schedule.rate(at: t)
            #expect(Tolerance.relative(rate, c.rates[t]) <= Tolerance.rate, "step \(t): rate \(rate), reference \(c.rates[t])")
            state.setGradients(c.gradients[t].map(\.float32))
            let report = try state.step(optimizer, rate: rate)
            for (i, stats) in report.tensors.enumerated() {
                let trustError = Tolerance.relative(stats.trustRatio, c.trustRatios[t][i])
                #expect(trustError <= Tolerance.trustRatio,
                        "step \(t) \(names[i]): trust \(stats.trustRatio), reference \(c.trustRatios[t][i])")
                let rateError = Tolerance.relative(stats.effectiveRate, c.effectiveRates[t][i])
                #expect(rateError <= Tolerance.trustRatio,
                        "step \(t) \(names[i]): effective rate \(stats.effectiveRate), reference \(c.effectiveRates[t][i])")
            }
            guard let snap = snapshots[t] else { continue }
            let we = Tolerance.errorsRelativeToMax(state.weights.buffers, snap.weights.map(\.float32))
            let ve = Tolerance.errorsRelativeToMax(state.momenta.buffers, snap.momenta.map(\.float32))
            for i in names.indices {
                #expect(we[i] <= Tolerance.weights, "after step \(t) \(names[i]): w off by \(we[i]) of max|w|")
                #expect(ve[i] <= Tolerance.momenta, "after step \(t) \(names[i]): v off by \(ve[i]) of max|v|")
            }
        }
    }

    @Test(arguments: ReferenceFixtures.schedules)
    func scheduleRates(_ s: ReferenceFixtures.ScheduleCase) throws {
        let schedule = try LearningRateSchedule(config: s.schedule, stepsPerEpoch: s.stepsPerEpoch, totalSteps: s.totalSteps)
        #expect(schedule.warmupSteps == s.warmupSteps)
        #expect(s.rates.count == s.totalSteps)
        for (t, expected) in s.rates.enumerated() {
            let rate = schedule.rate(at: t)
            #expect(Tolerance.relative(rate, expected) <= Tolerance.rate, "step \(t): rate \(rate), reference \(expected)")
        }
    }

    /// 1,000,003 elements (SIMD body, many Float-block folds, a tail of 3) next to a 21-element
    /// tensor; the inputs come from `SplitMix64`, which the script implements identically.
    @Test(arguments: [1, 2])
    func largeTensorMatchesReference(threads: Int) throws {
        let c = try ReferenceFixtures.load(ReferenceFixtures.LargeCase.self, file: "lars_large")
        var probe = SplitMix64(seed: c.seed)
        let expectedDraws = c.firstDraws.compactMap { UInt64($0, radix: 16) }
        #expect(expectedDraws.count == c.firstDraws.count)
        #expect(expectedDraws.map { _ in probe.next() } == expectedDraws, "SplitMix64 stream differs from the script's")

        let optimizer = try LARSOptimizer(config: c.optimizer, layout: c.layout, threads: threads)
        let schedule = try LearningRateSchedule(config: c.schedule, stepsPerEpoch: c.stepsPerEpoch, totalSteps: c.totalSteps)
        #expect(schedule.warmupSteps == c.warmupSteps)
        let names = c.layout.tensors.map(\.name)
        let state = TensorBuffers(layout: c.layout)
        var rng = SplitMix64(seed: c.seed)
        let wRange = c.weightRange[0]...c.weightRange[1], gRange = c.gradientRange[0]...c.gradientRange[1]
        state.fill(state.weights) { rng.nextFloat(in: wRange) }
        for i in names.indices {
            let w = state.weights.buffers[i]
            let sampled = stride(from: 0, to: w.count, by: c.stride).map { w[$0] }
            #expect(sampled == c.initialWeightsSampled[i].float32, "\(names[i]): initial weights differ from the script's draws")
        }

        for t in 0..<c.totalSteps {
            let rate = schedule.rate(at: t)
            #expect(Tolerance.relative(rate, c.rates[t]) <= Tolerance.rate)
            state.fill(state.gradients) { rng.nextFloat(in: gRange) }
            let report = try state.step(optimizer, rate: rate)
            for (i, stats) in report.tensors.enumerated() {
                #expect(Tolerance.relative(stats.trustRatio, c.trustRatios[t][i]) <= Tolerance.trustRatio,
                        "step \(t) \(names[i]): trust \(stats.trustRatio), reference \(c.trustRatios[t][i])")
                #expect(Tolerance.relative(stats.effectiveRate, c.effectiveRates[t][i]) <= Tolerance.trustRatio)
            }
        }

        for i in names.indices {
            let w = state.weights.buffers[i], v = state.momenta.buffers[i]
            let maxW = c.finalMaxAbsWeight[i], maxV = c.finalMaxAbsMomentum[i]
            let sampledW = stride(from: 0, to: w.count, by: c.stride).map { w[$0] }
            let sampledV = stride(from: 0, to: v.count, by: c.stride).map { v[$0] }
            let expectedW = c.finalWeightsSampled[i].float32, expectedV = c.finalMomentaSampled[i].float32
            let we = zip(sampledW, expectedW).map { abs(Double($0) - Double($1)) }.max()! / maxW
            let ve = zip(sampledV, expectedV).map { abs(Double($0) - Double($1)) }.max()! / maxV
            #expect(sampledW.count == expectedW.count)
            #expect(we <= Tolerance.weights, "\(names[i]): sampled w off by \(we) of max|w|")
            #expect(ve <= Tolerance.momenta, "\(names[i]): sampled v off by \(ve) of max|v|")
            let coreMaxW = w.reduce(0.0) { max($0, abs(Double($1))) }
            let coreMaxV = v.reduce(0.0) { max($0, abs(Double($1))) }
            #expect(abs(coreMaxW - maxW) <= Tolerance.weights * maxW, "\(names[i]): max|w| \(coreMaxW), reference \(maxW)")
            #expect(abs(coreMaxV - maxV) <= Tolerance.momenta * maxV, "\(names[i]): max|v| \(coreMaxV), reference \(maxV)")
        }
    }
}
