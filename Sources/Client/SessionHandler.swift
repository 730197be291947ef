import Logging
import NIOCore
import Synchronization
import Wire

/// Why a connection ended or could not be used.
enum ConnectionFailure: Error, Sendable, Hashable {
    /// The TCP connection failed or closed without BYE: reconnect.
    case lost(String)
    /// The server sent an ERROR that ends the connection.
    case refused(ErrorCode, String)
    /// The server sent bytes this side refused (answered with ERROR).
    case `protocol`(WireError)
    /// The server said BYE.
    case bye(ByeReason, String)
    /// This side closed the connection.
    case closedLocally
}

/// The caller's weight buffers on their way to the event loop; the caller keeps them valid (and
/// untouched) until its pull returns.
struct WeightBuffers: @unchecked Sendable {
    let tensors: [UnsafeMutableBufferPointer<Float>]
    /// Set when the caller may also fill `tensors` from the shared weight file itself: whoever
    /// takes it first writes them, the other leaves them alone.
    var claim: PullClaim? = nil
}

/// Which of two writers fills a pull's buffers: the connection's event loop with the server's
/// answer, or the caller's thread reading the step from the shared weight file as soon as the
/// server writes it (``NextPull``). The first to take it writes; taking it again is allowed to
/// whoever holds it.
final class PullClaim: Sendable {
    enum Writer: Int { case receiver = 1, reader = 2 }
    private let holder = Atomic<Int>(0)
    private let ended = Atomic<Bool>(false)

    func take(by writer: Writer) -> Bool {
        let (exchanged, original) = holder.compareExchange(expected: 0, desired: writer.rawValue, ordering: .acquiringAndReleasing)
        return exchanged || original == writer.rawValue
    }

    /// Whether the event loop holds it (it has the answer).
    var takenByReceiver: Bool { holder.load(ordering: .acquiring) == Writer.receiver.rawValue }

    /// The pull is over, answered or failed.
    func end() { ended.store(true, ordering: .releasing) }
    var hasEnded: Bool { ended.load(ordering: .acquiring) }
}

/// The caller's gradient buffers on their way to the event loop; valid until the push returns.
struct GradientBuffers: @unchecked Sendable {
    let tensors: [UnsafeBufferPointer<Float>]
}

