import Core
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Wire

/// A worker's session with `lars-server` (docs/wire-protocol.md): handshake, pull of the
/// weights into buffers the caller owns, push of a gradient from buffers the caller owns, EVAL,
/// and transparent reconnects.
///
/// ```swift
/// let session = ClientSession(host: "127.0.0.1", port: 7070, options: .init(workerName: "w0"), logger: logger)
/// let info = try await session.connect()
/// var step = info.currentStep
/// while true {
///     step = try await session.pull(step: step, into: weights).step
///     let loss = computeGradient()          // into `gradients`
///     if case .stepClosed(let current) = try await session.push(step: step, sampleCount: n, loss: loss, gradients: gradients) {
///         step = current; continue
///     }
///     step += 1
/// }
/// ```
///
/// **Reconnects.** When the connection is lost without BYE, the session reconnects at once
/// (HELLO asking for its old rank and carrying its layout hash), waiting `initialBackoff`
/// doubling to `maxBackoff` between attempts and logging each one, and ends with
/// ``ClientError/connectFailed(host:port:attempts:seconds:lastError:)`` after `reconnectTimeout`.
/// A pull or push running meanwhile waits for the new connection and runs again on it: a push
/// is sent again whole from the caller's buffers if the server is still at its step (the server
/// skips the chunks it already has), and answers ``PushResult/stepClosed(current:)`` otherwise;
/// the first pull on a new connection asks for no later step than the server's (see
/// ``pull(step:into:)``). BYE, a refusing ERROR and protocol errors end the session: every
/// later call throws the same error.
///
/// One pull and one push may run at a time (they may overlap each other); the caller's
/// buffers must stay valid and untouched until the call returns.
///
/// **Streamed push.** To send gradients while backward still runs, call
/// ``beginPush(step:sampleCount:gradients:)`` before computing, ``StreamingPush/release(tensors:)``
/// as each layer's gradient is final, and ``StreamingPush/finish(loss:)`` at the end; the
/// reconnect rules above hold for it too.
public final class ClientSession: Sendable {
    public let host: String
    public let port: Int
    public let options: ClientOptions
    /// What the server says unasked; ends when the session ends.
    public let events: AsyncStream<SessionEvent>

    private let core: SessionCore
    private let evalRequests: EvalInbox

