import Foundation
import NIOHTTP1
import Testing

@testable import ParamServer

@Suite("Telemetry: HTTP server over a real socket")
struct TelemetryHTTPTests {
    /// Runs `body` against a server on an ephemeral loopback port, shutting it down after.
    static func withServer(
        _ telemetry: ServerTelemetry, _ body: (Int) async throws -> Void
    ) async throws {
        let server = HTTPServer(host: "127.0.0.1", port: 0, telemetry: telemetry, logger: TelemetryTestKit.logger)
        let port = try await server.start()
        do {
            try await body(port)
        } catch {
            try await server.shutdown()
            throw error
        }
        try await server.shutdown()
    }

    @Test("/metrics, /status, /healthz, 404 and 405, before and after the first step")
    func endpoints() async throws {
        let telemetry = TelemetryTestKit.telemetry()
        try await Self.withServer(telemetry) { port in
            let metrics = try await TelemetryTestKit.httpGet(port: port, "/metrics")
            #expect(metrics.status == .ok)
            #expect(metrics.headers["Content-Type"] == ["text/plain; version=0.0.4; charset=utf-8"])
            #expect(metrics.body.contains("\nlars_steps_total 0\n") || metrics.body.hasPrefix("lars_steps_total 0\n"))
            #expect(metrics.body.contains("# TYPE lars_trust_ratio gauge"))

            var status = try await TelemetryTestKit.httpGet(port: port, "/status")
            #expect(status.status == .ok)
            #expect(status.headers["Content-Type"] == ["application/json"])
            var object = try status.jsonObject()
            #expect(object["step"] is NSNull)
            #expect(object["loss"] is NSNull)
            #expect(object["test_accuracy"] is NSNull)

            let health = try await TelemetryTestKit.httpGet(port: port, "/healthz")
            #expect(health.status == .ok)
            #expect(health.body == "ok\n")

            let missing = try await TelemetryTestKit.httpGet(port: port, "/nope")
            #expect(missing.status == .notFound)
            let posted = try await TelemetryTestKit.httpExchange(port: port, [(.POST, "/metrics")])[0]
            #expect(posted.status == .methodNotAllowed)

            telemetry.stepClosed(
                step: 0, epoch: 0.1, rate: 0.5, loss: 1.5, duration: 0.01, skipped: false,
                layers: TelemetryTestKit.layerFigures(step: 0))
            status = try await TelemetryTestKit.httpGet(port: port, "/status?pretty=0")
            object = try status.jsonObject()
            #expect(object["step"] as? Int == 0)
            #expect(object["loss"] as? Double == 1.5)
            #expect(object["learning_rate"] as? Double == 0.5)
            let metricsAfter = try await TelemetryTestKit.httpGet(port: port, "/metrics")
            #expect(metricsAfter.body.contains("lars_steps_total 1\n"))
        }
    }

    @Test("several requests on one kept-alive connection")
    func keepAlive() async throws {
        try await Self.withServer(TelemetryTestKit.telemetry()) { port in
            let responses = try await TelemetryTestKit.httpExchange(
                port: port, [(.GET, "/healthz"), (.GET, "/metrics"), (.GET, "/missing"), (.GET, "/status")])
            #expect(responses.map(\.status) == [.ok, .ok, .notFound, .ok])
            #expect(responses.allSatisfy { !$0.headers["Connection"].contains("close") })
            #expect(try responses[3].jsonObject()["state"] as? String == "waiting")
        }
    }

    @Test("a real prometheus server scrapes the endpoint")
    func prometheusScrapes() async throws {
        let prometheus = "/usr/bin/prometheus"
        try #require(
            FileManager.default.isExecutableFile(atPath: prometheus),
            "prometheus is not installed (Debian package `prometheus`, in scripts/test's apt list)")
        let telemetry = TelemetryTestKit.telemetry()
        for step in 0..<3 {
            telemetry.stepClosed(
                step: step, epoch: Double(step) / 10, rate: 0.5, loss: 1.5, duration: 0.01, skipped: false,
                layers: TelemetryTestKit.layerFigures(step: step))
        }
        try await Self.withServer(telemetry) { port in
            let directory = try TelemetryTestKit.makeTemporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let config = directory.appendingPathComponent("prometheus.yml")
            try """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: lars
                static_configs:
                  - targets: ['127.0.0.1:\(port)']
            """.write(to: config, atomically: true, encoding: .utf8)
            let apiPort = try await TelemetryTestKit.freeLocalPort()
            let logURL = directory.appendingPathComponent("prometheus.log")
            _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
            let log = try FileHandle(forWritingTo: logURL)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: prometheus)
            process.arguments = [
                "--config.file=\(config.path)",
                "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
                "--web.listen-address=127.0.0.1:\(apiPort)",
            ]
            process.standardOutput = log
            process.standardError = log
            try process.run()
            defer {
                process.terminate()
                process.waitUntilExit()
                try? log.close()
            }

            let expected = TelemetryMetricsTests.value("lars_steps_total", in: telemetry)
            #expect(expected == "3")
            var seen: String?
            var trustSeries = 0
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                try await Task.sleep(for: .milliseconds(250))
                guard
                    let response = try? await TelemetryTestKit.httpGet(
                        port: apiPort, "/api/v1/query?query=lars_steps_total"),
                    response.status == .ok,
                    let results = (try? response.jsonObject()).flatMap(Self.results)
                else { continue }
                seen = (results.first?["value"] as? [Any])?.last as? String
                if seen == expected {
                    let trust = try await TelemetryTestKit.httpGet(port: apiPort, "/api/v1/query?query=lars_trust_ratio")
                    trustSeries = try Self.results(trust.jsonObject())?.count ?? 0
                    break
                }
            }
            let prometheusLog = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
            #expect(seen == expected, "prometheus saw lars_steps_total = \(seen ?? "nothing"); its log:\n\(prometheusLog)")
            #expect(trustSeries == telemetry.layerNames.count)
        }
    }

    /// `data.result` of a Prometheus instant query answer.
    static func results(_ answer: [String: Any]) -> [[String: Any]]? {
        (answer["data"] as? [String: Any])?["result"] as? [[String: Any]]
    }
}
