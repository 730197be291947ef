import ArgumentParser
import Core

/// `lars-bench worker`: the worker's compute against single-thread SGEMM of the same shapes in
/// the same run (DESIGN.md §6), then (to come) the demo job through real server and workers.
struct WorkerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "MLP forward+backward vs. single-thread SGEMM of the same shapes; demo steps/s.")

    @Option(help: "Timed rounds per figure (the median is printed).")
    var rounds = 15

    @Option(help: "Micro-batch of the MLP figures.")
    var batch = 2048

    @Option(help: "Micro-batch of the CNN figure.")
    var cnnBatch = 256

    func run() throws {
        BLAS.setThreads(1)
        try computeFigures()
        try cnnFigures()
        // The demo_{1,2,4}w_steps_per_s and demo_{1,2,4}w_overhead_share figures (issue 5) go
        // here: they run lars-server with the demo config and 1, 2 and 4 lars-worker processes.
    }

    /// `sgemm_1t_gflops`, `worker_mlp_*`: one BLAS thread. Flops are counted exactly per GEMM
    /// (2 m n k): forward and weight gradient of all three layers, input gradient of fc2 and fc3
    /// (the network skips fc1's, the images need none), the same 8 GEMMs the bound times.
    func computeFigures() throws {
        let network = try Network(modelNamed: "mlp", maxBatch: batch)
        let spec = network.spec
        let weights = FloatArena(layout: spec.layout), gradients = FloatArena(layout: spec.layout)
        try spec.initialize(seed: 1, into: weights.buffers)
        let w = weights.buffers.map { UnsafeBufferPointer($0) }
        let data = ImageDataset.synthetic(count: batch, seed: 1)

        // The bound: the MLP's GEMMs alone, with their shapes and transposes, on scratch buffers.
        let widths = [784, 512, 512, 10]
        var gemms: [(transA: Bool, transB: Bool, m: Int, n: Int, k: Int)] = []
        for l in 0..<3 {
            let (i, o) = (widths[l], widths[l + 1])
            gemms.append((false, true, batch, o, i))   // y = x W^T
            gemms.append((true, false, o, i, batch))   // dW = dy^T x
            if l > 0 { gemms.append((false, false, batch, i, o)) }   // dx = dy W
        }
        let flops = gemms.reduce(0.0) { $0 + 2 * Double($1.m) * Double($1.n) * Double($1.k) }
        let largest = gemms.map { max($0.m * $0.k, $0.k * $0.n, $0.m * $0.n) }.max()!
        let a = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        let b = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        var rng = SplitMix64(seed: 2)
        for i in 0..<largest {
            a[i] = rng.nextFloat(in: -1...1)
            b[i] = rng.nextFloat(in: -1...1)
        }
        func sgemmPass() {
            for g in gemms {
                BLAS.sgemm(transA: g.transA, transB: g.transB, m: g.m, n: g.n, k: g.k, a: a, b: b, c: c)
            }
        }
        // Rounds alternate between the two so that load from other processes hits both alike.
        var sgemmTimes: [Double] = [], workerTimes: [Double] = []
        try data.images.withUnsafeBufferPointer { x in
            try data.labels.withUnsafeBufferPointer { y in
                func workerPass() throws {
                    try network.lossAndGradient(weights: w, images: x, labels: y, count: batch, gradients: gradients.buffers)
                }
                sgemmPass()
                try workerPass()
                for _ in 0..<rounds {
                    sgemmTimes.append(BenchClock.seconds(sgemmPass))
                    workerTimes.append(try BenchClock.seconds(workerPass))
                }
            }
        }
        let sgemmTime = sgemmTimes.sorted()[rounds / 2], workerTime = workerTimes.sorted()[rounds / 2]

        let sgemmRate = flops / sgemmTime / 1e9, workerRate = flops / workerTime / 1e9
        print("blas_threads=\(BLAS.threads)")
        print("worker_mlp_batch=\(batch)")
        report("worker_mlp_gemm_gflop_per_step", flops / 1e9)
        report("sgemm_1t_gflops", sgemmRate, digits: 1)
        report("worker_mlp_ms", workerTime * 1e3, digits: 2)
        report("worker_mlp_samples_per_s", Double(batch) / workerTime, digits: 0)
        report("worker_mlp_gflops", workerRate, digits: 1)
        report("worker_mlp_ratio_to_sgemm", workerRate / sgemmRate)
    }

    /// `worker_cnn_samples_per_s`: the CNN's forward+backward (one GEMM per sample and layer
    /// over im2col), at micro-batch `cnnBatch` on one thread.
    func cnnFigures() throws {
        let network = try Network(modelNamed: "cnn", maxBatch: cnnBatch)
        let weights = FloatArena(layout: network.spec.layout), gradients = FloatArena(layout: network.spec.layout)
        try network.spec.initialize(seed: 1, into: weights.buffers)
        let w = weights.buffers.map { UnsafeBufferPointer($0) }
        let data = ImageDataset.synthetic(count: cnnBatch, seed: 1)
        let time = try data.images.withUnsafeBufferPointer { x in
            try data.labels.withUnsafeBufferPointer { y in
                try BenchClock.median(rounds: 3, warmup: 1) {
                    try network.lossAndGradient(weights: w, images: x, labels: y, count: cnnBatch, gradients: gradients.buffers)
                }
            }
        }
        print("worker_cnn_batch=\(cnnBatch)")
        report("worker_cnn_samples_per_s", Double(cnnBatch) / time, digits: 0)
    }
}
