@testable import Core

/// Weights, gradients and momenta of one layout in caller-owned storage (as the server keeps
/// them), with the step call and the snapshots the tests need.
final class TensorBuffers {
    let layout: Layout
    let weights: FloatArena
    let gradients: FloatArena
    let momenta: FloatArena

    /// Zeroed weights, gradients and momenta.
    init(layout: Layout) {
        self.layout = layout
        weights = FloatArena(layout: layout)
        gradients = FloatArena(layout: layout)
        momenta = FloatArena(layout: layout)
    }

    func setWeights(_ values: [[Float]]) {
        for (b, v) in zip(weights.buffers, values) { _ = b.update(fromContentsOf: v) }
    }

    func setGradients(_ values: [[Float]]) {
        for (b, v) in zip(gradients.buffers, values) { _ = b.update(fromContentsOf: v) }
    }

    /// Fills the weights (or gradients) of every tensor, in layout order, from `next`.
    func fill(_ arena: FloatArena, _ next: () -> Float) {
        for b in arena.buffers {
            for i in b.indices { b[i] = next() }
        }
    }

    @discardableResult
    func step(_ optimizer: LARSOptimizer, rate: Double) throws(OptimizerError) -> StepReport {
        try optimizer.step(rate: rate, weights: weights.buffers,
                           gradients: gradients.buffers.map { UnsafeBufferPointer($0) },
                           momenta: momenta.buffers)
    }

    /// Bit patterns of every weight and momentum, to show that a refused step changed nothing.
    func stateBits() -> [[UInt32]] {
        (weights.buffers + momenta.buffers).map { $0.map(\.bitPattern) }
    }
}
