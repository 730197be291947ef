import ArgumentParser
import Client
import Core
import Dispatch
import Foundation
import Logging
import ParamServer

#if canImport(Glibc)
import Glibc
#endif

/// `lars-bench step`: whole synchronous steps over loopback on the ResNet-50 parameter set
/// (102 MB): two client sessions push their gradients, the server accumulates them, runs LARS
/// and both pull the new weights. The bound is plain blocking TCP over loopback moving the same
/// bytes (two pushes and two pulls) in the same run.
struct StepBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Synchronous steps (2 workers, ResNet-50 set) vs. raw loopback TCP for the same bytes.")

    @Option(help: "Timed steps (the median is printed).")
    var rounds = 10

    @Flag(help: "Pull through the server's shared weight file, as workers on its host do; off by default, so that every byte crosses TCP like the bound's.")
    var sharedWeights = false

    func run() async throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let layout = Layout.resnet50Shapes
        let bytes = layout.parameterCount * 4
        var job = JobConfig()
        job.name = "step-bench"
        job.model = "resnet50-shapes"
        job.steps = rounds + 1000
        job.workers = 2
        job.globalBatch = 64
        var options = ServerOptions()
        options.port = 0
        options.httpPort = 0
        options.checkpointDir = NSTemporaryDirectory() + "lars-step-bench-\(UUID().uuidString)"
        options.sharedWeights = sharedWeights
        let server = try ParameterServer(job: job, options: options, logger: logger)
        try await server.start()
        defer { try? FileManager.default.removeItem(atPath: options.checkpointDir!) }

        let sessions = (0..<2).map { (r: Int) in
            ClientSession(
                host: "127.0.0.1", port: server.port,
                options: ClientOptions(workerName: "bench\(r)", wantedRank: r, sharedWeights: sharedWeights), logger: logger)
        }
        let weights = (0..<2).map { _ in FloatArena(layout: layout) }
        let grads = (0..<2).map { _ in FloatArena(layout: layout) }
        var rng = SplitMix64(seed: 3)
        for g in grads { for i in 0..<g.count { g.base[i] = rng.nextFloat(in: -1e-3...1e-3) } }
        for s in sessions { _ = try await s.connect() }
        let shared = UncheckedArenas(weights: weights, grads: grads)

        var times: [Double] = []
        for t in 0..<(rounds + 2) {
            let start = DispatchTime.now().uptimeNanoseconds
            try await withThrowingTaskGroup(of: Void.self) { group in
                for r in 0..<2 {
                    group.addTask {
                        _ = try await sessions[r].pull(step: t, into: shared.weights[r].buffers)
                        _ = try await sessions[r].push(
                            step: t, sampleCount: 32, loss: 1, gradients: shared.grads[r].buffers.map { UnsafeBufferPointer($0) })
                    }
                }
                try await group.waitForAll()
            }
            if t >= 2 { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
        }
        times.sort()
        let step = times[times.count / 2]
        for s in sessions { await s.close() }
        server.shutdown()
        _ = try? await server.run()

        let tcp = try LoopbackTCP.secondsToMove(bytes: 4 * bytes)
        print("step_params=\(layout.parameterCount)")
        print("step_pulls_via=\(sharedWeights ? "shared_memory" : "tcp")")
        report("step_2w_ms", step * 1e3)
        report("step_2w_steps_per_s", 1 / step)
        report("step_moved_gbs", Double(4 * bytes) / step / 1e9)
        report("loopback_tcp_gbs", Double(4 * bytes) / tcp / 1e9)
        report("loopback_tcp_same_bytes_ms", tcp * 1e3)
        report("step_ratio_to_tcp", tcp / step)
    }
}

private struct UncheckedArenas: @unchecked Sendable {
    let weights: [FloatArena]
    let grads: [FloatArena]
}

/// Plain blocking sockets over 127.0.0.1: one sender thread, one receiver thread, 4 MiB
/// writes and reads — the bound a step's traffic is compared with.
enum LoopbackTCP {
    static func secondsToMove(bytes total: Int) throws -> Double {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        listen(listener, 1)
        let sender = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(sender) }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(sender, $0, len) } }
        let receiver = accept(listener, nil, nil)
        defer { close(receiver) }
        let chunk = 4 << 20
        let out = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        let inn = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        memset(out, 1, chunk)
        defer { out.deallocate(); inn.deallocate() }
        var best = Double.infinity
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            let done = DispatchSemaphore(value: 0)
            let outBox = UncheckedPointer(pointer: out)
            Thread {
                var sent = 0
                while sent < total {
                    let n = send(sender, outBox.pointer, min(chunk, total - sent), Int32(MSG_NOSIGNAL))
                    if n <= 0 { break }
                    sent += n
                }
                done.signal()
            }.start()
            var received = 0
            while received < total {
                let n = recv(receiver, inn, chunk, 0)
                if n <= 0 { break }
                received += n
            }
            done.wait()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return best
    }
}

private struct UncheckedPointer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
}
