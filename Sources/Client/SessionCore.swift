import Core
import Logging
import NIOCore
import Wire

/// The session's connection state: the current connection, the (re)connect attempts with their
/// backoff, and the error that ended the session. An actor, so that one reconnect runs at a time
/// however many operations notice the loss.
actor SessionCore {
    let host: String
    let port: Int
    let options: ClientOptions
    let eventLoop: any EventLoop
    let logger: Logger
    private let events: AsyncStream<SessionEvent>.Continuation
    private let evalRequests: EvalInbox

    private(set) var info: SessionInfo?
    /// The push chunk ranges of the layout (one per grid chunk).
    private(set) var grid: [ChunkRange] = []
    private var connection: Connection?
    /// This worker's gradient file, offered to the server on every connection once set.
    private var gradientFile: SharedWeightFile?
    /// The running (re)connect, shared by everything waiting for a connection.
    private var connecting: Task<Result<Connection, ClientError>, Never>?
    /// Set once the session is over; every later call throws it.
    private var ended: ClientError?
    private var connectionCount = 0

    init(
        host: String, port: Int, options: ClientOptions, eventLoop: any EventLoop, logger: Logger,
        events: AsyncStream<SessionEvent>.Continuation, evalRequests: EvalInbox
    ) {
        self.host = host
        self.port = port
        self.options = options
        self.eventLoop = eventLoop
        self.logger = logger
        self.events = events
        self.evalRequests = evalRequests
    }

    func connect() async throws(ClientError) -> SessionInfo {
        if let ended { throw ended }
        if let info { return info }
        _ = try await join(connectingTask(timeout: options.connectTimeout))
        guard let info else { throw ended ?? .notConnected }
        return info
    }

    /// The current connection's push chunks sent as PUSH_SHARED (none between connections).
    func sharedPushChunks() async -> Int {
        await connection?.sharedPushChunks() ?? 0
    }

    /// Offers `file` on the current connection and on every later one; true when the current
    /// server mapped it.
    func shareGradients(_ file: SharedWeightFile) async -> Bool {
        gradientFile = file
        guard let connection, let info else { return false }
        return await connection.offerGradients(file, counts: info.layout.layout.tensors.map(\.count))
    }

    func layout() throws(ClientError) -> WireLayout {
        if let ended { throw ended }
        guard let info else { throw .notConnected }
        return info.layout
    }

    /// The current connection's pulls through the shared weight file (none between connections).
    func sharedPulls() async -> (read: Int, fellBack: Int) {
        await connection?.sharedPulls() ?? (0, 0)
    }

    /// The current connection, or the next one once the running reconnect has it.
    func liveConnection() async throws(ClientError) -> Connection {
        if let ended { throw ended }
        guard info != nil else { throw .notConnected }
        if let connection { return connection }
        return try await join(connectingTask(timeout: options.reconnectTimeout))
    }

    /// Decides what an operation's failure on `failed` means: returns when the operation should
    /// run again on a new connection, throws the error that ends it otherwise.
    func recover(from error: any Error, on failed: Connection) throws(ClientError) {
        if let clientError = error as? ClientError { throw clientError }
        let failure = error as? ConnectionFailure ?? .lost("\(error)")
        connectionClosed(id: failed.id, failure)
        if let ended { throw ended }
    }

    func send(_ message: Message) async throws(ClientError) {
        while true {
            let c = try await liveConnection()
            do {
                return try await c.send(message)
            } catch {
                try recover(from: error, on: c)
            }
        }
    }

    func close(sending message: Message) async {
        guard ended == nil else { return }
        end(.closed)
        connecting?.cancel()
        if let connection {
            self.connection = nil
            await connection.close(sending: message)
        }
    }

    // MARK: Connection lifecycle

    /// Called (from the event loop, through a task) when connection `id` has ended.
    func connectionClosed(id: Int, _ failure: ConnectionFailure) {
        guard let current = connection, current.id == id else { return }
        connection = nil
        switch failure {
        case .lost(let why):
            guard ended == nil else { return }
            logger.warning("lost the connection to the server; reconnecting", metadata: ["error": "\(why)"])
            _ = connectingTask(timeout: options.reconnectTimeout)
        case .refused(let code, let message):
            end(.refused(code: code, message: message))
        case .protocol(let error):
            end(.protocol(error))
        case .bye(let reason, let detail):
            end(.byeReceived(reason: reason, detail: detail))
        case .closedLocally:
            end(.closed)
        }
    }

    private func end(_ error: ClientError) {
        guard ended == nil else { return }
        ended = error
        if case .closed = error {} else {
            logger.info("session ended", metadata: ["reason": "\(error)"])
        }
        events.finish()
    }

    private func join(_ task: Task<Result<Connection, ClientError>, Never>) async throws(ClientError) -> Connection {
        try await task.value.get()
    }

    private func connectingTask(timeout: Duration) -> Task<Result<Connection, ClientError>, Never> {
        if let connecting { return connecting }
        let task = Task { () -> Result<Connection, ClientError> in
            let result: Result<Connection, ClientError>
            do throws(ClientError) {
                result = .success(try await establish(timeout: timeout))
            } catch {
                end(error)
                result = .failure(error)
            }
            connecting = nil
            return result
        }
        connecting = task
        return task
    }

    /// Connects and shakes hands until it succeeds, a refusal ends the session, or `timeout`
    /// has passed, waiting with exponential backoff between attempts. The last wait is cut to
    /// end at the timeout, where one more attempt is made: a server back just before the
    /// timeout is still found, and the session never gives up early because the next full
    /// wait would have overshot.
    private func establish(timeout: Duration) async throws(ClientError) -> Connection {
        let clock = ContinuousClock()
        let start = clock.now
        var delay = options.initialBackoff
        var attempt = 0
        while true {
            attempt += 1
            if let ended { throw ended }
            let lastError: String
            do {
                return try await handshake()
            } catch let failure as ConnectionFailure {
                switch failure {
                case .lost(let why):
                    lastError = why
                case .refused(let code, let message) where code == .rankUnavailable:
                    lastError = "\(code.name): \(message)"
                case .refused(let code, let message):
                    throw .refused(code: code, message: message)
                case .protocol(let error):
                    throw .protocol(error)
                case .bye(let reason, let detail):
                    throw .byeReceived(reason: reason, detail: detail)
                case .closedLocally:
                    throw .closed
                }
            } catch let error as ClientError {
                throw error
            } catch {
                lastError = "\(error)"
            }
            let elapsed = clock.now - start
            guard elapsed < timeout, !Task.isCancelled else {
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                throw .connectFailed(host: host, port: port, attempts: attempt, seconds: seconds, lastError: lastError)
            }
            let wait = min(delay, timeout - elapsed)
            logger.warning("cannot connect to the server; retrying", metadata: [
                "attempt": "\(attempt)", "retry_in": "\(wait)", "error": "\(lastError)",
            ])
            try? await Task.sleep(for: wait)
            delay = min(delay * 2, options.maxBackoff)
        }
    }

    /// One attempt: connect, HELLO, WELCOME, checked against what an earlier handshake said.
    private func handshake() async throws -> Connection {
        connectionCount += 1
        let id = connectionCount
        let hello = Hello(
            wantedRank: (info?.rank ?? options.wantedRank).map { UInt32(clamping: $0) },
            layoutHash: info?.layout.hash ?? options.layoutHash,
            token: options.token, workerName: options.workerName)
        let events = self.events
        let inbox = evalRequests
        let c = try await Connection.open(
            id: id, host: host, port: port, hello: hello, resumed: info != nil, options: options, eventLoop: eventLoop, logger: logger,
            onEvent: { event in
                if case .evalRequest(let step) = event { inbox.append(step) }
                events.yield(event)
            },
            onClosed: { [weak self] failure in
                guard let self else { return }
                Task { await self.connectionClosed(id: id, failure) }
            })
        if let ended {
            await c.close(sending: .bye(reason: .shutdown, detail: "worker closing"))
            throw ended
        }
        let w = c.welcome
        let isReconnect = info != nil
        do throws(WireError) {
            let job = try JobDescription(json: w.job)
            guard job.chunkElements <= (options.limits.maxChunkPayload - ChunkHeader.size) / 4 else {
                throw .limitExceeded(field: "WELCOME job chunk_elements", value: job.chunkElements,
                                     limit: (options.limits.maxChunkPayload - ChunkHeader.size) / 4)
            }
            if let old = info {
                guard w.rank == UInt32(old.rank) else {
                    throw .malformed(field: "WELCOME rank", value: "\(w.rank)", expected: "\(old.rank), the rank asked for")
                }
                guard w.layout == old.layout else { throw .layoutMismatch(expected: old.layout.hash, found: w.layout.hash) }
            }
            var sharedPath: String?
            if options.sharedWeights, let s = job.sharedWeights {
                do {
                    // Opened for the layout's size: a file of any other size or header is refused.
                    let file = try SharedWeightFile.open(path: s.path, nonce: s.nonce, elements: w.layout.layout.parameterCount)
                    await c.useSharedWeights(file)
                    sharedPath = s.path
                } catch {
                    logger.info("pulling over TCP", metadata: ["reason": "\(error)"])
                }
            }
            if sharedPath != nil, let g = gradientFile {
                _ = await c.offerGradients(g, counts: w.layout.layout.tensors.map(\.count))
            }
            info = SessionInfo(
                rank: Int(w.rank), worldSize: Int(w.worldSize), currentStep: Int(w.currentStep), layout: w.layout, job: job,
                sharedWeightsPath: sharedPath)
            grid = w.layout.grid(chunkElements: job.chunkElements)
            await c.configure(chunkBytes: job.chunkElements * 4)
        } catch {
            await c.close(sending: .error(code: error.code, message: error.description, requestID: 0))
            throw ConnectionFailure.protocol(error)
        }
        connection = c
        if isReconnect {
            logger.info("reconnected", metadata: ["rank": "\(w.rank)", "step": "\(w.currentStep)"])
            events.yield(.reconnected(rank: Int(w.rank), currentStep: Int(w.currentStep)))
        } else {
            logger.info("connected", metadata: [
                "rank": "\(w.rank)", "world": "\(w.worldSize)", "step": "\(w.currentStep)",
                "weights_via": "\(info?.sharedWeightsPath ?? "tcp")",
            ])
        }
        return c
    }
}
