import ArgumentParser
import Core
import Foundation
import Logging
import ParamServer

/// `lars-server --config configs/NAME.json [flags]`: runs one job. Flags override the file.
/// Exit status: 0 done (or shut down by a signal), 2 bad config or flags, 3 diverged,
/// 1 anything else (a port in use, a missing data set).
@main
struct LarsServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lars-server",
        abstract: "The LARS parameter server: owns the weights, applies LARS per layer, serves workers and /metrics.")

    @Option(help: "The job file (JSON): model, data set, global batch, epochs or steps, optimizer, schedule.")
    var config: String

    @Option(help: "Port workers connect to.") var port = 7070
    @Option(name: .customLong("http-port"), help: "Port of /metrics, /status and /healthz.") var httpPort = 9470
    @Option(help: "Address the worker port binds to.") var bind = "127.0.0.1"
    @Option(name: .customLong("http-bind"), help: "Address the HTTP port binds to.") var httpBind = "127.0.0.1"
    @Option(help: "Workers per step (N); overrides the file.") var workers: Int?
    @Option(name: .customLong("min-workers"), help: "Contributions that close a step (K < N: backup workers).") var minWorkers: Int?
    @Option(name: .customLong("step-deadline"), help: "Seconds before an incomplete step is reported (it stays open).") var stepDeadline: Double?
    @Option(name: .customLong("checkpoint-dir"), help: "Checkpoint directory (default runs/<job name>).") var checkpointDir: String?
    @Option(name: .customLong("checkpoint-every"), help: "Write a checkpoint every this many steps (0: only at the end).") var checkpointEvery: Int?
    @Option(name: .customLong("run-log"), help: "Run log, JSON lines (default run.jsonl in the checkpoint directory).") var runLog: String?
    @Flag(help: "Continue from the latest checkpoint in the checkpoint directory.") var resume = false
    @Flag(help: "Sum contributions in rank order: equal inputs give bit-identical weights.") var deterministic = false
    @Flag(inversion: .prefixedNo, help: "Serve pulls of workers on this host from a file in /dev/shm, and read their pushes from their gradient files; --no-shared-weights: always over TCP.")
    var sharedWeights = true
    @Option(name: .customLong("auth-token-file"), help: "File whose first line is the token workers must present.") var authTokenFile: String?

    /// Parses flags itself so that a bad flag exits with status 2, like a bad config.
    static func main() async {
        let command: LarsServer
        do {
            guard let parsed = try parseAsRoot() as? LarsServer else { throw CleanExit.helpRequest() }
            command = parsed
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                print(message)
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data("lars-server: \(message)\n".utf8))
            Foundation.exit(2)
        }
        Foundation.exit(await command.execute())
    }

    func execute() async -> Int32 {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "lars-server")
        logger.logLevel = .info
        let job: JobConfig
        let options: ServerOptions
        do {
            (job, options) = try resolve()
        } catch {
            FileHandle.standardError.write(Data("lars-server: \(error)\n".utf8))
            return 2
        }
        do {
            let server = try ParameterServer(job: job, options: options, logger: logger)
            try await server.start()
            server.handleSignals()
            let outcome = try await server.run()
            logger.info("job ended", metadata: ["outcome": "\(outcome)"])
            return outcome.exitStatus
        } catch let error as ServerStartError {
            FileHandle.standardError.write(Data("lars-server: \(error)\n".utf8))
            if case .config = error { return 2 }
            return 1
        } catch {
            FileHandle.standardError.write(Data("lars-server: \(error)\n".utf8))
            return 1
        }
    }

    /// The job file with the flags applied, validated.
    func resolve() throws -> (JobConfig, ServerOptions) {
        guard let data = FileManager.default.contents(atPath: config) else {
            throw ConfigError(key: "--config", value: "\"\(config)\"", allowed: "a readable job file (see configs/)")
        }
        let baseName = ((config as NSString).lastPathComponent as NSString).deletingPathExtension
        var job = try JobConfig.parse(json: data, defaultName: baseName)
        if let workers { job.workers = workers }
        if let minWorkers { job.minWorkers = minWorkers }
        if let stepDeadline { job.stepDeadlineSeconds = stepDeadline }
        if let checkpointEvery { job.checkpointEvery = checkpointEvery }
        try job.validate()
        for (flag, value) in [("--port", port), ("--http-port", httpPort)] where !(0...65535).contains(value) {
            throw ConfigError(key: flag, value: "\(value)", allowed: "a port in 0...65535")
        }
        var options = ServerOptions()
        options.port = port
        options.httpPort = httpPort
        options.bind = bind
        options.httpBind = httpBind
        options.checkpointDir = checkpointDir
        options.runLog = runLog
        options.resume = resume
        options.deterministic = deterministic
        options.sharedWeights = sharedWeights
        if let authTokenFile {
            guard let text = try? String(contentsOfFile: authTokenFile, encoding: .utf8),
                  let token = text.split(whereSeparator: \.isNewline).first.map(String.init), !token.isEmpty else {
                throw ConfigError(key: "--auth-token-file", value: "\"\(authTokenFile)\"", allowed: "a readable file whose first line is the token")
            }
            options.authToken = token
        }
        return (job, options)
    }
}