    /// - Parameter eventLoopGroup: where the connection runs; the session uses one loop of it.
    public init(
        host: String, port: Int = 7070, options: ClientOptions,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "lars.client")
    ) {
        self.host = host
        self.port = port
        self.options = options
        let (stream, continuation) = AsyncStream.makeStream(of: SessionEvent.self)
        self.events = stream
        let inbox = EvalInbox()
        self.evalRequests = inbox
        var logger = logger
        logger[metadataKey: "server"] = "\(host):\(port)"
        self.core = SessionCore(
            host: host, port: port, options: options, eventLoop: eventLoopGroup.next(), logger: logger,
            events: continuation, evalRequests: inbox)
    }

    /// Connects and shakes hands, retrying refused connections and `rank_unavailable` with
    /// backoff for up to `connectTimeout`. Returns what WELCOME said; calling it again returns
    /// the same.
    public func connect() async throws(ClientError) -> SessionInfo {
        try await core.connect()
    }

    /// What the handshake gave (the current step as of the latest handshake), or nil before
    /// ``connect()``.
    public var info: SessionInfo? {
        get async { await core.info }
    }

    /// Pulls the weights of `step` into `buffers` (one per layout tensor, each exactly the
    /// tensor's element count), written straight from the receive buffer. Waits while the
    /// server has not published `step` yet.
    ///
    /// Returns the step of the weights now in the buffers: `step`, or a newer one when `step`
    /// was behind. On a new connection after a reconnect it asks for at most the server's
    /// current step: if the server is still at the step this worker pushed last, the answer is
    /// that step again, and the worker computes and pushes it again (the push may not have
    /// arrived whole; the server skips what it has).
    public nonisolated(nonsending) func pull(
        step: Int, into buffers: [UnsafeMutableBufferPointer<Float>]
    ) async throws(ClientError) -> PulledStep {
        let layout = try await core.layout()
        try Self.check(buffers.map(\.count), against: layout)
        let box = WeightBuffers(tensors: buffers)
        while true {
            let connection = try await core.liveConnection()
            do {
                return try await connection.pull(step: UInt64(max(step, 0)), into: box)
            } catch {
                try await core.recover(from: error, on: connection)
            }
        }
    }

    /// Pushes the gradient of `step`, the mean over `sampleCount` samples, with the mean
    /// training loss (NaN and infinities are sent as they are: the server judges divergence).
    /// `gradients` holds one buffer per layout tensor; each grid chunk is copied into a frame
    /// as it is sent, with at most a few chunks in flight.
    ///
    /// Returns once the server has read the whole push: after PUSH_END the session sends a
    /// HEARTBEAT and waits for the server's echo, which comes after any STEP_CLOSED or ERROR
    /// about the push. ``PushResult/accepted``, or ``PushResult/stepClosed(current:)`` when
    /// the server has moved on (the rest of the push is then not sent). A connection lost
    /// before the echo means the push is sent again after the reconnect.
    public nonisolated(nonsending) func push(
        step: Int, sampleCount: Int, loss: Double, gradients: [UnsafeBufferPointer<Float>]
    ) async throws(ClientError) -> PushResult {
        try await push(step: step, sampleCount: sampleCount, loss: loss, gradients: gradients, reconnected: false)
    }

    /// `push`, told whether the connection was lost since the push began. On a connection made
    /// after such a loss, a server behind `step` (restarted from an earlier checkpoint, or from
    /// the start) cannot take the push: it answers ``PushResult/stepClosed(current:)`` with the
    /// server's step, and the worker goes on from there.
    nonisolated(nonsending) func push(
        step: Int, sampleCount: Int, loss: Double, gradients: [UnsafeBufferPointer<Float>], reconnected: Bool
    ) async throws(ClientError) -> PushResult {
        let (ranges, box) = try await pushInputs(gradients)
        let samples = UInt32(clamping: max(sampleCount, 0))
        var reconnected = reconnected
        while true {
            let connection = try await core.liveConnection()
            if reconnected, let current = await core.info?.currentStep, current < step {
                return .stepClosed(current: current)
            }
            do {
                return try await connection.push(
                    step: UInt64(max(step, 0)), sampleCount: samples, loss: loss, gradients: box, ranges: ranges)
            } catch {
                try await core.recover(from: error, on: connection)
                reconnected = true
            }
        }
    }

    /// Starts pushing the gradient of `step` before it is computed: PUSH_BEGIN is queued on the
    /// connection's event loop now (this call does not wait for it to go), each tensor's chunks
    /// once ``StreamingPush/release(tensors:)`` says its gradient is final, and PUSH_END with
    /// ``StreamingPush/finish(loss:)``. The caller computes the gradient into `gradients`
    /// meanwhile, writing no tensor after releasing it. If the connection is lost on the way (or
    /// was already), `finish` reconnects and pushes the whole gradient again like
    /// ``push(step:sampleCount:loss:gradients:)``.
    public nonisolated(nonsending) func beginPush(
        step: Int, sampleCount: Int, gradients: [UnsafeBufferPointer<Float>]
    ) async throws(ClientError) -> StreamingPush {
        let (ranges, box) = try await pushInputs(gradients)
        let connection = try await core.liveConnection()
        // Not awaited: the forward pass starts while PUSH_BEGIN is on its way. A push that
        // cannot start fails its future, and `finish` then pushes the whole gradient.
        let future = connection.beginPush(
            step: UInt64(max(step, 0)), sampleCount: UInt32(clamping: max(sampleCount, 0)), gradients: box, ranges: ranges)
        return StreamingPush(session: self, connection: connection, future: future, step: step, sampleCount: sampleCount, gradients: gradients)
    }

    /// Answers EVAL_REQUEST(`step`) with the evaluation of its weights on the test set.
    public func sendEval(step: Int, testLoss: Double, accuracy: Double, sampleCount: Int) async throws(ClientError) {
        let message = Message.eval(
            step: UInt64(max(step, 0)), testLoss: testLoss, accuracy: accuracy, sampleCount: UInt32(clamping: max(sampleCount, 0)))
        try await core.send(message)
    }

    /// The oldest EVAL_REQUEST step not taken yet, for training loops that check between steps
    /// rather than reading ``events``.
    public func takeEvalRequest() -> Int? {
        evalRequests.take()
    }

    /// Offers the server `file`, made by this worker (``SharedWeightFile/createSealed(elements:)``
    /// for the layout's parameter count), whose slot 0 the caller computes its gradients into,
    /// tensor after tensor in layout order. A server on this host maps it (only a file sealed
    /// against shrinking) and reads pushes of those buffers from it: their chunks go as
    /// PUSH_SHARED, a few bytes each. The offer is made again on every new connection.
    /// Returns whether the current server took it; pushes of other buffers, or to a server that
    /// did not, go in PUSH_CHUNK frames as before.
    public func shareGradients(_ file: SharedWeightFile) async -> Bool {
        await core.shareGradients(file)
    }

    /// How many of the current connection's push chunks went as PUSH_SHARED, read by the
    /// server from this worker's gradient file (``shareGradients(_:)``).
    public func sharedPushChunks() async -> Int {
        await core.sharedPushChunks()
    }

    /// How many of the current connection's pulls the event loop answered from the server's
    /// shared weight file (`read`), and how many of those went again over TCP because the copy
    /// raced a newer step (`fellBack`). A ``NextPull`` that copied its step from the file on
    /// the caller's thread is in neither.
    public func sharedPulls() async -> (read: Int, fellBack: Int) {
        await core.sharedPulls()
    }

    /// Sends BYE(shutdown) and closes; every later call throws ``ClientError/closed``.
    public func close() async {
        await core.close(sending: .bye(reason: .shutdown, detail: "worker closing"))
    }

    /// Sends ERROR(`code`, `message`) and closes: how a worker reports, for example, a missing
    /// data set (``Wire/ErrorCode/dataset``) before it exits.
    public func close(reporting code: ErrorCode, message: String) async {
        await core.close(sending: .error(code: code, message: message, requestID: 0))
    }

    /// The grid a push is sent in, and `gradients` checked against the layout.
    private nonisolated(nonsending) func pushInputs(_ gradients: [UnsafeBufferPointer<Float>]) async throws(ClientError) -> ([ChunkRange], GradientBuffers) {
        let layout = try await core.layout()
        try Self.check(gradients.map(\.count), against: layout)
        return (await core.grid, GradientBuffers(tensors: gradients))
    }

    /// Hands a failed operation's error to the session: returns when it should run again.
    func recover(from error: any Error, on connection: Connection) async throws(ClientError) {
        try await core.recover(from: error, on: connection)
    }

    private static func check(_ counts: [Int], against layout: WireLayout) throws(ClientError) {
        guard counts.count == layout.tensors.count else {
            throw .buffersMismatch(tensor: nil, expected: layout.tensors.count, found: counts.count)
        }
        for (index, tensor) in layout.tensors.enumerated() where counts[index] != tensor.spec.count {
            throw .buffersMismatch(tensor: index, expected: tensor.spec.count, found: counts[index])
        }
    }
}

