import Core
import Foundation
import Logging
import NIOCore
import Wire

/// One worker's TCP connection on the server: parses the byte stream with Wire's streaming
/// parser, hands control messages to the coordinator, stages each arriving push chunk (scaled
/// by the push's sample count) and commits it whole, and sends weights windowed by the
/// channel's writability so a slow reader never makes the server queue unbounded data.
///
/// Lives on the server's event loop, like the coordinator.
final class WorkerConnection: ChannelInboundHandler, WorkerLink, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let host: JobHost
    /// The step coordinator; nil only while a from-worker job waits for its model.
    private var coordinator: StepCoordinator? { host.coordinator }
    private var parser: FrameParser
    private let encoder = FrameEncoder()
    private var context: ChannelHandlerContext?
    private var closing = false
    /// True while `parser` runs; it must not be touched then (exclusive access).
    private var parsing = false

    private(set) var rank: Int?
    private(set) var name = "?"
    private(set) var address = "?"

    /// The push being received: its step, and whether its chunks are to be added.
    private var push: (step: Int, accepted: Bool, factor: Float)?
    /// The chunk being received: its grid index when it is to be added. (Whether its values are
    /// finite is checked where they are added, `StepCoordinator.commitChunk`.)
    private var chunk: ChunkInProgress?
    private struct ChunkInProgress { var index: Int? }
    /// One grid chunk of scaled gradient, allocated at the first push.
    private var staging: UnsafeMutablePointer<Float>?
    /// The worker's gradient file (SHARED_GRADIENTS), mapped for reading, and its tensors
    /// (slot 0). Only a file sealed against shrinking is mapped: no worker can cut it short
    /// under the mapping, so reading it never faults with SIGBUS.
    private var gradientFile: (file: SharedWeightFile, tensors: [UnsafeBufferPointer<Float>])?

    /// Weight snapshots still to send, and the next chunk of the first.
    private var outgoing: [WeightSnapshot] = []
    private var nextChunk = -1
    /// Set while `pumpWeights` runs: a flush can make the channel writable again and call
    /// back into it through `channelWritabilityChanged`; the running loop carries on instead.
    private var pumping = false

    init(host: JobHost) {
        self.host = host
        self.parser = FrameParser(limits: .default, requireHello: true)
    }

    deinit {
        staging?.deallocate()
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        address = context.channel.remoteAddress.map { "\($0)" } ?? "?"
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var buffer = unwrapInboundIn(data)
        var sink = Sink(connection: self)
        parsing = true
        defer { parsing = false }
        do {
            try parser.parse(&buffer, into: &sink)
        } catch {
            host.telemetry.rejected(Self.reason(for: error))
            fail(error.code, error.description, requestID: 0)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { pumpWeights() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !closing && !parsing {
            // The peer went away; half a frame left behind is counted like any malformed input.
            // (Not while the parser runs: a close from inside it lands here synchronously.)
            do { try parser.finish() } catch {
                host.telemetry.rejected(Self.reason(for: error))
                host.logger.info("connection ended inside a frame", metadata: ["address": "\(address)", "error": "\(error)"])
            }
        }
        closing = true
        outgoing.removeAll()
        if let coordinator { coordinator.disconnected(self) } else { host.disconnectedBeforeModel(self) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        host.logger.info("connection error", metadata: ["address": "\(address)", "error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: What the parser finds

    /// Forwards parser events to the connection; a separate value so that the connection's
    /// `parser` is not accessed while it runs.
    private struct Sink: FrameSink {
        unowned let connection: WorkerConnection

        mutating func receive(_ message: Message) throws(WireError) { connection.receive(message) }
        mutating func beginChunk(_ header: ChunkHeader) throws(WireError) { connection.beginChunk(header) }
        mutating func chunkData(_ bytes: UnsafeRawBufferPointer, header: ChunkHeader, firstElement: Int) throws(WireError) {
            connection.chunkData(bytes, header: header, firstElement: firstElement)
        }
        mutating func endChunk(_ header: ChunkHeader) throws(WireError) { connection.endChunk(header) }
    }

    private func receive(_ message: Message) {
        guard !closing else { return }
        guard let coordinator else { return receiveBeforeModel(message) }
        switch message {
        case .hello(let hello):
            name = hello.workerName
            if let ended = coordinator.outcome {
                // A worker reconnecting after the end learns it the same way the others did.
                return bye(ended.byeReason, detail: "the job has ended (\(ended))")
            }
            switch coordinator.hello(self, hello) {
            case .success(let welcome):
                rank = Int(welcome.rank)
                send(.welcome(welcome))
                coordinator.welcomed()
            case .failure(let refusal):
                fail(refusal.code, refusal.message, requestID: 0)
            }
        case .pull(let step):
            guard rank != nil else { return }
            coordinator.pull(self, step: Int(clamping: step))
        case .pullShared(let step):
            guard rank != nil else { return }
            coordinator.pull(self, step: Int(clamping: step), shared: true)
        case .sharedGradients(let nonce, let elements, let path):
            guard rank != nil else { return }
            send(.sharedGradientsAnswer(accepted: mapGradients(path: path, nonce: nonce, elements: elements, coordinator: coordinator)))
        case .pushShared(let step, let tensor, let offset, let count):
            guard rank != nil else { return }
            pushShared(step: step, tensor: tensor, offset: offset, count: count)
        case .pushBegin(let step, let samples):
            guard let rank else { return }
            switch coordinator.pushBegin(rank: rank, step: Int(clamping: step), sampleCount: Int(samples)) {
            case .success(.accepted(let n)):
                push = (Int(clamping: step), true, Float(n))
            case .success(.closed(let current)):
                dropPush(step: Int(clamping: step), current: current)
            case .failure(let refusal):
                host.telemetry.rejected(.protocol)
                fail(refusal.code, refusal.message, requestID: step)
            }
        case .pushEnd(let step, let loss):
            guard let rank else { return }
            defer { push = nil }
            guard let p = push, p.step == Int(clamping: step) else {
                host.telemetry.rejected(.protocol)
                return fail(.unexpectedMessage, "PUSH_END for step \(step) without its PUSH_BEGIN", requestID: step)
            }
            guard p.accepted else { return }
            if case .failure(let refusal) = coordinator.pushEnd(rank: rank, step: p.step, loss: loss) {
                host.telemetry.rejected(refusal.code == .wrongLength ? .wrongLength : .protocol)
                fail(refusal.code, refusal.message, requestID: step)
            }
        case .eval(let step, let loss, let accuracy, _):
            guard let rank else { return }
            coordinator.evaluated(rank: rank, step: Int(clamping: step), testLoss: loss, accuracy: accuracy)
        case .heartbeat(let sequence):
            send(.heartbeat(sequence: sequence))
        case .bye:
            closing = true
            context?.close(promise: nil)
        case .error(let code, let text, _):
            host.logger.warning("worker reported an error", metadata: [
                "rank": "\(rank.map(String.init) ?? "-")", "code": "\(code)", "message": "\(text)",
            ])
        case .initLayout:
            host.telemetry.rejected(.protocol)
            fail(.unexpectedMessage, "INIT is accepted only once, for a job whose model is from-worker, before the model is known", requestID: 0)
        case .welcome, .weights, .weightsShared, .stepClosed, .evalRequest, .sharedGradientsAnswer:
            host.telemetry.rejected(.protocol)
            fail(.unexpectedMessage, "\(message.type) is sent by the server, not to it", requestID: message.id)
        }
    }

    private func beginChunk(_ header: ChunkHeader) {
        guard !closing else { return }
        guard let coordinator else { return beginInitChunk(header) }
        guard header.kind == .push, let rank, let p = push, p.step == Int(clamping: header.step) else {
            host.telemetry.rejected(.protocol)
            return fail(.unexpectedMessage, "\(header.kind.messageType) for step \(header.step) outside a push", requestID: header.step)
        }
        guard let index = coordinator.grid.index(tensor: header.tensor, offset: header.offset, count: header.count) else {
            host.telemetry.rejected(.wrongLength)
            let t = Int(header.tensor)
            let what = t < coordinator.layout.tensors.count
                ? "tensor \(t) '\(coordinator.layout.tensors[t].name)' (\(coordinator.layout.tensors[t].count) elements)"
                : "tensor \(t) (the layout has \(coordinator.layout.tensors.count))"
            return fail(.wrongLength, "push chunk offset \(header.offset) count \(header.count) is not a chunk of the grid (\(coordinator.grid.chunkElements) elements per chunk) for \(what)", requestID: header.step)
        }
        if p.accepted && coordinator.needsChunk(rank: rank, step: p.step, index: index) {
            if staging == nil { staging = .allocate(capacity: coordinator.grid.chunkElements) }
            chunk = ChunkInProgress(index: index)
        } else {
            chunk = ChunkInProgress(index: nil)
        }
    }

    private func chunkData(_ bytes: UnsafeRawBufferPointer, header: ChunkHeader, firstElement: Int) {
        if header.kind == .initValues, let target = initTarget, let base = bytes.baseAddress, !closing {
            UnsafeMutableRawPointer(target + (firstElement - Int(header.offset))).copyMemory(from: base, byteCount: bytes.count)
            return
        }
        guard !closing, let c = chunk, c.index != nil, let staging, let p = push, let base = bytes.baseAddress else { return }
        let count = bytes.count / header.dtype.size
        _ = AccumulatorKernels.scale(
            base, dtype: header.dtype, count: count, by: p.factor,
            into: staging + (firstElement - Int(header.offset)))
    }

    private func endChunk(_ header: ChunkHeader) {
        if header.kind == .initValues {
            guard !closing, initTarget != nil else { return }
            initTarget = nil
            if case .failure(let refusal) = host.initChunkDone() { fail(refusal.code, refusal.message, requestID: 0) }
            return
        }
        guard !closing, let c = chunk, let rank, let p = push, let coordinator else { return }
        chunk = nil
        if let index = c.index, let staging {
            coordinator.commitChunk(rank: rank, step: p.step, index: index, values: UnsafeRawPointer(staging), factor: 1)
        }
    }

    // MARK: Gradients in the worker's file (workers on this host)

    /// Maps the gradient file a worker on this host named: only while shared weights are on,
    /// only a `/proc/<pid>/fd/<n>` path (a worker's memfd; nothing else is even opened), and
    /// only a file sealed against shrinking whose header holds `nonce` and the layout's
    /// parameter count. Anything else is refused (the worker then sends its gradients in
    /// PUSH_CHUNK frames) and logged.
    private func mapGradients(path: String, nonce: UInt64, elements: UInt64, coordinator: StepCoordinator) -> Bool {
        let layout = coordinator.layout
        guard coordinator.sharedWeights != nil, elements == UInt64(layout.parameterCount), Self.isDescriptorPath(path) else {
            host.logger.info("gradient file refused", metadata: ["rank": "\(rank ?? -1)", "path": "\(path)", "elements": "\(elements)"])
            return false
        }
        do {
            let file = try SharedWeightFile.open(path: path, nonce: nonce, elements: layout.parameterCount, sealed: true)
            gradientFile = (file, file.tensors(inSlot: 0, counts: layout.tensors.map(\.count)).map { UnsafeBufferPointer($0) })
            return true
        } catch {
            host.logger.info("gradient file refused", metadata: ["rank": "\(rank ?? -1)", "error": "\(error)"])
            return false
        }
    }

    /// Whether `path` is `/proc/<digits>/fd/<digits>`: how a process names a descriptor of its own.
    static func isDescriptorPath(_ path: String) -> Bool {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        func number(_ s: Substring) -> Bool { !s.isEmpty && s.count <= 10 && s.allSatisfy { $0.isASCII && $0.isNumber } }
        return parts.count == 5 && parts[0].isEmpty && parts[1] == "proc" && number(parts[2]) && parts[3] == "fd" && number(parts[4])
    }

    /// PUSH_SHARED: the grid chunk is read from the worker's gradient file, through the same
    /// checks as a PUSH_CHUNK carrying the same values, and scaled straight into the accumulator
    /// (one pass reads the file and the accumulator; no staging).
    private func pushShared(step: UInt64, tensor: UInt32, offset: UInt64, count: UInt32) {
        guard let g = gradientFile else {
            host.telemetry.rejected(.protocol)
            return fail(.unexpectedMessage, "PUSH_SHARED without an accepted SHARED_GRADIENTS", requestID: step)
        }
        let header = ChunkHeader(kind: .push, step: step, tensor: tensor, offset: offset, count: count)
        beginChunk(header)
        guard !closing, let c = chunk, let rank, let p = push, let coordinator else { return }
        // beginChunk checked that (tensor, offset, count) is a chunk of the grid; the values go
        // from the mapping into the accumulator, scaled on the way as a PUSH_CHUNK's would be
        // into the staging buffer.
        chunk = nil
        if let index = c.index, let source = g.tensors[Int(tensor)].baseAddress {
            coordinator.commitChunk(rank: rank, step: p.step, index: index, values: UnsafeRawPointer(source + Int(offset)), factor: p.factor)
        }
    }

    // MARK: Before the model is known (from-worker jobs)

    /// Where the INIT_CHUNK being received goes.
    private var initTarget: UnsafeMutablePointer<Float>?

    private func receiveBeforeModel(_ message: Message) {
        switch message {
        case .hello(let hello):
            name = hello.workerName
            switch host.helloBeforeModel(self, hello) {
            case .success(let welcome):
                rank = Int(welcome.rank)
                send(.welcome(welcome))
            case .failure(let refusal):
                fail(refusal.code, refusal.message, requestID: 0)
            }
        case .initLayout(let layout, let chunkCount):
            if case .failure(let refusal) = host.beginInit(self, layout: layout, chunkCount: Int(chunkCount)) {
                host.telemetry.rejected(.protocol)
                fail(refusal.code, refusal.message, requestID: 0)
            }
        case .heartbeat(let sequence):
            send(.heartbeat(sequence: sequence))
        case .bye:
            closing = true
            context?.close(promise: nil)
        default:
            host.telemetry.rejected(.protocol)
            fail(.unexpectedMessage, "\(message.type) before the model is known: this job waits for a worker's INIT", requestID: message.id)
        }
    }

    private func beginInitChunk(_ header: ChunkHeader) {
        guard header.kind == .initValues else {
            host.telemetry.rejected(.protocol)
            return fail(.unexpectedMessage, "\(header.kind.messageType) before the model is known", requestID: header.step)
        }
        switch host.initTarget(header) {
        case .success(let target):
            initTarget = target
        case .failure(let refusal):
            host.telemetry.rejected(refusal.code == .wrongDtype ? .wrongDtype : .wrongLength)
            fail(refusal.code, refusal.message, requestID: 0)
        }
    }

    // MARK: WorkerLink

    func send(_ message: Message) {
        guard let context, !closing else { return }
        do {
            let buffer = try encoder.encode(message, allocator: context.channel.allocator)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        } catch {
            host.logger.error("could not encode a message", metadata: ["type": "\(message.type)", "error": "\(error)"])
        }
    }

    func sendWeights(_ snapshot: WeightSnapshot) {
        outgoing.append(snapshot)
        if outgoing.count == 1 {
            nextChunk = -1
            pumpWeights()
        }
    }

    /// Writes WEIGHTS, then chunk frames while the channel stays writable; resumes from
    /// `channelWritabilityChanged`.
    private func pumpWeights() {
        guard let context, !closing, !pumping else { return }
        pumping = true
        defer { pumping = false }
        while let snapshot = outgoing.first, context.channel.isWritable {
            if nextChunk < 0 {
                send(.weights(step: UInt64(snapshot.step), chunkCount: UInt32(snapshot.chunks.count)))
                nextChunk = 0
                continue
            }
            if nextChunk >= snapshot.chunks.count {
                outgoing.removeFirst()
                nextChunk = -1
                continue
            }
            let header = ChunkHeader(kind: .weights, step: UInt64(snapshot.step), range: snapshot.ranges[nextChunk])
            var head = context.channel.allocator.buffer(capacity: ChunkHeader.frameOverhead)
            do {
                try encoder.encodeChunkHeader(header, into: &head)
            } catch {
                host.logger.error("could not encode a weights chunk", metadata: ["error": "\(error)"])
                return
            }
            context.write(wrapOutboundOut(head), promise: nil)
            context.writeAndFlush(wrapOutboundOut(snapshot.chunks[nextChunk]), promise: nil)
            nextChunk += 1
        }
    }

    func pushOutlived(step: Int, current: Int) -> Bool {
        guard let p = push, p.step == step, p.accepted, !closing else { return false }
        dropPush(step: step, current: current)
        return true
    }

    /// Answers STEP_CLOSED for the push of `step` and reads the rest of it without adding it.
    private func dropPush(step: Int, current: Int) {
        push = (step, false, 0)
        send(.stepClosed(step: UInt64(step), currentStep: UInt64(current)))
    }

    func fail(_ code: ErrorCode, _ message: String, requestID: UInt64) {
        guard let context, !closing else { return }
        host.logger.warning("refusing a worker", metadata: [
            "address": "\(address)", "rank": "\(rank.map(String.init) ?? "-")", "code": "\(code)", "message": "\(message)",
        ])
        send(.error(code: code, message: message, requestID: requestID))
        closing = true
        context.close(promise: nil)
    }

    func bye(_ reason: ByeReason, detail: String) {
        guard let context, !closing else { return }
        send(.bye(reason: reason, detail: detail))
        closing = true
        context.close(promise: nil)
    }

    /// The `lars_rejected_frames_total` reason for a parse failure.
    static func reason(for error: WireError) -> RejectReason {
        switch error.code {
        case .wrongLength, .chunkOutOfRange, .frameTooLarge: .wrongLength
        case .wrongDtype: .wrongDtype
        case .authFailed: .auth
        default: .malformed
        }
    }
}
