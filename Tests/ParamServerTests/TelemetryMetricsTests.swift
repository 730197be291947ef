import Foundation
import Testing

@testable import ParamServer

@Suite("Telemetry: /metrics text")
struct TelemetryMetricsTests {
    /// Every family of DESIGN.md §5 with its type.
    static let families: [(name: String, type: String)] = [
        ("lars_steps_total", "counter"),
        ("lars_skipped_steps_total", "counter"),
        ("lars_step_duration_seconds", "histogram"),
        ("lars_loss", "gauge"),
        ("lars_test_accuracy", "gauge"),
        ("lars_test_loss", "gauge"),
        ("lars_learning_rate", "gauge"),
        ("lars_trust_ratio", "gauge"),
        ("lars_weight_norm", "gauge"),
        ("lars_gradient_norm", "gauge"),
        ("lars_workers_connected", "gauge"),
        ("lars_push_bytes_total", "counter"),
        ("lars_pulls_total", "counter"),
        ("lars_rejected_frames_total", "counter"),
        ("lars_last_step_timestamp_seconds", "gauge"),
        ("lars_build_info", "gauge"),
        ("lars_step", "gauge"),
        ("lars_epoch", "gauge"),
    ]

    static func lines(_ telemetry: ServerTelemetry) -> Set<String> {
        Set(telemetry.renderMetrics().split(separator: "\n").map(String.init))
    }

    /// The value of the one sample line starting with `series + " "`.
    static func value(_ series: String, in telemetry: ServerTelemetry) -> String? {
        lines(telemetry).first { $0.hasPrefix(series + " ") }.map { String($0.dropFirst(series.count + 1)) }
    }

    @Test("every family has # HELP and # TYPE, and every series a value before the first step")
    func beforeFirstStep() {
        let telemetry = TelemetryTestKit.telemetry()
        let lines = Self.lines(telemetry)
        for family in Self.families {
            #expect(lines.contains("# TYPE \(family.name) \(family.type)"), "\(family.name)")
            #expect(lines.contains { $0.hasPrefix("# HELP \(family.name) ") }, "\(family.name)")
        }
        for expected in [
            "lars_steps_total 0", "lars_skipped_steps_total 0", "lars_push_bytes_total 0",
            #"lars_pulls_total{via="shared_memory"} 0"#, #"lars_pulls_total{via="tcp"} 0"#,
            "lars_workers_connected 0.0", "lars_step 0.0", "lars_epoch 0.0", "lars_learning_rate 0.0",
            "lars_last_step_timestamp_seconds 0.0", "lars_loss nan", "lars_test_accuracy nan", "lars_test_loss nan",
            #"lars_trust_ratio{layer="fc1.weight"} nan"#, #"lars_trust_ratio{layer="fc1.bias"} nan"#,
            #"lars_weight_norm{layer="fc1.weight"} nan"#, #"lars_gradient_norm{layer="fc1.bias"} nan"#,
            #"lars_build_info{version="0.1.0-test"} 1.0"#,
            #"lars_step_duration_seconds_bucket{le="+Inf"} 0"#, "lars_step_duration_seconds_count 0",
        ] {
            #expect(lines.contains(expected), "missing line: \(expected)")
        }
        for reason in RejectReason.allCases {
            #expect(lines.contains(#"lars_rejected_frames_total{reason="\#(reason.rawValue)"} 0"#))
        }
    }

    @Test("updates show in the series")
    func afterUpdates() {
        let telemetry = TelemetryTestKit.telemetry()
        telemetry.workerJoined(rank: 0, name: "w0", address: "127.0.0.1:5000")
        telemetry.workerJoined(rank: 1, name: "w1", address: "127.0.0.1:5001")
        telemetry.workerLeft(rank: 1)
        telemetry.pushBytes(4096)
        telemetry.pushBytes(1024)
        telemetry.rejected(.stepClosed)
        telemetry.rejected(.nonFinite)
        telemetry.rejected(.nonFinite)
        telemetry.stepClosed(
            step: 0, epoch: 0.1, rate: 0.5, loss: 2.25, duration: 0.003, skipped: false,
            layers: TelemetryTestKit.layerFigures(step: 0))
        telemetry.stepClosed(step: 1, epoch: 0.2, rate: 0.75, loss: nil, duration: 0.2, skipped: true, layers: nil)
        telemetry.evaluated(step: 1, epoch: 0.2, testLoss: 0.5, accuracy: 0.875)

        let lines = Self.lines(telemetry)
        for expected in [
            "lars_steps_total 2", "lars_skipped_steps_total 1", "lars_push_bytes_total 5120",
            "lars_workers_connected 1.0", "lars_step 1.0", "lars_epoch 0.2", "lars_learning_rate 0.75",
            "lars_loss 2.25", "lars_test_loss 0.5", "lars_test_accuracy 0.875",
            // A skipped step keeps the last measured figures.
            #"lars_trust_ratio{layer="fc1.weight"} 0.015625"#, #"lars_trust_ratio{layer="fc1.bias"} 1.0"#,
            #"lars_weight_norm{layer="fc1.weight"} 10.0"#, #"lars_gradient_norm{layer="fc1.bias"} 0.5"#,
            #"lars_rejected_frames_total{reason="step_closed"} 1"#,
            #"lars_rejected_frames_total{reason="non_finite"} 2"#,
            #"lars_rejected_frames_total{reason="auth"} 0"#,
            #"lars_step_duration_seconds_bucket{le="0.001"} 0"#,
            #"lars_step_duration_seconds_bucket{le="0.005"} 1"#,
            #"lars_step_duration_seconds_bucket{le="0.25"} 2"#,
            #"lars_step_duration_seconds_bucket{le="+Inf"} 2"#,
            "lars_step_duration_seconds_count 2",
        ] {
            #expect(lines.contains(expected), "missing line: \(expected)")
        }
        let timestamp = Double(Self.value("lars_last_step_timestamp_seconds", in: telemetry) ?? "") ?? 0
        #expect(abs(timestamp - Date().timeIntervalSince1970) < 60)
    }

    @Test("promtool check metrics passes, before and after updates", arguments: [false, true])
    func promtoolAccepts(updated: Bool) throws {
        let telemetry = TelemetryTestKit.telemetry()
        if updated {
            telemetry.stepClosed(
                step: 0, epoch: 0.1, rate: 0.5, loss: 2.25, duration: 0.003, skipped: false,
                layers: TelemetryTestKit.layerFigures(step: 0))
            telemetry.evaluated(step: 0, epoch: 0.1, testLoss: 0.5, accuracy: 0.875)
            telemetry.rejected(.malformed)
        }
        let text = telemetry.renderMetrics()
        let result = try TelemetryTestKit.runProcess("/usr/bin/promtool", ["check", "metrics"], input: text)
        #expect(result.status == 0, "promtool: \(result.output)\n--- text:\n\(text)")
        #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "lint: \(result.output)")
    }
}
