import Foundation
import Testing
import Wire

/// The built `lars-server` and `lars-worker` binaries on real Fashion-MNIST: a short job trains
/// (loss falls, the final evaluation arrives, everything exits 0), and a worker whose data is
/// missing or not the job's exits with status 3 and says which file and how to install it.
@Suite("lars-worker end to end", .serialized)
struct WorkerEndToEndTests {
    static let fashionMNIST = "/usr/share/datasets/fashion-mnist"

    /// A child process writing its stdout and stderr to a file.
    final class Child {
        let process = Process()
        let log: URL

        init(_ name: String, _ arguments: [String], log: URL) throws {
            self.log = log
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.executableURL = BuiltBinary.url(name)
            process.arguments = arguments
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }

        var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        /// Waits up to `timeout` seconds; kills the process after that. Returns the exit status.
        func wait(timeout: Double) -> Int32 {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning {
                process.terminate()
                usleep(500_000)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            }
            process.waitUntilExit()
            return process.terminationStatus
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }

    /// A scratch directory for one test.
    static func directory() throws -> URL {
        let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("lars-worker-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Starts lars-server with `job` (JSON) on `port` (0: a free one) and a free HTTP port;
    /// returns it and its worker port.
    static func startServer(
        job: String, in dir: URL, port: Int = 0, extraArguments: [String] = [], log: String = "server.log"
    ) throws -> (Child, Int) {
        let jobFile = dir.appendingPathComponent("job.json")
        try job.write(to: jobFile, atomically: true, encoding: .utf8)
        let server = try Child("lars-server", [
            "--config", jobFile.path, "--port", "\(port)", "--http-port", "0", "--checkpoint-dir", dir.path,
        ] + extraArguments, log: dir.appendingPathComponent(log))
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let line = server.output.split(separator: "\n").first(where: { $0.contains("listening") && $0.contains(" workers=") }),
               let field = line.split(separator: " ").first(where: { $0.hasPrefix("workers=") }),
               let port = field.split(separator: ":").last.flatMap({ Int($0) }) {
                return (server, port)
            }
            guard server.process.isRunning else { break }
            usleep(20_000)
        }
        throw Failure(description: "lars-server did not start: \(server.output)")
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func runLog(in dir: URL) throws -> [[String: Any]] {
        let text = try String(contentsOf: dir.appendingPathComponent("run.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Whether a sealed file opens through its `/proc/<pid>/fd/<n>` path here.
    static var descriptorsOpenThroughProc: Bool {
        guard let file = try? SharedWeightFile.createSealed(elements: 4) else { return false }
        return (try? SharedWeightFile.open(path: file.path, nonce: file.nonce, elements: 4, sealed: true)) != nil
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: fashionMNIST + "/train-labels-idx1-ubyte.gz")))
    func shortJobTrainsEvaluatesAndEndsCleanly() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (server, port) = try Self.startServer(job: """
            {"name": "e2e", "model": "mlp", "global_batch": 512, "workers": 2, "steps": 20, "seed": 7,
             "optimizer": {"name": "lars", "eta": 0.001, "weight_decay": 0.0005, "momentum": 0.9},
             "schedule": {"name": "polynomial", "peak_rate": 4, "warmup_epochs": 0.2, "power": 2}}
            """, in: dir)
        // Rank 1 runs its share of 256 in passes of 100, 100 and 56 samples.
        let workers = try (0..<2).map { rank in
            try Child("lars-worker", ["--server", "127.0.0.1:\(port)", "--name", "e2e-\(rank)", "--progress-every", "5"]
                      + (rank == 1 ? ["--micro-batch", "100"] : []),
                      log: dir.appendingPathComponent("worker-\(rank).log"))
        }
        let workerStatuses = workers.map { $0.wait(timeout: 240) }
        let serverStatus = server.wait(timeout: 30)
        #expect(serverStatus == 0, "server: \(server.output)")
        for (rank, w) in workers.enumerated() {
            #expect(workerStatuses[rank] == 0, "worker \(rank): \(w.output)")
            #expect(w.output.contains("bye (done)"), "worker \(rank): \(w.output)")
            #expect(w.output.contains("step 20/20"), "worker \(rank) printed no progress: \(w.output)")
            #expect(w.output.contains("micro_batch=\(rank == 1 ? 100 : 256)"), "worker \(rank): \(w.output)")
            // The server, another process, mapped this worker's sealed gradient file through its
            // /proc path, and the pushes went through it (where /proc lets a process open its
            // own descriptors there at all).
            if Self.descriptorsOpenThroughProc {
                #expect(w.output.contains("pushing through the gradient file"), "worker \(rank): \(w.output)")
            }
        }

        let log = try Self.runLog(in: dir)
        let losses = log.filter { $0["type"] as? String == "step" }.compactMap { $0["loss"] as? Double }
        #expect(losses.count == 20)
        if losses.count == 20 {
            let first = losses.prefix(3).reduce(0, +) / 3, last = losses.suffix(3).reduce(0, +) / 3
            #expect(last < 0.75 * first, "loss did not fall: \(losses)")
        }
        let evals = log.filter { $0["type"] as? String == "eval" }
        #expect(evals.count == 1)
        if let e = evals.last {
            #expect(e["step"] as? Int == 20)
            let accuracy = e["accuracy"] as? Double ?? 0
            #expect(accuracy > 0.5, "test accuracy \(accuracy) after 20 steps")
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: fashionMNIST + "/train-labels-idx1-ubyte.gz")))
    func missingDataExitsWithStatus3() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (server, port) = try Self.startServer(job: #"{"name": "e2e-missing", "model": "mlp", "global_batch": 64, "workers": 1, "steps": 5}"#, in: dir)
        let missing = dir.appendingPathComponent("no-data").path
        let worker = try Child("lars-worker", ["--server", "127.0.0.1:\(port)", "--data-dir", missing],
                               log: dir.appendingPathComponent("worker.log"))
        let status = worker.wait(timeout: 60)
        #expect(status == 3, "worker: \(worker.output)")
        #expect(worker.output.contains("train-images-idx3-ubyte"), "names no file: \(worker.output)")
        #expect(worker.output.contains(missing))
        #expect(worker.output.contains("apt-get install dataset-fashion-mnist"))
        usleep(300_000)
        server.process.terminate()
        _ = server.wait(timeout: 30)
        #expect(server.output.contains("dataset"), "the server logged no ERROR(dataset): \(server.output)")
    }

    @Test(arguments: [["--server", "no-port"], ["--threads", "0"], ["--micro-batch", "0"], ["--no-such-flag"]])
    func badFlagExitsWithStatus2(_ flags: [String]) throws {
        let r = try BuiltBinary.run("lars-worker", flags, timeout: 30)
        #expect(r.status == 2, "stderr: \(r.stderr)")
        #expect(r.stderr.contains(flags[0]), "stderr: \(r.stderr)")
    }

    /// Writes an MNIST-format set of `count` training and test samples (plain IDX files); the
    /// test images are `testSide` pixels square, the training images 28.
    static func writeTinyDataset(to dir: URL, count: Int, testSide: Int = 28) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        func header(_ magic: UInt32, _ dims: [UInt32]) -> Data {
            Data(([magic] + dims).flatMap { v in (0..<4).reversed().map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } })
        }
        for (prefix, side) in [("train", 28), ("t10k", testSide)] {
            try (header(0x0000_0803, [UInt32(count), UInt32(side), UInt32(side)]) + Data(repeating: 128, count: count * side * side))
                .write(to: dir.appendingPathComponent("\(prefix)-images-idx3-ubyte"))
            try (header(0x0000_0801, [UInt32(count)]) + Data((0..<count).map { UInt8($0 % 10) }))
                .write(to: dir.appendingPathComponent("\(prefix)-labels-idx1-ubyte"))
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: fashionMNIST + "/train-labels-idx1-ubyte.gz")))
    func otherDataExitsWithStatus3() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let other = dir.appendingPathComponent("other-data")
        try Self.writeTinyDataset(to: other, count: 100)
        let (server, port) = try Self.startServer(job: """
            {"name": "e2e-other", "model": "mlp", "dataset": {"dir": "\(Self.fashionMNIST)"}, "epochs": 1,
             "global_batch": 8192, "workers": 1}
            """, in: dir)
        let worker = try Child("lars-worker", ["--server", "127.0.0.1:\(port)", "--data-dir", other.path],
                               log: dir.appendingPathComponent("worker.log"))
        let status = worker.wait(timeout: 60)
        #expect(status == 3, "worker: \(worker.output)")
        #expect(worker.output.contains(other.appendingPathComponent("train-labels-idx1-ubyte").path), "names no file: \(worker.output)")
        #expect(worker.output.contains("not the job's data set"))
        #expect(worker.output.contains("apt-get install dataset-fashion-mnist"))
        server.process.terminate()
        #expect(server.wait(timeout: 30) == 0)
    }

    /// Waits up to `timeout` seconds for `file` to appear in `dir`.
    static func waitForFile(_ file: String, in dir: URL, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path) { return true }
            usleep(20_000)
        }
        return false
    }

    /// The server is killed (SIGKILL) after its step-10 checkpoint of 100 steps (ample time, on a
    /// loaded machine, to kill it before it finishes) and started again with
    /// --resume on the same port: both lars-worker processes find it on their own, training goes
    /// on from the server's step, and the job ends with every process exiting 0.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: fashionMNIST + "/train-labels-idx1-ubyte.gz")))
    func workersReconnectToARestartedServerAndFinishTheJob() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let job = """
            {"name": "e2e-crash", "model": "mlp", "global_batch": 512, "workers": 2, "steps": 100, "seed": 11,
             "checkpoint_every": 5,
             "optimizer": {"name": "lars", "eta": 0.001, "weight_decay": 0.0005, "momentum": 0.9},
             "schedule": {"name": "polynomial", "peak_rate": 4, "warmup_epochs": 0.2, "power": 2}}
            """
        let (first, port) = try Self.startServer(job: job, in: dir, port: ServerProcessTests.freePort(), log: "server-1.log")
        let workers = try (0..<2).map { rank in
            try Child("lars-worker", ["--server", "127.0.0.1:\(port)", "--name", "crash-\(rank)", "--progress-every", "0"],
                      log: dir.appendingPathComponent("worker-\(rank).log"))
        }
        #expect(Self.waitForFile("step-000000010.safetensors", in: dir, timeout: 120), "no checkpoint: \(first.output)")
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        let (second, _) = try Self.startServer(job: job, in: dir, port: port, extraArguments: ["--resume"], log: "server-2.log")

        let statuses = workers.map { $0.wait(timeout: 240) }
        #expect(second.wait(timeout: 30) == 0, "server: \(second.output)")
        #expect(second.output.contains("resumed from checkpoint"), "server: \(second.output)")
        for (rank, w) in workers.enumerated() {
            #expect(statuses[rank] == 0, "worker \(rank): \(w.output)")
            #expect(w.output.contains("lost the connection to the server; reconnecting"), "worker \(rank): \(w.output)")
            #expect(w.output.contains("reconnected"), "worker \(rank): \(w.output)")
            #expect(w.output.contains("bye (done)"), "worker \(rank): \(w.output)")
        }
        // Every step of the job was closed by one server or the other, the last by the second.
        // (The first server's /dev/shm file, left by the SIGKILL, went when the second started.)
        let steps = Set(try Self.runLog(in: dir).filter { $0["type"] as? String == "step" }.compactMap { $0["step"] as? Int })
        #expect(steps == Set(0..<100), "steps in the run log: \(steps.sorted())")
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("step-000000100.safetensors").path))
    }

    /// With the server gone for good, lars-worker keeps trying for --reconnect-timeout, then
    /// exits with status 1 and says it could not reach the server.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: fashionMNIST + "/train-labels-idx1-ubyte.gz")))
    func aWorkerGivesUpWithStatus1WhenTheServerStaysAway() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (server, port) = try Self.startServer(job: """
            {"name": "e2e-gone", "model": "mlp", "global_batch": 256, "workers": 1, "steps": 100000, "checkpoint_every": 2}
            """, in: dir, extraArguments: ["--no-shared-weights"])  // killed, it would leave its /dev/shm file behind
        let worker = try Child("lars-worker", ["--server", "127.0.0.1:\(port)", "--progress-every", "0", "--reconnect-timeout", "2"],
                               log: dir.appendingPathComponent("worker.log"))
        #expect(Self.waitForFile("step-000000002.safetensors", in: dir, timeout: 120), "no checkpoint: \(server.output)")
        // Taken before the kill: the worker may see the connection drop before waitUntilExit returns.
        let lost = Date()
        kill(server.process.processIdentifier, SIGKILL)
        server.process.waitUntilExit()
        #expect(worker.wait(timeout: 60) == 1, "worker: \(worker.output)")
        let took = Date().timeIntervalSince(lost)
        #expect(took >= 2, "gave up after \(took) s of a 2 s reconnect timeout")
        #expect(worker.output.contains("could not reach the server at 127.0.0.1:\(port)"), "worker: \(worker.output)")
    }

    /// Test images of another size than the training images: refused before training, not
    /// evaluated in the wrong stride (or crashing) at the end of the first epoch.
    @Test func testImagesOfAnotherSizeExitWithStatus3() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("odd-data")
        try Self.writeTinyDataset(to: data, count: 100, testSide: 20)
        let (server, port) = try Self.startServer(job: #"{"name": "e2e-size", "model": "mlp", "global_batch": 64, "workers": 1, "steps": 5}"#, in: dir)
        let worker = try Child("lars-worker", ["--server", "127.0.0.1:\(port)", "--data-dir", data.path],
                               log: dir.appendingPathComponent("worker.log"))
        #expect(worker.wait(timeout: 60) == 3, "worker: \(worker.output)")
        #expect(worker.output.contains(data.appendingPathComponent("t10k-images-idx3-ubyte").path), "names no file: \(worker.output)")
        #expect(worker.output.contains("20x20") && worker.output.contains("28x28"), "worker: \(worker.output)")
        server.process.terminate()
        _ = server.wait(timeout: 30)
    }

    /// A job on another MNIST-format set: a worker without it is told where that set must be,
    /// not to install Fashion-MNIST.
    @Test func missingDataOfAnotherSetNamesThatSet() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let served = dir.appendingPathComponent("tiny")
        try Self.writeTinyDataset(to: served, count: 100)
        let (server, port) = try Self.startServer(job: """
            {"name": "e2e-tiny", "model": "mlp", "dataset": {"name": "tiny-mnist", "dir": "\(served.path)"}, "epochs": 1,
             "global_batch": 50, "workers": 1}
            """, in: dir)
        let missing = dir.appendingPathComponent("not-here").path
        let worker = try Child("lars-worker", ["--server", "127.0.0.1:\(port)", "--data-dir", missing],
                               log: dir.appendingPathComponent("worker.log"))
        #expect(worker.wait(timeout: 60) == 3, "worker: \(worker.output)")
        #expect(worker.output.contains("\"tiny-mnist\" must be in \(missing)"), "worker: \(worker.output)")
        #expect(!worker.output.contains("apt-get"), "worker: \(worker.output)")
        server.process.terminate()
        _ = server.wait(timeout: 30)
    }
}