/// EVAL_REQUEST steps not yet taken by ``ClientSession/takeEvalRequest()``.
final class EvalInbox: @unchecked Sendable {
    private let lock = NSLock()
    private var steps: [Int] = []

    func append(_ step: Int) {
        lock.withLock { steps.append(step) }
    }

    func take() -> Int? {
        lock.withLock { steps.isEmpty ? nil : steps.removeFirst() }
    }
}

/// A push whose chunks go out while the gradient is still being computed (see
/// ``ClientSession/beginPush(step:sampleCount:gradients:)``).
public final class StreamingPush: @unchecked Sendable {
    private let session: ClientSession
    private let connection: Connection
    private let future: EventLoopFuture<PushResult>
    private let step: Int
    /// `step` as the wire carries it.
    private let wireStep: UInt64
    private let sampleCount: Int
    private let gradients: [UnsafeBufferPointer<Float>]
    private let closedEarly = Atomic<Bool>(false)

    init(
        session: ClientSession, connection: Connection, future: EventLoopFuture<PushResult>, step: Int, sampleCount: Int,
        gradients: [UnsafeBufferPointer<Float>]
    ) {
        self.session = session
        self.connection = connection
        self.future = future
        self.step = step
        self.wireStep = UInt64(max(step, 0))
        self.sampleCount = sampleCount
        self.gradients = gradients
        // Holds this object until the push completes (it always does: answered, or failed with
        // its connection).
        future.whenSuccess { [self] result in
            if case .stepClosed = result { closedEarly.store(true, ordering: .relaxed) }
        }
    }

