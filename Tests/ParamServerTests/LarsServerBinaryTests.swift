import Foundation
import Testing

/// The built `lars-server` binary: flag and config errors exit with status 2, say what is
/// wrong in one message, and start nothing.
@Suite("lars-server binary")
struct LarsServerBinaryTests {
    func writeConfig(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "lars-config-\(UUID().uuidString).json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var config: String
        var flags: [String]
        var mentions: [String]
        var testDescription: String { mentions.joined(separator: " / ") }
    }

    @Test(arguments: [
        Case(config: "{\n  \"model\": \"mlp\",\n  \"steps\": 5\n  \"workers\": 1\n}", flags: [], mentions: ["line 4"]),
        Case(config: #"{"model": "mlp", "steps": 5, "optimizer": {"momentum": 1.5}}"#, flags: [], mentions: ["optimizer.momentum", "1.5", "[0, 1)"]),
        Case(config: #"{"model": "mlp", "steps": 5, "optimizer": {"denominator": "sum"}}"#, flags: [], mentions: ["optimizer.denominator", "sum_of_norms"]),
        Case(config: #"{"model": "mlp", "steps": 5, "global_batch": 8}"#, flags: ["--workers", "0"], mentions: ["workers", "1...4096"]),
        Case(config: #"{"model": "mlp", "steps": 5}"#, flags: ["--port", "70000"], mentions: ["--port", "70000"]),
        Case(config: #"{"model": "mlp", "steps": 5}"#, flags: ["--no-such-flag"], mentions: ["no-such-flag"]),
        Case(config: #"{"model": "mlp", "steps": 5, "schedule": {"warmup_epochs": 3}}"#, flags: [], mentions: ["schedule.warmup_epochs"]),
    ])
    func badConfigExitsWithStatus2(_ c: Case) throws {
        let path = try writeConfig(c.config)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try BuiltBinary.run("lars-server", ["--config", path, "--port", "0", "--http-port", "0"] + c.flags, timeout: 30)
        #expect(r.status == 2, "stderr: \(r.stderr)")
        for m in c.mentions { #expect(r.stderr.contains(m), "stderr lacks \(m): \(r.stderr)") }
        #expect(!r.stderr.contains("listening"), "started despite the error: \(r.stderr)")
    }

    @Test func missingConfigFileExitsWithStatus2() throws {
        let r = try BuiltBinary.run("lars-server", ["--config", "/nonexistent/job.json"], timeout: 30)
        #expect(r.status == 2)
        #expect(r.stderr.contains("/nonexistent/job.json"))
    }

    /// `--resume` over a damaged checkpoint: refused with the file named, nothing started.
    @Test func corruptCheckpointIsRefusedOnResume() throws {
        let dir = NSTemporaryDirectory() + "lars-corrupt-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let damaged = dir + "/step-000000005.safetensors"
        try Data([0x40, 0, 0, 0, 0, 0, 0, 0] + Array("{\"w\": {\"dtype\": \"F32\"".utf8)).write(to: URL(fileURLWithPath: damaged))
        let path = try writeConfig(#"{"model": "mlp", "steps": 5}"#)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try BuiltBinary.run(
            "lars-server", ["--config", path, "--port", "0", "--http-port", "0", "--checkpoint-dir", dir, "--resume"], timeout: 30)
        #expect(r.status == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("step-000000005.safetensors"), "\(r.stderr)")
        #expect(!r.stderr.contains("listening"))
    }
}
