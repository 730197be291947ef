import Dispatch
import Synchronization

/// What one step did to one tensor: the figures behind `lars_trust_ratio` and /status.
public struct TensorStepStats: Sendable, Hashable {
    /// ||w|| before the update.
    public var weightNorm: Double
    /// ||g|| of the raw gradient.
    public var gradientNorm: Double
    /// The trust ratio used (1 for tensors that do not adapt and for the `sgd` optimizer).
    public var trustRatio: Double
    /// The rate that multiplied d = g + beta w this step: gamma_t x trust, or min(trust, gamma_t)
    /// with LARC clipping.
    public var effectiveRate: Double
}

/// The outcome of one applied step.
public struct StepReport: Sendable, Hashable {
    /// One entry per tensor, in layout order.
    public var tensors: [TensorStepStats]
}

/// LARS (and momentum SGD) over tensors held in caller-owned Float32 buffers (DESIGN.md §3).
///
/// A step is one pass over every gradient for ||g||^2 (skipped when the caller supplies it), a
/// finite check over all tensors before anything changes, then one fused pass over w, g and v
/// that also yields the next step's ||w||^2. Work is split across threads by whole tensors:
/// each thread claims the next tensor of a fixed order from a shared counter until none is left,
/// so a thread that gets less memory bandwidth simply takes fewer tensors; one join per pass.
///
/// Not thread-safe: one caller steps at a time. The carried ||w||^2 is valid only while nothing
/// but this optimizer writes the weights; call `invalidateWeightNorms()` after writing them.
public final class LARSOptimizer {
    public let config: OptimizerConfig
    public let layout: Layout
    /// Per tensor: whether it gets the trust ratio and weight decay.
    public let adapts: [Bool]
    /// Threads a pass uses (the caller's thread is one of them).
    public let threads: Int
    /// Tensor indices, largest first: the order the update pass claims them in (the largest
    /// first, so the last claims are small and the threads finish together). The gradient pass,
    /// when it runs (the server supplies ||g||^2 and skips it), claims in the reverse order, so
    /// the gradients it reads last, the largest, are the first the update pass reads, while some
    /// of them are still in the last-level cache.
    let claimOrder: [Int]
    /// `claimOrder` reversed.
    var gradientPassOrder: [Int] { claimOrder.reversed() }
    private var weightNormsSquared: [Double]?

    public init(config: OptimizerConfig, layout: Layout, threads: Int = 1) throws(ConfigError) {
        try config.validate()
        guard threads >= 1 else { throw ConfigError(key: "threads", value: "\(threads)", allowed: "an integer >= 1") }
        self.config = config
        self.layout = layout
        self.adapts = layout.tensors.map { config.adapts($0) }
        self.threads = min(threads, max(1, layout.tensors.count))
        // Sorted by size, ties in layout order: the same order on every run.
        self.claimOrder = layout.tensors.indices.sorted {
            (layout.tensors[$0].count, $1) > (layout.tensors[$1].count, $0)
        }
    }

    /// Forgets the carried ||w||^2 so the next step measures the weights afresh.
    public func invalidateWeightNorms() {
        weightNormsSquared = nil
    }

