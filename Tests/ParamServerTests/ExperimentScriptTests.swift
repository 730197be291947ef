import Foundation
import Testing

/// `scripts/experiment`'s driver on the built binaries and real Fashion-MNIST, with a grid small
/// enough for a test (batch 16384, one epoch: 3 steps per run): every run of the selection
/// leaves one result line, the seed runs follow the sweep at its best rate, and a second sitting
/// redoes only what the first did not finish.
@Suite("scripts/experiment", .serialized, .timeLimit(.minutes(10)))
struct ExperimentScriptTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Runs the driver with the test's grid; returns its exit status and output. Waits with
    /// `Task.sleep`, not a blocking wait, so that other suites' async work keeps its threads.
    static func experiment(_ dir: URL, _ extra: [String] = []) async throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.currentDirectoryURL = root
        p.arguments = ["python3", "scripts/lib/experiment.py", "--bin", BuiltBinary.directory.path,
                       "--model", "mlp", "--batch", "16384", "--rates", "sgd=0.4", "--rates", "lars=16,4", "--rates", "lars-all=16",
                       "--epochs", "mlp=1", "--warmup", "mlp=0.5", "--seeds", "2", "--progress", "0",
                       "--results", dir.appendingPathComponent("results.jsonl").path,
                       "--runs-dir", dir.appendingPathComponent("runs").path,
                       "--logs-dir", dir.appendingPathComponent("logs").path, "--keep-logs", "16384"] + extra
        let out = dir.appendingPathComponent("driver-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let handle = try FileHandle(forWritingTo: out)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        while p.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        p.waitUntilExit()
        try handle.close()
        return (p.terminationStatus, try String(contentsOf: out, encoding: .utf8))
    }

    /// A fresh directory for one test's results, run directories and logs.
    static func scratchDirectory() throws -> URL {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("lars-experiment-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func results(_ dir: URL) throws -> [[String: Any]] {
        let text = try String(contentsOf: dir.appendingPathComponent("results.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map {
            try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    @Test("a grid runs every run once, seeds the best rate, and resumes without redoing finished runs")
    func gridAndResume() async throws {
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }

        let (status, output) = try await Self.experiment(dir)
        #expect(status == 0, "driver output:\n\(output)")
        let first = try Self.results(dir)
        // Sweep: sgd 0.4, lars 16 and 4, lars-all 16 (seed 1); then seed 2 at each optimizer's
        // best rate.
        #expect(first.count == 7, "results:\n\(first)")
        let keys = Set(first.compactMap { $0["key"] as? String })
        #expect(keys.count == 7)
        for r in first {
            let key = r["key"] as? String ?? "?"
            #expect(r["steps"] as? Int == 3, "\(key): 3 steps of 16384 in one epoch")
            #expect(r["server_exit"] as? Int == 0, "\(key)")
            let accuracy = try #require(r["final_accuracy"] as? Double, "\(key): an evaluation arrived")
            #expect(accuracy > 0.2 && accuracy <= 1, "\(key): accuracy \(accuracy) beats chance (0.1) after 3 steps")
            #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("logs/\(key).jsonl.gz").path))
            // The job the server ran: `lars` leaves the biases out of the adapt mask, `lars-all` not.
            let optimizer = (r["config"] as? [String: Any])?["optimizer"] as? [String: Any]
            switch r["optimizer"] as? String {
            case "lars": #expect(optimizer?["adapt"] as? String == "rank2", "\(key)")
            case "lars-all":
                #expect(optimizer?["adapt"] as? String == "all", "\(key)")
                #expect(optimizer?["name"] as? String == "lars", "\(key)")
            default: #expect(optimizer?["name"] as? String == "sgd", "\(key)")
            }
        }
        let seeded = first.filter { $0["seed"] as? Int == 2 }
        #expect(Set(seeded.compactMap { $0["optimizer"] as? String }) == ["sgd", "lars", "lars-all"])
        let larsSweep = first.filter { $0["optimizer"] as? String == "lars" && $0["seed"] as? Int == 1 }
        // The driver's rule: highest final accuracy, the lower rate on a tie.
        func rank(_ r: [String: Any]) -> (Double, Double) { (r["final_accuracy"] as? Double ?? -1, -(r["peak_rate"] as? Double ?? 0)) }
        let bestLars = try #require(larsSweep.max { rank($0) < rank($1) })
        let larsSeed2 = try #require(seeded.first { $0["optimizer"] as? String == "lars" })
        #expect(larsSeed2["peak_rate"] as? Double == bestLars["peak_rate"] as? Double, "seed 2 runs at the sweep's best rate")

        // A second sitting finds nothing to do.
        let (again, againOutput) = try await Self.experiment(dir)
        #expect(again == 0)
        #expect(againOutput.contains("(0 runs in"), "driver output:\n\(againOutput)")
        #expect(try Self.results(dir).count == 7)

        // An interrupted sitting (the last result never written) redoes exactly that run.
        let path = dir.appendingPathComponent("results.jsonl")
        let lines = try String(contentsOf: path, encoding: .utf8).split(separator: "\n")
        let dropped = try #require(first.last?["key"] as? String)
        try (lines.dropLast().joined(separator: "\n") + "\n").write(to: path, atomically: true, encoding: .utf8)
        let (third, thirdOutput) = try await Self.experiment(dir)
        #expect(third == 0)
        #expect(thirdOutput.contains("(1 runs in"), "driver output:\n\(thirdOutput)")
        #expect(thirdOutput.contains(dropped))
        let final = try Self.results(dir)
        #expect(final.count == 7)
        #expect(Set(final.compactMap { $0["key"] as? String }) == keys)
    }

    @Test("bad flags are refused with a message naming the flag")
    func badFlags() async throws {
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (status, output) = try await Self.experiment(dir, ["--epochs", "resnet=3"])
        #expect(status == 2)
        #expect(output.contains("--epochs resnet=3"), "output:\n\(output)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("results.jsonl").path))
    }
}
