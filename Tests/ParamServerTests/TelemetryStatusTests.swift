import Foundation
import Testing

@testable import ParamServer

@Suite("Telemetry: /status document")
struct TelemetryStatusTests {
    static func status(_ telemetry: ServerTelemetry) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: telemetry.renderStatus())
        return try #require(value as? [String: Any])
    }

    @Test("before the first step: every key present, unknowns null")
    func beforeFirstStep() throws {
        let status = try Self.status(TelemetryTestKit.telemetry())
        for key in [
            "step", "epoch", "learning_rate", "loss", "test_accuracy", "test_loss", "waiting_seconds",
            "last_step_time",
        ] {
            #expect(status.keys.contains(key), "\(key) missing")
            #expect(status[key] is NSNull, "\(key) should be null: \(String(describing: status[key]))")
        }
        #expect(status["state"] as? String == "waiting")
        #expect(status["total_steps"] as? Int == 100)
        #expect(status["steps_total"] as? Int == 0)
        #expect(status["skipped_steps_total"] as? Int == 0)
        #expect((status["workers"] as? [Any])?.isEmpty == true)
        #expect((status["missing_ranks"] as? [Any])?.isEmpty == true)
        let job = try #require(status["job"] as? [String: Any])
        #expect(job["name"] as? String == "test-job")
        #expect(job["model"] as? String == "mlp")
        let config = try #require(job["config"] as? [String: Any])
        #expect(config["global_batch"] as? Int == 64)
        let layers = try #require(status["layers"] as? [[String: Any]])
        #expect(layers.map { $0["name"] as? String } == ["fc1.weight", "fc1.bias"])
        for layer in layers {
            for key in ["weight_norm", "gradient_norm", "trust_ratio", "effective_rate"] {
                #expect(layer[key] is NSNull, "\(key)")
            }
            #expect((layer["history"] as? [Any])?.isEmpty == true)
        }
        let rejected = try #require(status["rejected_frames"] as? [String: Int])
        #expect(rejected == Dictionary(uniqueKeysWithValues: RejectReason.allCases.map { ($0.rawValue, 0) }))
    }

    @Test("after steps: values, workers, missing ranks, history capped at 64")
    func afterSteps() throws {
        let telemetry = TelemetryTestKit.telemetry()
        telemetry.setState(.training)
        telemetry.workerJoined(rank: 1, name: "w1", address: "127.0.0.1:5001")
        telemetry.workerJoined(rank: 0, name: "w0", address: "127.0.0.1:5000")
        telemetry.workerPushed(rank: 0, at: Date(timeIntervalSince1970: 1_700_000_000))
        for step in 0..<70 {
            telemetry.stepClosed(
                step: step, epoch: Double(step) / 10, rate: 0.5, loss: 2.0 - Double(step) / 128, duration: 0.01,
                skipped: false, layers: TelemetryTestKit.layerFigures(step: step))
        }
        telemetry.stepClosed(step: 70, epoch: 7, rate: 0.25, loss: nil, duration: 0.01, skipped: true, layers: nil)
        telemetry.evaluated(step: 70, epoch: 7, testLoss: 0.4, accuracy: 0.9)
        telemetry.setMissing(ranks: [1], waitingSeconds: 12.5)
        telemetry.rejected(.wrongDtype)

        let status = try Self.status(telemetry)
        #expect(status["state"] as? String == "training")
        #expect(status["step"] as? Int == 70)
        #expect(status["epoch"] as? Double == 7)
        #expect(status["learning_rate"] as? Double == 0.25)
        #expect(status["loss"] as? Double == 2.0 - 69.0 / 128)
        #expect(status["test_accuracy"] as? Double == 0.9)
        #expect(status["test_loss"] as? Double == 0.4)
        #expect(status["steps_total"] as? Int == 71)
        #expect(status["skipped_steps_total"] as? Int == 1)
        #expect(status["missing_ranks"] as? [Int] == [1])
        #expect(status["waiting_seconds"] as? Double == 12.5)
        let workers = try #require(status["workers"] as? [[String: Any]])
        #expect(workers.map { $0["rank"] as? Int } == [0, 1])
        #expect(workers[0]["address"] as? String == "127.0.0.1:5000")
        #expect(workers[0]["last_push_time"] as? Double == 1_700_000_000)
        #expect(workers[1]["last_push_time"] is NSNull)
        let layers = try #require(status["layers"] as? [[String: Any]])
        #expect(layers[0]["weight_norm"] as? Double == 10)
        #expect(layers[0]["gradient_norm"] as? Double == 2)
        #expect(layers[0]["effective_rate"] as? Double == 0.01)
        #expect(layers[0]["trust_ratio"] as? Double == 70.0 / 64)
        let history = try #require(layers[0]["history"] as? [[String: Any]])
        #expect(history.count == ServerTelemetry.historyLength)
        #expect(history.first?["step"] as? Int == 70 - ServerTelemetry.historyLength)
        #expect(history.last?["step"] as? Int == 69)
        #expect((status["rejected_frames"] as? [String: Int])?["wrong_dtype"] == 1)
    }

    @Test("non-finite values become null, and a job config that is not an object is null")
    func nonFiniteAndBadConfig() throws {
        let telemetry = ServerTelemetry(
            jobName: "x", jobJSON: "not json", model: "from-worker", layerNames: ["w"], totalSteps: 1,
            stepsPerEpoch: 1, workers: 1, version: "v")
        telemetry.stepClosed(
            step: 0, epoch: 1, rate: 1, loss: .nan, duration: 0.1, skipped: false,
            layers: [LayerFigures(weightNorm: .infinity, gradientNorm: 0, trustRatio: .nan, effectiveRate: 1)])
        let status = try Self.status(telemetry)
        #expect(status["loss"] is NSNull)
        let job = try #require(status["job"] as? [String: Any])
        #expect(job["config"] is NSNull)
        let layer = try #require((status["layers"] as? [[String: Any]])?.first)
        #expect(layer["weight_norm"] is NSNull)
        #expect(layer["trust_ratio"] is NSNull)
        #expect(layer["gradient_norm"] as? Double == 0)
        #expect(telemetry.renderMetrics().contains("lars_loss nan\n"))
    }
}
