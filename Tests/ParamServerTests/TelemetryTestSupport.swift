import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

@testable import ParamServer

/// Helpers of the telemetry tests, in a namespace of their own (other test files share the module).
enum TelemetryTestKit {
    /// A telemetry for a tiny two-layer layout, as most telemetry tests use it.
    static func telemetry(runLog: RunLog? = nil) -> ServerTelemetry {
        ServerTelemetry(
            jobName: "test-job", jobJSON: #"{"model": "mlp", "global_batch": 64, "optimizer": {"eta": 0.001}}"#,
            model: "mlp", layerNames: ["fc1.weight", "fc1.bias"], totalSteps: 100, stepsPerEpoch: 10,
            workers: 2, version: "0.1.0-test", runLog: runLog)
    }

    /// Figures for the two test layers at a given step.
    static func layerFigures(step: Int) -> [LayerFigures] {
        [
            LayerFigures(weightNorm: 10, gradientNorm: 2, trustRatio: Double(step + 1) / 64, effectiveRate: 0.01),
            LayerFigures(weightNorm: 1, gradientNorm: 0.5, trustRatio: 1, effectiveRate: 2),
        ]
    }

    /// A response as the test client saw it.
    struct Response {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: String

        /// The body parsed as a JSON object.
        func jsonObject() throws -> [String: Any] {
            let value = try JSONSerialization.jsonObject(with: Data(body.utf8))
            guard let object = value as? [String: Any] else { throw Failure("not a JSON object: \(body)") }
            return object
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Sends `requests` one after the other on one HTTP/1.1 connection and returns the responses.
    static func httpExchange(
        port: Int, _ requests: [(method: HTTPMethod, path: String)]
    ) async throws -> [Response] {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var responses: [Response] = []
            var parts = inbound.makeAsyncIterator()
            for request in requests {
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: "127.0.0.1:\(port)")
                try await outbound.write(
                    .head(HTTPRequestHead(version: .http1_1, method: request.method, uri: request.path, headers: headers)))
                try await outbound.write(.end(nil))
                var head: HTTPResponseHead?
                var body = ByteBuffer()
                reading: while let part = try await parts.next() {
                    switch part {
                    case .head(let responseHead): head = responseHead
                    case .body(var chunk): body.writeBuffer(&chunk)
                    case .end: break reading
                    }
                }
                guard let head else { throw Failure("connection closed before a response to \(request.path)") }
                responses.append(
                    Response(status: head.status, headers: head.headers, body: String(buffer: body)))
            }
            return responses
        }
    }

    /// One GET on its own connection.
    static func httpGet(port: Int, _ path: String) async throws -> Response {
        try await httpExchange(port: port, [(.GET, path)])[0]
    }

    /// A port that was free a moment ago (for a child process that needs one given to it).
    static func freeLocalPort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }

    /// Runs `executable` with `arguments`, feeding it `input`; returns its status and its output
    /// (stdout and stderr together).
    static func runProcess(_ executable: String, _ arguments: [String], input: String = "") throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let stdin = Pipe()
        let output = Pipe()
        process.standardInput = stdin
        process.standardOutput = output
        process.standardError = output
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// A fresh empty directory under the system's temporary directory.
    static func makeTemporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lars-telemetry-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static let logger = Logger(label: "lars-ps.telemetry-tests")
}