    /// Calls `body` once for every tensor index in `order`, on `threads` threads of the shared
    /// pool: each takes the next index from a counter until none is left; returns when all are done.
    private func forEachTensor(in order: [Int], _ body: (Int) -> Void) {
        if threads == 1 {
            for i in order { body(i) }
            return
        }
        let next = Atomic<Int>(0)
        // Each index is claimed once, so the calls touch disjoint tensors and handing the closure
        // to the pool is safe.
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                while true {
                    let k = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard k < order.count else { return }
                    shared.value(order[k])
                }
            }
        }
    }

    /// Applies one step at global rate `rate`.
    ///
    /// - Parameters:
    ///   - weights: w per tensor, read; also written unless `weightsOut` is given.
    ///   - gradients: the mean gradient per tensor.
    ///   - momenta: v per tensor, updated in place.
    ///   - gradientNormsSquared: ||g||^2 per tensor when the caller already has it (taken while
    ///     the gradient was formed); the gradient pass is then skipped. A non-finite entry sends
    ///     that tensor through the element-wise finite check.
    ///   - weightsOut: where w_{t+1} goes, if not over w (double-buffered weights).
    /// - Throws: `OptimizerError.nonFiniteGradient` with nothing changed.
    @discardableResult
    public func step(
        rate: Double,
        weights: [UnsafeMutableBufferPointer<Float>],
        gradients: [UnsafeBufferPointer<Float>],
        momenta: [UnsafeMutableBufferPointer<Float>],
        gradientNormsSquared: [Double]? = nil,
        weightsOut: [UnsafeMutableBufferPointer<Float>]? = nil
    ) throws(OptimizerError) -> StepReport {
        let specs = layout.tensors
        let n = specs.count
        try Self.checkSizes(specs, weights.map(\.count), role: "weight")
        try Self.checkSizes(specs, gradients.map(\.count), role: "gradient")
        try Self.checkSizes(specs, momenta.map(\.count), role: "momentum")
        if let out = weightsOut { try Self.checkSizes(specs, out.map(\.count), role: "output weight") }
        if let gs = gradientNormsSquared, gs.count != n {
            throw .tensorCountMismatch(role: "gradient norm", expected: n, actual: gs.count)
        }

        // Pass 1: ||g||^2 (and <g, w> for norm_of_sum, ||w||^2 on the first step).
        var gsq = gradientNormsSquared ?? [Double](repeating: 0, count: n)
        var wsq = weightNormsSquared ?? [Double](repeating: 0, count: n)
        var gw = [Double](repeating: 0, count: n)
        let needG = gradientNormsSquared == nil
        let needW = weightNormsSquared == nil
        let needDot = config.kind == .lars && config.denominator == .normOfSum
        if needG || needW || needDot {
            gsq.withUnsafeMutableBufferPointer { gsqP in
                wsq.withUnsafeMutableBufferPointer { wsqP in
                    gw.withUnsafeMutableBufferPointer { gwP in
                        forEachTensor(in: gradientPassOrder) { i in
                            let g = gradients[i]
                            let w = UnsafeBufferPointer(weights[i])
                            if needG { gsqP[i] = OptimizerKernels.sumOfSquares(g) }
                            if needW {
                                let s = OptimizerKernels.sumOfSquares(w)
                                wsqP[i] = s.isFinite ? s : OptimizerKernels.exactSumOfSquares(w)
                            }
                            if needDot && adapts[i] { gwP[i] = OptimizerKernels.dot(g, w) }
                        }
                    }
                }
            }
        }

        // The finite check covers every tensor before any tensor changes.
        for i in 0..<n where !gsq[i].isFinite {
            if let bad = OptimizerKernels.firstNonFinite(gradients[i]) {
                throw .nonFiniteGradient(tensor: specs[i].name, index: bad, value: gradients[i][bad])
            }
            gsq[i] = OptimizerKernels.exactSumOfSquares(gradients[i])  // finite elements, Float overflow
        }

        var stats = [TensorStepStats]()
        stats.reserveCapacity(n)
        var coefficients = [OptimizerKernels.Coefficients]()
        coefficients.reserveCapacity(n)
        for i in 0..<n {
            let (c, s) = coefficientsFor(tensor: i, rate: rate, wsq: wsq[i], gsq: gsq[i], gw: gw[i])
            coefficients.append(c)
            stats.append(s)
        }

        // Pass 2: the fused update, which leaves ||w_{t+1}||^2 behind for the next step.
        var next = [Double](repeating: 0, count: n)
        // Largest first: the gradients the first pass read last (see `claimOrder`).
        next.withUnsafeMutableBufferPointer { nextP in
            forEachTensor(in: claimOrder) { i in
                let w = weights[i]
                let out = weightsOut?[i] ?? w
                guard let wb = w.baseAddress, let ob = out.baseAddress,
                      let gb = gradients[i].baseAddress, let vb = momenta[i].baseAddress else { return }
                nextP[i] = OptimizerKernels.fusedUpdate(
                    w: UnsafePointer(wb), wOut: ob, g: gb, v: vb, count: w.count, coefficients[i])
            }
        }
        // A non-finite norm (overflowed in Float) is not carried: the next step measures afresh.
        weightNormsSquared = next.allSatisfy(\.isFinite) ? next : nil
        return StepReport(tensors: stats)
    }

    /// The scalars of one tensor's update (DESIGN.md §3) and the figures reported for it.
    func coefficientsFor(tensor i: Int, rate gamma: Double, wsq: Double, gsq: Double, gw: Double)
        -> (OptimizerKernels.Coefficients, TensorStepStats)
    {
        let adapted = adapts[i]
        let beta = adapted ? config.weightDecay : 0
        let m = config.momentum
        let wn = wsq.squareRoot(), gn = gsq.squareRoot()
        var trust = 1.0
        if config.kind == .lars && adapted && wn > 0 && gn > 0 {
            let denominator: Double
            switch config.denominator {
            case .sumOfNorms: denominator = gn + beta * wn + config.eps
            case .normOfSum: denominator = max(0, gsq + 2 * beta * gw + beta * beta * wsq).squareRoot() + config.eps
            }
            if denominator > 0 { trust = config.eta * wn / denominator }
        }
        let clipped = config.clip && config.kind == .lars && adapted
        // s: the rate on d in the `paper` recursion; c: the factor on d in `scaled_grad`'s.
        let s = clipped ? min(trust, gamma) : gamma * trust
        let c = clipped ? (gamma > 0 ? min(trust / gamma, 1) : 1) : trust
        let k: OptimizerKernels.Coefficients
        switch (config.placement, config.nesterov) {
        case (.paper, false): k = .init(beta: Float(beta), m: Float(m), a: Float(s), k1: 1, k2: 0)
        case (.paper, true): k = .init(beta: Float(beta), m: Float(m), a: Float(s), k1: Float(m), k2: Float(s))
        case (.scaledGrad, false): k = .init(beta: Float(beta), m: Float(m), a: Float(c), k1: Float(gamma), k2: 0)
        case (.scaledGrad, true):
            k = .init(beta: Float(beta), m: Float(m), a: Float(c), k1: Float(gamma * m), k2: Float(gamma * c))
        }
        let effective = config.placement == .paper ? s : gamma * c
        return (k, TensorStepStats(weightNorm: wn, gradientNorm: gn, trustRatio: trust, effectiveRate: effective))
    }

    private static func checkSizes(_ specs: [TensorSpec], _ counts: [Int], role: String) throws(OptimizerError) {
        guard counts.count == specs.count else {
            throw .tensorCountMismatch(role: role, expected: specs.count, actual: counts.count)
        }
        for (spec, count) in zip(specs, counts) where spec.count != count {
            throw .bufferSizeMismatch(tensor: spec.name, role: role, expected: spec.count, actual: count)
        }
    }
}

/// Carries a value the compiler cannot prove Sendable across a join the caller has made safe.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
