import Testing
@testable import Core

/// A NaN or infinity in any gradient refuses the whole step before any tensor changes
/// (DESIGN.md §2); a finite gradient whose squares overflow Float is used, not refused.
@Suite("Non-finite gradients")
struct NonFiniteGradientTests {
    static let layout = Layout([
        TensorSpec(name: "conv.weight", shape: [4, 3, 3, 3]),
        TensorSpec(name: "conv.bias", shape: [4]),
        TensorSpec(name: "fc.weight", shape: [10, 20]),
        TensorSpec(name: "fc.bias", shape: [7]),
    ])

    /// Bad values planted in one tensor's gradient.
    struct Planted: Sendable, CustomTestStringConvertible {
        var tensor: Int
        /// (element, value) pairs.
        var values: [(Int, Float)]
        /// A huge but finite element in another tensor, which alone would be accepted.
        var hugeElsewhere: Bool = false
        var testDescription: String {
            "\(NonFiniteGradientTests.layout.tensors[tensor].name): "
                + values.map { "[\($0.0)] = \($0.1)" }.joined(separator: ", ") + (hugeElsewhere ? " + 1e20 elsewhere" : "")
        }
        /// The element the error must name: the first non-finite one.
        var firstBad: Int { values.map(\.0).min()! }
    }

    static let planted: [Planted] = [
        Planted(tensor: 0, values: [(5, .nan), (17, .infinity)]),
        Planted(tensor: 2, values: [(3, .infinity), (150, .nan)]),  // SIMD body
        Planted(tensor: 2, values: [(199, .nan), (196, .infinity)]),  // SIMD tail
        Planted(tensor: 3, values: [(6, .nan), (2, .infinity)]),  // the last tensor
        Planted(tensor: 3, values: [(6, .infinity)], hugeElsewhere: true),
    ]

    /// Weights and gradients drawn from a seeded generator, after one clean step so that
    /// momenta are non-zero and the optimizer carries ||w||^2.
    static func warmedUp(threads: Int) throws -> (LARSOptimizer, TensorBuffers) {
        let optimizer = try LARSOptimizer(config: OptimizerConfig(), layout: layout, threads: threads)
        let state = TensorBuffers(layout: layout)
        var rng = SplitMix64(seed: 42)
        state.fill(state.weights) { rng.nextFloat(in: -0.5...0.5) }
        state.fill(state.gradients) { rng.nextFloat(in: -0.01...0.01) }
        try state.step(optimizer, rate: 1.0)
        state.fill(state.gradients) { rng.nextFloat(in: -0.01...0.01) }
        return (optimizer, state)
    }

    @Test(arguments: planted, [1, 2])
    func refusedWithNothingChanged(_ p: Planted, threads: Int) throws {
        let (optimizer, state) = try Self.warmedUp(threads: threads)
        let (twin, twinState) = try Self.warmedUp(threads: threads)
        let clean = state.gradients.buffers.map(Array.init)
        if p.hugeElsewhere { state.gradients.buffers[0][1] = 1e20 }
        for (i, value) in p.values { state.gradients.buffers[p.tensor][i] = value }
        let before = state.stateBits()
        #expect(before == twinState.stateBits())

        do {
            try state.step(optimizer, rate: 1.0)
            Issue.record("a step with a non-finite gradient was applied")
        } catch {
            guard case .nonFiniteGradient(let tensor, let index, let value) = error else {
                Issue.record("wrong error: \(error)")
                return
            }
            #expect(tensor == Self.layout.tensors[p.tensor].name)
            #expect(index == p.firstBad)
            #expect(!value.isFinite)
            #expect("\(error)".contains(tensor))
        }
        #expect(state.stateBits() == before, "a refused step changed weights or momenta")

        // The refusal leaves no trace: the next clean step matches an optimizer that never saw it.
        state.setGradients(clean)
        twinState.setGradients(clean)
        let report = try state.step(optimizer, rate: 0.5)
        let twinReport = try twinState.step(twin, rate: 0.5)
        #expect(report == twinReport)
        #expect(state.stateBits() == twinState.stateBits())
    }

    /// 1e20 squares to 1e40, past Float's range: the gradient is finite and must be used.
    @Test(arguments: [1, 2])
    func hugeFiniteGradientIsUsed(threads: Int) throws {
        let (optimizer, state) = try Self.warmedUp(threads: threads)
        let g = state.gradients.buffers[2]
        g[10] = 1e20
        g[199] = -3e19
        let exact = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let before = state.weights.buffers[2][10]
        let report = try state.step(optimizer, rate: 1.0)
        let stats = report.tensors[2]
        #expect(Tolerance.relative(stats.gradientNorm, exact) <= 1e-12)
        #expect(stats.trustRatio > 0 && stats.trustRatio.isFinite)
        #expect(Tolerance.relative(stats.trustRatio, 0.001 * stats.weightNorm / (exact + 5e-4 * stats.weightNorm)) <= 1e-12)
        #expect(state.stateBits().allSatisfy { $0.allSatisfy { Float(bitPattern: $0).isFinite } })
        #expect(state.weights.buffers[2][10] < before)
    }
}