/// One connection's protocol state, on its event loop: sends HELLO and waits for WELCOME, writes
/// the weights of a WEIGHTS sequence straight from the receive buffer into the caller's buffers,
/// sends a push one grid chunk at a time while the channel is writable, and reports what the
/// server says unasked.
///
/// Every method runs on the channel's event loop.
final class SessionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A pull waiting for (or receiving) its WEIGHTS sequence.
    private final class IncomingPull {
        let buffers: WeightBuffers
        let totalElements: Int
        let promise: EventLoopPromise<PulledStep>
        /// The step WEIGHTS announced, nil until it arrives.
        var step: UInt64?
        var expectedChunks = 0
        var receivedChunks = 0
        var receivedElements = 0
        /// The caller's thread copied the step from the shared weight file (``PullClaim``): the
        /// answer's data is read and dropped.
        var discard = false

        init(buffers: WeightBuffers, promise: EventLoopPromise<PulledStep>) {
            self.buffers = buffers
            self.totalElements = buffers.tensors.reduce(0) { $0 + $1.count }
            self.promise = promise
        }
    }

    /// A push being written, one grid chunk per frame. A streamed push starts with no chunk
    /// ready: its caller releases tensors as their gradients become final, and completes it
    /// with the loss (PUSH_END goes once every chunk is written).
    private final class OutgoingPush: @unchecked Sendable {
        let step: UInt64
        /// PUSH_END's loss; nil until a streamed push is completed.
        var loss: Double?
        let gradients: GradientBuffers
        let ranges: [ChunkRange]
        let promise: EventLoopPromise<PushResult>
        /// Indices into `ranges` that may be written, in the order they were released.
        var ready: [Int]
        /// Per range: whether it is in `ready`.
        var released: [Bool]
        /// Whether every range is released and the loss known (a streamed push gets both at once).
        var complete: Bool { loss != nil }
        /// The next entry of `ready` to write.
        var next = 0
        /// Set when STEP_CLOSED for this push arrived: the open step.
        var closedCurrent: UInt64?
        var endWritten = false
        /// The sequence of the HEARTBEAT sent after PUSH_END: its echo completes the push.
        var barrier: UInt64?

        init(step: UInt64, loss: Double?, gradients: GradientBuffers, ranges: [ChunkRange], promise: EventLoopPromise<PushResult>) {
            self.step = step
            self.loss = loss
            self.gradients = gradients
            self.ranges = ranges
            self.promise = promise
            ready = loss != nil ? Array(ranges.indices) : []
            released = Array(repeating: loss != nil, count: ranges.count)
        }

        /// Makes the chunks of `tensors` writable (those not released already).
        func release(tensors: Range<Int>) {
            release { tensors.contains(Int($0.tensor)) }
        }

        /// Releases every chunk not released yet, in grid order, and sets the loss.
        func complete(loss: Double) {
            release { _ in true }
            self.loss = loss
        }

        private func release(where wanted: (ChunkRange) -> Bool) {
            for (i, range) in ranges.enumerated() where !released[i] && wanted(range) {
                released[i] = true
                ready.append(i)
            }
        }
    }

    private var parser: FrameParser
    private let encoder: FrameEncoder
    private let hello: Hello
    /// Whether this connection replaces a lost one (see ``startPull(step:into:)``).
    let resumed: Bool
    private let heartbeatInterval: TimeAmount?
    private let logger: Logger
    private let onEvent: @Sendable (SessionEvent) -> Void
    private let onClosed: @Sendable (ConnectionFailure) -> Void

    private var context: ChannelHandlerContext?
    /// Completed by WELCOME, or failed by whatever ends the connection first.
    let welcome: EventLoopPromise<Welcome>
    private var welcomed = false
    private var handshakeOpen = true
    /// Why the connection ended; nil while it is usable.
    private(set) var failure: ConnectionFailure?
    /// A step the server is known to have opened: WELCOME's, the newest WEIGHTS', the newest
    /// STEP_CLOSED's current step. Never ahead of the server.
    private(set) var knownStep: UInt64 = 0
    /// The server's shared weight file, once mapped: pulls go as PULL_SHARED.
    var shared: SharedWeightFile?
    /// This worker's gradient file once the server has mapped it (SHARED_GRADIENTS), with where
    /// each tensor starts in its slot 0: a push chunk of buffers that are those goes as
    /// PUSH_SHARED. And the offer waiting for its answer.
    private var gradientFile: (file: SharedWeightFile, tensorStarts: [UnsafeRawPointer])?
    /// Push chunks sent as PUSH_SHARED on this connection.
    private(set) var sharedPushChunks = 0
    private var gradientOffer: (file: SharedWeightFile, tensorStarts: [UnsafeRawPointer], promise: EventLoopPromise<Bool>)?
    /// Pulls answered from the shared weight file, and those whose copy raced a newer step and
    /// went again over TCP.
    private(set) var sharedPulls = (read: 0, fellBack: 0)
    /// Whether a pull completed on this connection (see ``startPull(step:into:)``).
    private(set) var hasPulled = false
    private var pull: IncomingPull?
    private var push: OutgoingPush?
    private var pumping = false
    private var pumpAgain = false
    private var wroteSinceHeartbeat = false
    private var heartbeatTask: RepeatedTask?
    private var heartbeatSequence: UInt64 = 0
    private var closedReported = false
    private var helloSent = false

    init(
        hello: Hello, resumed: Bool = false, limits: WireLimits, heartbeatInterval: Duration?, eventLoop: any EventLoop, logger: Logger,
        onEvent: @escaping @Sendable (SessionEvent) -> Void, onClosed: @escaping @Sendable (ConnectionFailure) -> Void
    ) {
        self.parser = FrameParser(limits: limits)
        self.encoder = FrameEncoder(limits: limits)
        self.hello = hello
        self.resumed = resumed
        self.heartbeatInterval = heartbeatInterval.map { TimeAmount($0) }
        self.logger = logger
        self.onEvent = onEvent
        self.onClosed = onClosed
        self.welcome = eventLoop.makePromise(of: Welcome.self)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { sendHello() }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendHello()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard failure == nil else { return }
        var buffer = unwrapInboundIn(data)
        var sink = Sink(handler: self)
        do {
            try parser.parse(&buffer, into: &sink)
        } catch {
            logger.error("refusing what the server sent", metadata: ["error": "\(error)"])
            sendThenClose(.error(code: error.code, message: error.description, requestID: 0), because: .protocol(error))
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { pumpPush() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        terminate(.lost("the server closed the connection"))
        if !closedReported, let failure {
            closedReported = true
            onClosed(failure)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        terminate(.lost("\(error)"))
    }

    /// The TCP connect failed: nothing will ever complete the handshake.
    func connectFailed(_ error: any Error) {
        terminate(.lost("\(error)"))
    }

    // MARK: Operations (on the event loop)

    /// Offers the server `file` (made by this worker, slot 0 holding its gradients in the
    /// layout's order, tensors of `counts` elements) with SHARED_GRADIENTS; succeeds with the
    /// server's answer.
    func offerGradients(_ file: SharedWeightFile, counts: [Int]) -> EventLoopFuture<Bool> {
        guard let context else { return welcome.futureResult.eventLoop.makeFailedFuture(ConnectionFailure.lost("not connected")) }
        if let failure { return context.eventLoop.makeFailedFuture(failure) }
        guard gradientOffer == nil else { return context.eventLoop.makeFailedFuture(ClientError.overlapping(operation: "gradient offer")) }
        let starts = file.tensors(inSlot: 0, counts: counts).map { UnsafeRawPointer($0.baseAddress!) }
        let promise = context.eventLoop.makePromise(of: Bool.self)
        gradientOffer = (file, starts, promise)
        send(.sharedGradients(nonce: file.nonce, elements: UInt64(file.elements), path: file.path))
        return promise.futureResult
    }

    /// Sends PULL and fills `buffers` from the WEIGHTS sequence that answers it.
    ///
    /// On a ``resumed`` connection that has not pulled yet the pull asks for no later step than
    /// WELCOME's: a server that came back at an older step would otherwise
    /// never answer, and a server still at the step this worker pushed before the connection
    /// broke may be missing part of that push, which the worker then sends again.
    func startPull(step: UInt64, into buffers: WeightBuffers) -> EventLoopFuture<PulledStep> {
        guard let context else { return welcome.futureResult.eventLoop.makeFailedFuture(ConnectionFailure.lost("not connected")) }
        if let failure { return context.eventLoop.makeFailedFuture(failure) }
        guard pull == nil else { return context.eventLoop.makeFailedFuture(ClientError.overlapping(operation: "pull")) }
        let promise = context.eventLoop.makePromise(of: PulledStep.self)
        pull = IncomingPull(buffers: buffers, promise: promise)
        let wanted = resumed && !hasPulled ? min(step, knownStep) : step
        send(shared == nil ? .pull(step: wanted) : .pullShared(step: wanted))
        return promise.futureResult
    }

    /// Sends PUSH_BEGIN, one PUSH_CHUNK per range while the channel is writable, PUSH_END and a
    /// HEARTBEAT; succeeds when the server echoes that HEARTBEAT, that is once it has read the
    /// whole push. A push for a step before ``knownStep`` is not sent (the step is closed), nor,
    /// on a ``resumed`` connection that has not pulled yet, one after WELCOME's step (the server
    /// came back behind it).
    ///
    /// With `loss` nil the push is streamed: PUSH_BEGIN goes now, chunks as
    /// ``releasePush(step:tensors:)`` makes them writable, PUSH_END after
    /// ``completePush(step:loss:)``.
    func startPush(
        step: UInt64, sampleCount: UInt32, loss: Double?, gradients: GradientBuffers, ranges: [ChunkRange]
    ) -> EventLoopFuture<PushResult> {
        guard let context else { return welcome.futureResult.eventLoop.makeFailedFuture(ConnectionFailure.lost("not connected")) }
        if let failure { return context.eventLoop.makeFailedFuture(failure) }
        guard push == nil else { return context.eventLoop.makeFailedFuture(ClientError.overlapping(operation: "push")) }
        // Behind the known step: closed for sure. Ahead of a fresh connection's WELCOME: the
        // server came back at an older step (pushing would be refused), so pull that one.
        guard step >= knownStep, !resumed || hasPulled || step == knownStep else {
            return context.eventLoop.makeSucceededFuture(.stepClosed(current: Int(knownStep)))
        }
        let promise = context.eventLoop.makePromise(of: PushResult.self)
        push = OutgoingPush(step: step, loss: loss, gradients: gradients, ranges: ranges, promise: promise)
        send(.pushBegin(step: step, sampleCount: sampleCount))
        pumpPush()
        return promise.futureResult
    }

    /// Lets the streamed push of `step` write the chunks of `tensors`; nothing if that push is
    /// no longer the one in flight.
    func releasePush(step: UInt64, tensors: Range<Int>) {
        guard let push, push.step == step, !push.complete else { return }
        push.release(tensors: tensors)
        pumpPush()
    }

    /// Gives the streamed push of `step` its loss and releases whatever it has not released.
    func completePush(step: UInt64, loss: Double) {
        guard let push, push.step == step, !push.complete else { return }
        push.complete(loss: loss)
        pumpPush()
    }

    /// Sends one control message; succeeds once it is written.
    func sendMessage(_ message: Message) -> EventLoopFuture<Void> {
        guard let context else { return welcome.futureResult.eventLoop.makeFailedFuture(ConnectionFailure.lost("not connected")) }
        if let failure { return context.eventLoop.makeFailedFuture(failure) }
        let promise = context.eventLoop.makePromise(of: Void.self)
        send(message, promise: promise)
        return promise.futureResult
    }

    /// Sends `message` (BYE or ERROR) and closes the connection once it is written.
    func close(sending message: Message?) {
        if let message, failure == nil {
            sendThenClose(message, because: .closedLocally)
        } else {
            terminate(.closedLocally)
        }
    }

    // MARK: What the parser finds

    /// Forwards parser events; a separate value so that `parser` is not accessed while it runs.
    private struct Sink: FrameSink {
        unowned let handler: SessionHandler

        mutating func receive(_ message: Message) throws(WireError) { try handler.receive(message) }
        mutating func beginChunk(_ header: ChunkHeader) throws(WireError) { try handler.beginChunk(header) }
        mutating func chunkData(_ bytes: UnsafeRawBufferPointer, header: ChunkHeader, firstElement: Int) throws(WireError) {
            handler.chunkData(bytes, header: header, firstElement: firstElement)
        }
        mutating func endChunk(_ header: ChunkHeader) throws(WireError) { try handler.endChunk(header) }
    }

    private func receive(_ message: Message) throws(WireError) {
        guard failure == nil else { return }
        switch message {
        case .error(let code, let text, _):
            if welcomed { onEvent(.serverError(code: code, message: text)) }
            if welcomed && (code == .stepClosed || code == .nonFiniteGradient) {
                logger.warning("the server reported an error", metadata: ["code": "\(code)", "message": "\(text)"])
                return
            }
            terminate(.refused(code, text))
        case .bye(let reason, let detail):
            logger.info("the server said bye", metadata: ["reason": "\(reason)", "detail": "\(detail)"])
            onEvent(.bye(reason: reason, detail: detail))
            terminate(.bye(reason, detail))
        case .welcome(let w):
            guard !welcomed else { throw .unexpectedMessage(.welcome, state: "after the handshake") }
            welcomed = true
            handshakeOpen = false
            knownStep = w.currentStep
            startHeartbeat()
            welcome.succeed(w)
        case _ where !welcomed:
            throw .unexpectedMessage(message.type, state: "before WELCOME")
        case .weights(let step, let chunkCount):
            guard let pull, pull.step == nil else { throw .unexpectedMessage(.weights, state: "without a PULL waiting for it") }
            if let claim = pull.buffers.claim, !claim.take(by: .receiver) { pull.discard = true }
            pull.step = step
            pull.expectedChunks = Int(chunkCount)
            if chunkCount == 0 { try finishPull(pull) }
        case .weightsShared(let step, let slot):
            guard let pull, pull.step == nil else { throw .unexpectedMessage(.weightsShared, state: "without a PULL_SHARED waiting for it") }
            if let claim = pull.buffers.claim, !claim.take(by: .receiver) {
                // The caller's thread copied this step (or a later one) from the file itself.
                pull.step = step
                pull.receivedElements = pull.totalElements
                try finishPull(pull)
            } else if let shared, shared.read(step: step, slot: slot, into: pull.buffers.tensors) {
                sharedPulls.read += 1
                pull.step = step
                pull.receivedElements = pull.totalElements
                try finishPull(pull)
            } else {
                // The server wrote that slot again while it was copied (this worker lagged two
                // steps behind): the same pull over TCP.
                sharedPulls.fellBack += 1
                logger.debug("shared weights overwritten while read; pulling over TCP", metadata: ["step": "\(step)"])
                send(.pull(step: step))
            }
        case .sharedGradientsAnswer(let accepted):
            guard let offer = gradientOffer else { throw .unexpectedMessage(.sharedGradientsAnswer, state: "without SHARED_GRADIENTS") }
            gradientOffer = nil
            if accepted { gradientFile = (offer.file, offer.tensorStarts) }
            offer.promise.succeed(accepted)
        case .stepClosed(let step, let current):
            knownStep = max(knownStep, current)
            if let push, push.step == step, push.closedCurrent == nil {
                push.closedCurrent = current
                pumpPush()
            } else {
                logger.debug("step closed without this push", metadata: ["step": "\(step)", "current": "\(current)"])
                onEvent(.stepClosed(step: Int(step), currentStep: Int(current)))
            }
        case .evalRequest(let step):
            onEvent(.evalRequest(step: Int(step)))
        case .heartbeat(let sequence):
            // The server answers frames in order: the echo of the HEARTBEAT sent after
            // PUSH_END means it has read the whole push (and any STEP_CLOSED or ERROR about
            // it has arrived before).
            if let push, push.barrier == sequence { finishPush(push) }
        case .hello, .initLayout, .pull, .pullShared, .pushBegin, .pushEnd, .eval, .sharedGradients, .pushShared:
            throw .unexpectedMessage(message.type, state: "from a server")
        }
    }

    private func beginChunk(_ header: ChunkHeader) throws(WireError) {
        guard failure == nil else { return }
        guard header.kind == .weights, let pull, let step = pull.step, header.step == step,
            pull.receivedChunks < pull.expectedChunks
        else {
            throw .unexpectedMessage(header.kind.messageType, state: "outside the WEIGHTS sequence of a pull (step \(header.step))")
        }
        guard header.dtype == .float32 else {
            throw .wrongDType(field: "WEIGHTS_CHUNK dtype (float32 expected)", value: header.dtype.rawValue)
        }
        let tensors = pull.buffers.tensors
        let t = Int(header.tensor)
        guard t < tensors.count, header.offset + UInt64(header.count) <= UInt64(tensors[t].count) else {
            throw .chunkOutOfRange(
                tensor: header.tensor, offset: header.offset, count: header.count, tensorCount: tensors.count,
                tensorElements: t < tensors.count ? tensors[t].count : 0)
        }
    }

    /// Copies weights from the receive buffer straight into the caller's tensor.
    private func chunkData(_ bytes: UnsafeRawBufferPointer, header: ChunkHeader, firstElement: Int) {
        guard failure == nil, let pull, !pull.discard, let source = bytes.baseAddress,
            let base = pull.buffers.tensors[Int(header.tensor)].baseAddress
        else { return }
        UnsafeMutableRawPointer(base + firstElement).copyMemory(from: source, byteCount: bytes.count)
    }

    private func endChunk(_ header: ChunkHeader) throws(WireError) {
        guard failure == nil, let pull else { return }
        pull.receivedChunks += 1
        pull.receivedElements += Int(header.count)
        if pull.receivedChunks == pull.expectedChunks { try finishPull(pull) }
    }

    private func finishPull(_ pull: IncomingPull) throws(WireError) {
        guard pull.receivedElements == pull.totalElements else {
            throw .wrongLength(field: "elements in the WEIGHTS sequence", value: pull.receivedElements, expected: pull.totalElements)
        }
        let step = pull.step ?? knownStep
        knownStep = max(knownStep, step)
        hasPulled = true
        self.pull = nil
        pull.promise.succeed(PulledStep(step: Int(step)))
    }

    // MARK: Writing

    /// Writes push chunks while the channel is writable, then PUSH_END. Re-entrant calls (a
    /// writability change fired inside a flush) only ask the running loop to go round again.
    private func pumpPush() {
        guard let context, let push, failure == nil else { return }
        if pumping {
            pumpAgain = true
            return
        }
        pumping = true
        defer { pumping = false }
        repeat {
            pumpAgain = false
            while push.closedCurrent == nil, push.next < push.ready.count, context.channel.isWritable, failure == nil {
                let range = push.ranges[push.ready[push.next]]
                push.next += 1
                writeChunk(range, of: push, context: context)
            }
            guard failure == nil else { return }
            if !push.endWritten && (push.closedCurrent != nil || (push.complete && push.next == push.ready.count)) {
                push.endWritten = true
                heartbeatSequence += 1
                push.barrier = heartbeatSequence
                // A streamed push the server closed before it was complete has no loss yet.
                // One write for both, so that the server reads the HEARTBEAT with PUSH_END and
                // echoes it before it closes the step.
                send(.pushEnd(step: push.step, loss: push.loss ?? .nan), flush: false)
                send(.heartbeat(sequence: heartbeatSequence))
            }
        } while pumpAgain
    }

    /// Copies one grid chunk of the caller's gradient into a frame and writes it.
    private func writeChunk(_ range: ChunkRange, of push: OutgoingPush, context: ChannelHandlerContext) {
        // Gradients computed into this worker's gradient file, which the server has mapped:
        // only where the chunk is goes on the wire.
        if let g = gradientFile, let base = push.gradients.tensors[Int(range.tensor)].baseAddress,
           UnsafeRawPointer(base) == g.tensorStarts[Int(range.tensor)] {
            sharedPushChunks += 1
            return send(.pushShared(step: push.step, tensor: range.tensor, offset: range.offset, count: range.count))
        }
        let header = ChunkHeader(kind: .push, step: push.step, range: range)
        var buffer = context.channel.allocator.buffer(capacity: ChunkHeader.frameOverhead + header.dataBytes)
        do {
            try encoder.encodeChunkHeader(header, into: &buffer)
        } catch {
            logger.error("cannot encode a push chunk", metadata: ["error": "\(error)"])
            return terminate(.protocol(error))
        }
        let tensor = push.gradients.tensors[Int(range.tensor)]
        let start = Int(range.offset)
        buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: tensor[start..<start + Int(range.count)])))
        wroteSinceHeartbeat = true
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    private func finishPush(_ finished: OutgoingPush) {
        guard push === finished else { return }
        push = nil
        finished.promise.succeed(finished.closedCurrent.map { .stepClosed(current: Int($0)) } ?? .accepted)
    }

    private func sendHello() {
        guard !helloSent, failure == nil else { return }
        helloSent = true
        send(.hello(hello))
    }

    /// Writes `message`; with `flush` false it leaves with the next message sent.
    private func send(_ message: Message, promise: EventLoopPromise<Void>? = nil, flush: Bool = true) {
        guard let context else {
            promise?.fail(ConnectionFailure.lost("not connected"))
            return
        }
        do {
            let buffer = try encoder.encode(message, allocator: context.channel.allocator)
            wroteSinceHeartbeat = true
            if flush {
                context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
            } else {
                context.write(wrapOutboundOut(buffer), promise: promise)
            }
        } catch {
            logger.error("cannot encode a message", metadata: ["type": "\(message.type)", "error": "\(error)"])
            promise?.fail(error)
        }
    }

    private func sendThenClose(_ message: Message, because reason: ConnectionFailure) {
        guard let context, failure == nil else { return }
        let written = context.eventLoop.makePromise(of: Void.self)
        send(message, promise: written)
        written.futureResult.whenComplete { [self] _ in terminate(reason) }
        // Nothing else is sent or accepted meanwhile.
        if failure == nil { failure = reason }
        failPending(reason)
    }

    private func startHeartbeat() {
        guard let interval = heartbeatInterval, let context else { return }
        heartbeatTask = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            if !wroteSinceHeartbeat && failure == nil {
                heartbeatSequence += 1
                send(.heartbeat(sequence: heartbeatSequence))
            }
            wroteSinceHeartbeat = false
        }
    }

    // MARK: Ending

    /// Records why the connection ends (the first reason wins), fails what waits, and closes.
    private func terminate(_ reason: ConnectionFailure) {
        if failure == nil { failure = reason }
        failPending(failure ?? reason)
        heartbeatTask?.cancel()
        heartbeatTask = nil
        context?.close(promise: nil)
    }

    private func failPending(_ reason: ConnectionFailure) {
        if handshakeOpen {
            handshakeOpen = false
            welcome.fail(reason)
        }
        if let pull {
            self.pull = nil
            // A caller waiting on the shared weight file for this pull gives up now, on this
            // thread, without waiting for the pull's task to be scheduled.
            pull.buffers.claim?.end()
            pull.promise.fail(reason)
        }
        if let push {
            self.push = nil
            push.promise.fail(reason)
        }
        if let offer = gradientOffer {
            gradientOffer = nil
            offer.promise.fail(reason)
        }
    }
}