    /// Whether the server has already answered this push STEP_CLOSED (its step closed without
    /// it: a backup worker's, K < N), so that the gradient is no longer wanted. Callable from
    /// any thread.
    public var isClosed: Bool { closedEarly.load(ordering: .relaxed) }

    /// Says the gradients of `tensors` (layout indices) are final: their chunks may go. Returns
    /// at once; callable from any thread.
    public func release(tensors: Range<Int>) {
        connection.releasePush(step: wireStep, tensors: tensors)
    }

    /// Pulls the weights of `next` into `buffers`, sending PULL on this push's connection now,
    /// ahead of PUSH_END: the server holds it when this push closes the step and answers it
    /// with the others, without waiting for a PULL to follow the push. If that connection
    /// fails, the pull goes through the session (reconnecting if need be). See ``NextPull``.
    public func pullNext(_ next: Int, into buffers: [UnsafeMutableBufferPointer<Float>]) -> NextPull {
        // With the server's shared weight file mapped, the caller may copy the step from it
        // itself (`NextPull.step()`); the claim says who writes the buffers.
        // Buffers shaped like the layout (the gradients' shapes, checked at `beginPush`) go now;
        // others go through the session's pull, which names the mismatch.
        let shaped = buffers.map(\.count) == gradients.map(\.count)
        let file = shaped ? connection.sharedWeights : nil
        let claim = file == nil ? nil : PullClaim()
        let box = WeightBuffers(tensors: buffers, claim: claim)
        let started = shaped ? connection.startPull(step: UInt64(max(next, 0)), into: box) : nil
        let session = self.session
        let task = Task {
            defer { claim?.end() }
            if let started, let pulled = try? await started.get() { return pulled }
            // The pull on this connection failed. Unless the caller already has the step from
            // the file, pull it again through the session.
            guard claim?.take(by: .receiver) ?? true else { return PulledStep(step: next) }
            return try await session.pull(step: next, into: box.tensors)
        }
        return NextPull(task: task, session: session, file: file, claim: claim, target: next, buffers: box)
    }

    /// Sends what is left and PUSH_END with `loss`, and returns once the server has read the
    /// push, like ``ClientSession/push(step:sampleCount:loss:gradients:)``.
    public nonisolated(nonsending) func finish(loss: Double) async throws(ClientError) -> PushResult {
        connection.completePush(step: wireStep, loss: loss)
        do {
            return try await future.get()
        } catch {
            try await session.recover(from: error, on: connection)
        }
        return try await session.push(step: step, sampleCount: sampleCount, loss: loss, gradients: gradients, reconnected: true)
    }
}

/// The weights of a step read in place from the server's shared weight file
/// (``NextPull/borrow(whileWaiting:)``). Holds the file, so the mapping stays while it lives.
public struct SharedSlotWeights: @unchecked Sendable {
    public let step: Int
    public let slot: UInt32
    public let file: SharedWeightFile
    /// One buffer per layout tensor, in the file's mapping: read only.
    public let tensors: [UnsafeBufferPointer<Float>]

