import ArgumentParser
import Client
import Foundation
import Logging

/// `lars-worker --server HOST:PORT`: trains on its share of every global batch of the server's
/// job. Exit status: 0 on BYE (done, diverged, server stopping), 3 missing or wrong data set,
/// 2 bad flags, 1 anything else (server unreachable past --reconnect-timeout, refused).
@main
struct LarsWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lars-worker",
        abstract: "A lars-ps worker: pulls weights, computes gradients on its slice of each batch, pushes them.",
        discussion: """
            A lost connection is retried (backoff from 0.1 s up to 2 s) for --reconnect-timeout seconds; \
            the worker then continues at the server's step.

            Exit status: 0 when the server says BYE (job done, training diverged, server shutting down); \
            3 when the data set is missing or not the job's (the message names the file and how to get it); \
            2 for a bad flag; 1 otherwise (the server unreachable for --reconnect-timeout, a refusal such as a wrong token).
            """)

    @Option(help: "The server's worker address.") var server = "127.0.0.1:7070"
    @Option(name: .customLong("auth-token-file"), help: "File whose first line is the server's auth token.") var authTokenFile: String?
    @Option(help: "OpenBLAS threads.") var threads = 1
    @Option(name: .customLong("micro-batch"), help: "Samples per forward/backward pass; a larger share runs in passes (default: 2048 for mlp, 256 for cnn).") var microBatch: Int?
    @Option(help: "Name shown in the server's logs and /status (default host:pid).") var name: String?
    @Option(help: "The rank to ask for (default: any free one).") var rank: Int?
    @Option(name: .customLong("reconnect-timeout"), help: "Seconds to keep trying to reach the server.") var reconnectTimeout = 60.0
    @Option(name: .customLong("data-dir"), help: "Directory of the data set's IDX files (default: the job's).") var dataDir: String?
    @Option(name: .customLong("progress-every"), help: "A progress line on stderr every this many steps (0: none).") var progressEvery = 10
    @Flag(inversion: .prefixedNo, help: "On the server's host, pull through its shared weight file (/dev/shm) and push through a sealed gradient file (a memfd) that the server maps; --no-shared-weights: always over TCP.")
    var sharedWeights = true
    @Option(name: .customLong("stats-file"), help: "Append one JSON line of step timings per step to this file.") var statsFile: String?

    /// Parses flags itself so that a bad flag exits with status 2, as lars-server does.
    static func main() async {
        let command: LarsWorker
        do {
            guard let parsed = try parseAsRoot() as? LarsWorker else { throw CleanExit.helpRequest() }
            command = parsed
        } catch {
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data("lars-worker: \(fullMessage(for: error))\n".utf8))
            Foundation.exit(2)
        }
        Foundation.exit(await command.execute())
    }

    func validate() throws {
        guard parsedServer != nil else { throw ValidationError("--server \(server): expected HOST:PORT with a port in 1...65535") }
        guard threads >= 1 else { throw ValidationError("--threads \(threads): expected at least 1") }
        if let microBatch, microBatch < 1 { throw ValidationError("--micro-batch \(microBatch): expected at least 1") }
        guard reconnectTimeout > 0, reconnectTimeout.isFinite else { throw ValidationError("--reconnect-timeout \(reconnectTimeout): expected seconds > 0") }
        if let rank, rank < 0 { throw ValidationError("--rank \(rank): expected a rank >= 0") }
        guard progressEvery >= 0 else { throw ValidationError("--progress-every \(progressEvery): expected >= 0") }
    }

    private var parsedServer: (host: String, port: Int)? {
        guard let colon = server.lastIndex(of: ":"), let port = Int(server[server.index(after: colon)...]),
              (1...65535).contains(port), colon > server.startIndex else { return nil }
        return (String(server[..<colon]), port)
    }

    func execute() async -> Int32 {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "lars-worker")
        logger.logLevel = .info
        var options = WorkerOptions(name: name ?? "\(ProcessInfo.processInfo.hostName):\(getpid())")
        (options.host, options.port) = parsedServer!
        options.blasThreads = threads
        options.microBatch = microBatch
        options.wantedRank = rank
        options.reconnectTimeout = .milliseconds(Int64(reconnectTimeout * 1000))
        options.dataDirectory = dataDir
        options.progressEvery = progressEvery
        options.statsFile = statsFile
        options.sharedWeights = sharedWeights
        if let authTokenFile {
            guard let text = try? String(contentsOfFile: authTokenFile, encoding: .utf8),
                  let token = text.split(whereSeparator: \.isNewline).first.map(String.init), !token.isEmpty else {
                FileHandle.standardError.write(Data("lars-worker: --auth-token-file \(authTokenFile): expected a readable file whose first line is the token\n".utf8))
                return 2
            }
            options.token = token
        }
        let outcome = await TrainingLoop(options: options, logger: logger).run()
        FileHandle.standardError.write(Data("lars-worker: \(outcome)\n".utf8))
        return outcome.exitStatus
    }
}
