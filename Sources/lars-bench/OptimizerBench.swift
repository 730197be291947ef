import ArgumentParser
import Core
import Dispatch

/// `lars-bench optimizer`: one LARS step over the ResNet-50 parameter set, on one and two
/// threads, against the in-place `b += s*c` bandwidth of the same machine in the same run.
struct OptimizerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "optimizer",
        abstract: "LARS step over the ResNet-50 set vs. measured memory bandwidth.")

    @Option(help: "Timed rounds per figure (the median is printed).")
    var rounds = 21

    func run() throws {
        let layout = Layout.resnet50Shapes
        let params = layout.parameterCount
        // Each optimizer has weights and momentum of its own, so its carried ||w||^2 stays true.
        let w = FloatArena(layout: layout), g = FloatArena(layout: layout), v = FloatArena(layout: layout)
        let w2 = FloatArena(layout: layout), v2 = FloatArena(layout: layout)
        var rng = SplitMix64(seed: 1)
        for i in 0..<w.count {
            w.base[i] = rng.nextFloat(in: -0.05...0.05)
            w2.base[i] = w.base[i]
            g.base[i] = rng.nextFloat(in: -0.001...0.001)
        }
        print("params=\(params)")
        print("tensors=\(layout.tensors.count)")

        // The bound, in-place b += s*c over arrays of the same total size, and the steps are
        // timed in alternating rounds, so load from elsewhere on the machine hits both alike.
        let scratchB = FloatArena(layout: layout), scratchC = FloatArena(layout: layout)
        let grads = g.buffers.map { UnsafeBufferPointer($0) }
        let norms = grads.map { $0.reduce(0) { $0 + Double($1) * Double($1) } }
        let opt1 = try LARSOptimizer(config: OptimizerConfig(), layout: layout, threads: 1)
        let opt2 = try LARSOptimizer(config: OptimizerConfig(), layout: layout, threads: 2)
        var samples = [[Double]](repeating: [], count: 6)
        for round in 0..<(rounds + 2) {
            let times = [
                bandwidthRound(b: scratchB.base, c: scratchC.base, count: params, threads: 1),
                try BenchClock.seconds { try opt1.step(rate: 1.0, weights: w.buffers, gradients: grads, momenta: v.buffers) },
                try BenchClock.seconds {
                    try opt1.step(rate: 1.0, weights: w.buffers, gradients: grads, momenta: v.buffers, gradientNormsSquared: norms)
                },
                bandwidthRound(b: scratchB.base, c: scratchC.base, count: params, threads: 2),
                try BenchClock.seconds { try opt2.step(rate: 1.0, weights: w2.buffers, gradients: grads, momenta: v2.buffers) },
                try BenchClock.seconds {
                    try opt2.step(rate: 1.0, weights: w2.buffers, gradients: grads, momenta: v2.buffers, gradientNormsSquared: norms)
                },
            ]
            if round >= 2 { for (k, t) in times.enumerated() { samples[k].append(t) } }
        }
        let med = samples.map { $0.sorted()[$0.count / 2] }
        let bw1 = Double(params) * 12 / med[0] / 1e9, bw2 = Double(params) * 12 / med[3] / 1e9
        let t1 = med[1], t1s = med[2], t2 = med[4], t2s = med[5]
        let floor1 = Double(params) * 20 / (bw1 * 1e9)
        let floor2 = Double(params) * 20 / (bw2 * 1e9)

        report("update_bandwidth_1t_gbs", bw1)
        report("update_bandwidth_2t_gbs", bw2)
        report("optimizer_1t_ms", t1 * 1e3)
        report("optimizer_1t_gparams_per_s", Double(params) / t1 / 1e9)
        report("optimizer_1t_gsupplied_ms", t1s * 1e3)
        report("optimizer_1t_gsupplied_gparams_per_s", Double(params) / t1s / 1e9)
        report("optimizer_2t_ms", t2 * 1e3)
        report("optimizer_2t_gparams_per_s", Double(params) / t2 / 1e9)
        report("optimizer_2t_gsupplied_ms", t2s * 1e3)
        report("optimizer_2t_gsupplied_gparams_per_s", Double(params) / t2s / 1e9)
        report("optimizer_floor_1t_ms", floor1 * 1e3)
        report("optimizer_floor_2t_ms", floor2 * 1e3)
        report("optimizer_1t_ratio_to_bound", floor1 / t1)
        report("optimizer_2t_ratio_to_bound", floor2 / t2)
    }

    /// Seconds of one `b += s*c` pass over `count` elements on `threads` threads, split in
    /// equal parts.
    func bandwidthRound(b: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>, count: Int, threads: Int) -> Double {
        let shared = UncheckedPointers(b: b, c: c)
        return BenchClock.seconds {
            DispatchQueue.concurrentPerform(iterations: threads) { part in
                let lo = count * part / threads, hi = count * (part + 1) / threads
                BandwidthKernel.axpyInPlace(shared.b + lo, shared.c + lo, count: hi - lo, scale: 1e-7)
            }
        }
    }
}

private struct UncheckedPointers: @unchecked Sendable {
    let b: UnsafeMutablePointer<Float>
    let c: UnsafeMutablePointer<Float>
}