    /// Copies the weights into `buffers`; false when the server has written the slot again
    /// since (the buffers then hold garbage).
    public func copy(into buffers: [UnsafeMutableBufferPointer<Float>]) -> Bool {
        file.read(step: UInt64(step), slot: slot, into: buffers)
    }
}

/// The pull of the next step that ``StreamingPush/pullNext(_:into:)`` sent ahead of PUSH_END.
///
/// On the server's host, ``step()`` does not wait for the answer to travel through the server's
/// event loop and this process's: it sleeps on the shared weight file and copies the step on
/// the caller's thread the moment the server writes it, which wakes every worker waiting on the
/// file with one call (docs/performance.md, worker, session 10). The answer, when it arrives,
/// is then dropped. Elsewhere ``step()`` waits for the answer.
public struct NextPull: Sendable {
    let task: Task<PulledStep, any Error>
    let session: ClientSession
    let file: SharedWeightFile?
    let claim: PullClaim?
    let target: Int
    let buffers: WeightBuffers

    /// Waits until the weights of the target step, or of a later one, are in the buffers, and
    /// returns that step. Blocks the calling thread while it sleeps on the file; until the step
    /// is written it calls `work` instead of sleeping, as long as that says more is left (one
    /// small piece per call).
    public func step(whileWaiting work: () -> Bool = { false }) async throws -> Int {
        try await take { file, target, claim, giveUp in
            file.awaitStep(target, into: buffers.tensors, claim: claim, giveUp: giveUp, work: work)
        }.step
    }

    /// Like ``step(whileWaiting:)``, but on the server's host it copies nothing: it returns the
    /// step with the shared weight file's slot that holds it, and the caller reads the weights
    /// there (the buffers are left as they are). Elsewhere, or when the answer came first, the
    /// weights are in the buffers and `weights` is nil.
    ///
    /// The slot keeps the step until the server writes it again, which it does with the weights
    /// of two steps on. In a job whose every step waits for every worker (no `min_workers`
    /// below `workers`) that cannot happen before this worker has pushed the step after this
    /// one, so it may compute this step from the slot and evaluate these weights before that
    /// push. Otherwise (or to keep them longer) it copies them out first
    /// (``SharedSlotWeights/copy(into:)``).
    public func borrow(whileWaiting work: () -> Bool = { false }) async throws -> (step: Int, weights: SharedSlotWeights?) {
        try await take { file, target, claim, giveUp in
            file.awaitSlot(target, claim: claim, giveUp: giveUp, work: work)
        }
    }

    /// The step through the shared weight file, if mapped: `wait` waits on it with this pull's
    /// claim (`copied`: the step is in the buffers; `inSlot`: it is read in place), else through
    /// the answer. A claim taken with nothing in hand (the answer was dropped) pulls again.
    private func take(
        _ wait: (SharedWeightFile, _ target: UInt64, _ claim: () -> Bool, _ giveUp: () -> Bool) -> SharedWeightFile.AwaitOutcome
    ) async throws -> (step: Int, weights: SharedSlotWeights?) {
        if let file, let claim {
            switch wait(file, UInt64(max(target, 0)), { claim.take(by: .reader) }, { claim.hasEnded || claim.takenByReceiver }) {
            case .copied(let step):
                return (Int(step), nil)
            case .inSlot(let step, let slot):
                let tensors = file.tensors(inSlot: Int(slot), counts: buffers.tensors.map(\.count)).map { UnsafeBufferPointer($0) }
                return (Int(step), SharedSlotWeights(step: Int(step), slot: slot, file: file, tensors: tensors))
            case .notClaimed, .gaveUp(claimed: false):
                break
            case .gaveUp(claimed: true):
                await settle()
                return (try await session.pull(step: target, into: buffers.tensors).step, nil)
            }
        }
        return (try await task.value.step, nil)
    }

    /// Waits for the pull itself to end (answered, dropped or failed). Call it before the next
    /// pull of the same connection, and before the buffers go.
    public func settle() async {
        _ = try? await task.value
    }

    /// Asks the pull to stop; ``settle()`` still waits for it to end.
    public func cancel() {
        task.cancel()
    }
}
