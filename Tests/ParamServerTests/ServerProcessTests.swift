import Client
import Core
import Foundation
import Logging
import Testing
import Wire

/// The built `lars-server` binary under real workers: a whole job to the end, and a SIGKILL
/// mid-job followed by `--resume`, where training continues from the last checkpoint.
@Suite("lars-server process", .serialized, .timeLimit(.minutes(3)))
struct ServerProcessTests {
    /// A running `lars-server` child process and its stderr.
    final class ServerProcess: @unchecked Sendable {
        let process = Process()
        let log = LockedData()
        private var collected = Data()
        private let lock = NSLock()

        init(arguments: [String]) throws {
            process.executableURL = BuiltBinary.url("lars-server")
            process.arguments = arguments
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            err.fileHandleForReading.readabilityHandler = { [weak self] h in
                guard let self else { return }
                let d = h.availableData
                self.lock.lock()
                self.collected.append(d)
                self.log.set(self.collected)
                self.lock.unlock()
            }
            try process.run()
        }

        var stderr: String { log.string }

        /// Waits until stderr contains `text` (or the process exits, or `timeout` passes). It
        /// sleeps with `Task.sleep`: a blocking sleep would hold one of the few cooperative
        /// threads that the test's own client sessions need to run on.
        func wait(for text: String, timeout: Double = 30) async -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if stderr.contains(text) { return true }
                if !process.isRunning { return stderr.contains(text) }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return false
        }

        func waitForExit(timeout: Double = 60) async -> Int32? {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            return process.isRunning ? nil : process.terminationStatus
        }

        func kill() {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    func session(port: Int, rank: Int) -> ClientSession {
        var logger = Logger(label: "proc-test-\(rank)")
        logger.logLevel = .warning
        return ClientSession(
            host: "127.0.0.1", port: port,
            options: ClientOptions(workerName: "w\(rank)", wantedRank: rank, connectTimeout: .seconds(20), reconnectTimeout: .seconds(20)),
            logger: logger)
    }

    /// Runs one worker's loop: pull, push a seeded gradient, until the server says BYE.
    /// Returns the steps it pushed.
    func train(_ s: ClientSession, layout: Layout, rank: Int) async -> [Int] {
        var pushed: [Int] = []
        let w = Tensors(layout), g = Tensors(layout)
        do {
            let info = try await s.connect()
            var step = info.currentStep
            while true {
                step = try await s.pull(step: step, into: w.storage).step
                g.fill(seed: UInt64(1000 * step + rank), scale: 0.01)
                switch try await s.push(step: step, sampleCount: 16, loss: 2.0 / Double(step + 1), gradients: g.readOnly) {
                case .accepted:
                    pushed.append(step)
                    step += 1
                case .stepClosed(let current):
                    step = current
                }
                if let e = s.takeEvalRequest() {
                    try await s.sendEval(step: e, testLoss: 0.5, accuracy: 0.75, sampleCount: 100)
                }
            }
        } catch {
            return pushed
        }
    }

    func writeJob(steps: Int, checkpointEvery: Int) throws -> String {
        let path = NSTemporaryDirectory() + "lars-proc-\(UUID().uuidString).json"
        let json = """
            {"name": "proc", "model": "mlp", "steps": \(steps), "workers": 2, "global_batch": 32, "seed": 3,
             "checkpoint_every": \(checkpointEvery), "schedule": {"peak_rate": 0.5, "warmup_epochs": 0.2}}
            """
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func jobRunsToTheEndAndItsCheckpointLoadsInPython() async throws {
        let dir = NSTemporaryDirectory() + "lars-proc-\(UUID().uuidString)"
        let port = Self.freePort(), http = Self.freePort()
        let server = try ServerProcess(arguments: [
            "--config", try writeJob(steps: 6, checkpointEvery: 0), "--port", "\(port)", "--http-port", "\(http)",
            "--checkpoint-dir", dir, "--deterministic",
        ])
        #expect(await server.wait(for: "listening"), "\(server.stderr)")
        let layout = ModelSpec.mlp.layout
        async let r0 = train(session(port: port, rank: 0), layout: layout, rank: 0)
        async let r1 = train(session(port: port, rank: 1), layout: layout, rank: 1)
        let (p0, p1) = await (r0, r1)
        #expect(p0 == Array(0..<6))
        #expect(p1 == Array(0..<6))
        #expect(await server.waitForExit() == 0, "\(server.stderr)")
        #expect(server.stderr.contains("evaluation"), "the final EVAL must reach the server")
        let checkpoint = dir + "/step-000000006.safetensors"
        #expect(FileManager.default.fileExists(atPath: checkpoint), "\(server.stderr)")
        let runLog = try String(contentsOfFile: dir + "/run.jsonl", encoding: .utf8)
        #expect(runLog.split(separator: "\n").filter { $0.contains(#""type":"step""#) }.count == 6)

        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", """
            import json, sys
            from safetensors import safe_open
            with safe_open(sys.argv[1], framework="numpy") as f:
                meta = f.metadata()
                keys = sorted(f.keys())
                w = f.get_tensor("fc1.weight")
            assert meta["step"] == "6", meta
            assert json.loads(meta["job"])["model"] == "mlp"
            assert w.shape == (512, 784), w.shape
            print(len(keys))
            """, checkpoint]
        let out = Pipe()
        python.standardOutput = out
        try python.run()
        python.waitUntilExit()
        #expect(python.terminationStatus == 0, "python could not load the checkpoint")
        #expect(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "12")
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// SIGKILL after step 5 (checkpoints every 2 steps), restart with --resume: the server comes
    /// back at step 4 from its checkpoint, the workers reconnect on their own, and the job ends.
    @Test func sigkillThenResumeContinuesFromTheLastCheckpoint() async throws {
        let dir = NSTemporaryDirectory() + "lars-proc-\(UUID().uuidString)"
        let port = Self.freePort(), http = Self.freePort()
        let job = try writeJob(steps: 10, checkpointEvery: 2)
        let args = ["--config", job, "--port", "\(port)", "--http-port", "\(http)", "--checkpoint-dir", dir]
        let first = try ServerProcess(arguments: args)
        #expect(await first.wait(for: "listening"), "\(first.stderr)")
        let layout = ModelSpec.mlp.layout
        let s0 = session(port: port, rank: 0), s1 = session(port: port, rank: 1)
        async let r0 = train(s0, layout: layout, rank: 0)
        async let r1 = train(s1, layout: layout, rank: 1)
        #expect(await first.wait(for: "step-000000004.safetensors"), "\(first.stderr)")
        first.kill()
        let second = try ServerProcess(arguments: args + ["--resume"])
        #expect(await second.wait(for: "resumed from checkpoint"), "\(second.stderr)")
        #expect(second.stderr.contains("step=4") || second.stderr.contains("step-000000004"), "\(second.stderr)")
        let (p0, p1) = await (r0, r1)
        #expect(await second.waitForExit() == 0, "\(second.stderr)")
        #expect(p0.last == 9 && p1.last == 9, "pushed \(p0) and \(p1)")
        #expect(FileManager.default.fileExists(atPath: dir + "/step-000000010.safetensors"))
        try? FileManager.default.removeItem(atPath: dir)
    }
}
