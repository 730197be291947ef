import Foundation
import Testing

@testable import ParamServer

@Suite("Telemetry: run log")
struct TelemetryRunLogTests {
    static func lines(_ url: URL) throws -> [[String: Any]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map { line in
            let value = try JSONSerialization.jsonObject(with: Data(line.utf8))
            return try #require(value as? [String: Any], "not an object: \(line)")
        }
    }

    @Test("step, eval and state lines parse as JSON; the directory is created; non-finite is null")
    func linesParse() throws {
        let directory = try TelemetryTestKit.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("nested/run/run.jsonl")
        let telemetry = TelemetryTestKit.telemetry(runLog: RunLog(path: url.path, logger: TelemetryTestKit.logger))
        telemetry.setState(.training)
        telemetry.stepClosed(
            step: 0, epoch: 0.1, rate: 0.5, loss: 2.5, duration: 0.02, skipped: false,
            layers: TelemetryTestKit.layerFigures(step: 0))
        telemetry.stepClosed(step: 1, epoch: 0.2, rate: 0.5, loss: .infinity, duration: 0.02, skipped: true, layers: nil)
        telemetry.stepClosed(
            step: 2, epoch: 0.3, rate: 0.5, loss: nil, duration: 0.02, skipped: false,
            layers: [
                LayerFigures(weightNorm: 1, gradientNorm: .nan, trustRatio: .nan, effectiveRate: 0),
                LayerFigures(weightNorm: 1, gradientNorm: 1, trustRatio: 1, effectiveRate: 0.5),
            ])
        telemetry.evaluated(step: 2, epoch: 0.3, testLoss: 0.75, accuracy: 0.5)
        telemetry.setState(.diverged, detail: "loss inf")

        let lines = try Self.lines(url)
        #expect(lines.map { $0["type"] as? String } == ["state", "step", "step", "step", "eval", "state"])
        let first = lines[1]
        #expect(first["step"] as? Int == 0)
        #expect(first["epoch"] as? Double == 0.1)
        #expect(first["rate"] as? Double == 0.5)
        #expect(first["loss"] as? Double == 2.5)
        #expect(first["skipped"] as? Bool == false)
        #expect(first["duration"] as? Double == 0.02)
        let layers = try #require(first["layers"] as? [[String: Any]])
        #expect(layers.map { $0["name"] as? String } == ["fc1.weight", "fc1.bias"])
        #expect(layers[0]["weight_norm"] as? Double == 10)
        #expect(layers[0]["gradient_norm"] as? Double == 2)
        #expect(layers[0]["trust_ratio"] as? Double == 1.0 / 64)
        #expect(lines[2]["skipped"] as? Bool == true)
        #expect(lines[2]["loss"] is NSNull)
        #expect(lines[2]["layers"] is NSNull)
        #expect(lines[3]["loss"] is NSNull)
        let third = try #require(lines[3]["layers"] as? [[String: Any]])
        #expect(third[0]["trust_ratio"] is NSNull)
        #expect(third[0]["gradient_norm"] is NSNull)
        let eval = lines[4]
        #expect(eval["step"] as? Int == 2)
        #expect(eval["epoch"] as? Double == 0.3)
        #expect(eval["test_loss"] as? Double == 0.75)
        #expect(eval["accuracy"] as? Double == 0.5)
        #expect(lines[5]["state"] as? String == "diverged")
        #expect(lines[5]["detail"] as? String == "loss inf")
    }

    @Test("a second run log on the same file appends")
    func appends() throws {
        let directory = try TelemetryTestKit.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("run.jsonl").path
        for step in 0..<2 {
            RunLog(path: path, logger: TelemetryTestKit.logger).appendEval(
                step: step, epoch: 1, testLoss: 1, accuracy: 0.5)
        }
        #expect(try Self.lines(URL(fileURLWithPath: path)).map { $0["step"] as? Int } == [0, 1])
    }

    @Test("an unwritable path is logged, never fatal")
    func unwritable() throws {
        let directory = try TelemetryTestKit.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let blocker = directory.appendingPathComponent("file")
        try Data("x".utf8).write(to: blocker)
        let log = RunLog(path: blocker.appendingPathComponent("run.jsonl").path, logger: TelemetryTestKit.logger)
        let telemetry = TelemetryTestKit.telemetry(runLog: log)
        telemetry.stepClosed(step: 0, epoch: 0, rate: 1, loss: 1, duration: 0, skipped: false, layers: nil)
        telemetry.evaluated(step: 0, epoch: 0, testLoss: 1, accuracy: 1)
        #expect(telemetry.renderMetrics().contains("lars_steps_total 1\n"))
    }
}
