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
        let w = FloatArena(layout: layout), g = FloatArena(layout: layout), v = FloatArena(layout: layout)
        var rng = SplitMix64(seed: 1)
        for i in 0..<w.count {
            w.base[i] = rng.nextFloat(in: -0.05...0.05)
            g.base[i] = rng.nextFloat(in: -0.001...0.001)
        }
        print("params=\(params)")
        print("tensors=\(layout.tensors.count)")

        // The bound: in-place b += s*c over arrays of the same total size, 12 bytes per element.
        let bw1 = try bandwidth(b: w.base, c: g.base, count: params, threads: 1)
        let bw2 = try bandwidth(b: w.base, c: g.base, count: params, threads: 2)
        // Reset the weights the bandwidth loop walked.
        var rng2 = SplitMix64(seed: 1)
        for i in 0..<w.count { w.base[i] = rng2.nextFloat(in: -0.05...0.05); _ = rng2.next() }

        let grads = g.buffers.map { UnsafeBufferPointer($0) }
        func stepTime(threads: Int, supplied: Bool) throws -> Double {
            let opt = try LARSOptimizer(config: OptimizerConfig(), layout: layout, threads: threads)
            let norms: [Double]? = supplied ? grads.map { $0.reduce(0) { $0 + Double($1) * Double($1) } } : nil
            return try BenchClock.median(rounds: rounds) {
                try opt.step(rate: 1.0, weights: w.buffers, gradients: grads, momenta: v.buffers,
                             gradientNormsSquared: norms)
            }
        }
        let t1 = try stepTime(threads: 1, supplied: false)
        let t1s = try stepTime(threads: 1, supplied: true)
        let t2 = try stepTime(threads: 2, supplied: false)
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
        report("optimizer_floor_1t_ms", floor1 * 1e3)
        report("optimizer_floor_2t_ms", floor2 * 1e3)
        report("optimizer_1t_ratio_to_bound", floor1 / t1)
        report("optimizer_2t_ratio_to_bound", floor2 / t2)
    }

    /// GB/s of `b += s*c` over `count` elements on `threads` threads, split in equal halves.
    func bandwidth(b: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>, count: Int, threads: Int) throws -> Double {
        let shared = UncheckedPointers(b: b, c: c)
        let time = BenchClock.median(rounds: rounds) {
            DispatchQueue.concurrentPerform(iterations: threads) { part in
                let lo = count * part / threads, hi = count * (part + 1) / threads
                BandwidthKernel.axpyInPlace(shared.b + lo, shared.c + lo, count: hi - lo, scale: 1e-7)
            }
        }
        return Double(count) * 12 / time / 1e9
    }
}

private struct UncheckedPointers: @unchecked Sendable {
    let b: UnsafeMutablePointer<Float>
    let c: UnsafeMutablePointer<Float>
}
