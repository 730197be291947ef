import Core
import Foundation
import NIOCore
import NIOPosix
import Wire

/// A scripted stand-in for lars-server over real loopback sockets, enough of the protocol to
/// drive a `ClientSession`: WELCOME with a job JSON, WEIGHTS sequences with known values,
/// recording of pushes, and faults on request (refusals, a dropped connection mid-push,
/// STEP_CLOSED, BYE, EVAL_REQUEST between weight chunks).
///
/// All state lives on the server's one event loop; tests read it with ``read(_:)``.
final class FakeServer: @unchecked Sendable {
    let layout: WireLayout
    let chunkElements: Int
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var serverChannel: (any Channel)?
    private var children: [any Channel] = []

    // Script (set before the client acts).
    var step: UInt64 = 0
    var refuseHellos: [ErrorCode] = []
    var dropAfterPushChunks: Int?
    var stepClosedOnPush: UInt64?
    var byeOnPull: ByeReason?
    /// Close the connection instead of answering the next PULL for a step after `step`.
    var dropOnPullAhead = false
    var evalRequestMidWeights: UInt64?
    /// A shared weight file to name in WELCOME and answer PULL_SHARED from.
    var sharedFile: SharedWeightFile?
    /// Answer the next PULL_SHARED with a slot written again (two steps on) before the answer.
    var overwriteSharedSlot = false
    /// Write the slot for a PULL_SHARED but hold the answer until `releaseHeldAnswers()`.
    var holdSharedAnswers = false
    private var heldAnswers: [() -> Void] = []

    /// Sends the answers `holdSharedAnswers` held (call inside `write`).
    func releaseHeldAnswers() {
        let answers = heldAnswers
        heldAnswers = []
        for answer in answers { answer() }
    }

    // Record.
    var hellos: [Hello] = []
    /// Gradient received per step, one array per tensor (NaN where nothing arrived).
    var gradients: [UInt64: [[Float]]] = [:]
    var pushChunks = 0
    /// The tensor of every push chunk received, in arrival order.
    var pushChunkTensors: [UInt32] = []
    var pushEnds: [(step: UInt64, loss: Double, samples: UInt32)] = []
    /// PULL and PUSH_END frames in the order they arrived, as "PULL 3" and "PUSH_END 2".
    var order: [String] = []
    var evals: [(step: UInt64, accuracy: Double)] = []
    var byes = 0
    var drops = 0

    init(layout: WireLayout, chunkElements: Int) {
        self.layout = layout
        self.chunkElements = chunkElements
    }

    var port: Int { serverChannel?.localAddress?.port ?? 0 }

    func start() async throws {
        serverChannel = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    self.children.append(channel)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(requireHello: true)))
                    try channel.pipeline.syncOperations.addHandler(Peer(server: self))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// Stops listening and drops every connection (a crashed server).
    func crash() async {
        try? await serverChannel?.close()
        let children = try? await group.next().submit { self.children }.get()
        for c in children ?? [] { try? await c.close() }
    }

    func shutdown() async {
        await crash()
        try? await group.shutdownGracefully()
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (FakeServer) -> T) async throws -> T {
        try await group.next().submit { body(self) }.get()
    }

    func write(_ body: @escaping @Sendable (FakeServer) -> Void) async throws {
        try await group.next().submit { body(self) }.get()
    }

    /// The weight value the server sends for element `i` of tensor `t` at `step`.
    static func weight(step: UInt64, tensor t: Int, element i: Int) -> Float {
        Float(step) * 1000 + Float(t) * 100 + Float(i % 97)
    }

    var grid: [ChunkRange] {
        var ranges: [ChunkRange] = []
        for (index, tensor) in layout.tensors.enumerated() {
            var offset = 0
            repeat {
                let n = min(chunkElements, tensor.spec.count - offset)
                ranges.append(ChunkRange(tensor: UInt32(index), offset: UInt64(offset), count: UInt32(n)))
                offset += n
            } while offset < tensor.spec.count
        }
        return ranges
    }

    final class Peer: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = Frame
        typealias OutboundOut = ByteBuffer

        let server: FakeServer
        let encoder = FrameEncoder()
        var pushStep: UInt64?
        var ignoringPush = false

        init(server: FakeServer) { self.server = server }

        func send(_ message: Message, context: ChannelHandlerContext) {
            context.writeAndFlush(wrapOutboundOut(try! encoder.encode(message)), promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .message(let message): receive(message, context: context)
            case .chunk(let header, var data): chunk(header, &data, context: context)
            }
        }

        func receive(_ message: Message, context: ChannelHandlerContext) {
            switch message {
            case .hello(let hello):
                server.hellos.append(hello)
                if !server.refuseHellos.isEmpty {
                    let code = server.refuseHellos.removeFirst()
                    send(.error(code: code, message: "scripted refusal", requestID: 0), context: context)
                    context.close(promise: nil)
                    return
                }
                let rank = hello.wantedRank ?? 0
                let job: [String: Any] = [
                    "name": "fake", "model": "from-test", "global_batch": 64, "workers": 2, "steps": 10, "seed": 7,
                    "rank": Int(rank), "share": 32, "current_step": Int(server.step), "chunk_elements": server.chunkElements,
                    "steps_per_epoch": 5, "total_steps": 10,
                    "fingerprint": ["sample_count": 60000, "label_crc32": 3_000_000_000],
                ]
                var described = job
                if let file = server.sharedFile {
                    described["shared_weights"] = ["path": file.path, "nonce": String(file.nonce, radix: 16), "elements": file.elements]
                }
                let json = String(decoding: try! JSONSerialization.data(withJSONObject: described), as: UTF8.self)
                send(.welcome(Welcome(rank: rank, worldSize: 2, currentStep: server.step, job: json, layout: server.layout)), context: context)
            case .pull(let wanted):
                server.order.append("PULL \(wanted)")
                if let reason = server.byeOnPull {
                    send(.bye(reason: reason, detail: "scripted"), context: context)
                    context.close(promise: nil)
                    return
                }
                if server.dropOnPullAhead && wanted > server.step {
                    server.dropOnPullAhead = false
                    server.drops += 1
                    context.close(promise: nil)
                    return
                }
                let step = max(wanted, server.step)
                let grid = server.grid
                send(.weights(step: step, chunkCount: UInt32(grid.count)), context: context)
                for (index, range) in grid.enumerated() {
                    var buffer = context.channel.allocator.buffer(capacity: 64 + Int(range.count) * 4)
                    try! encoder.encodeChunkHeader(ChunkHeader(kind: .weights, step: step, range: range), into: &buffer)
                    let values = (Int(range.offset)..<Int(range.offset) + Int(range.count)).map {
                        FakeServer.weight(step: step, tensor: Int(range.tensor), element: $0)
                    }
                    values.withUnsafeBytes { _ = buffer.writeBytes($0) }
                    context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
                    if index == 0, let eval = server.evalRequestMidWeights {
                        send(.evalRequest(step: eval), context: context)
                        send(.heartbeat(sequence: 99), context: context)
                    }
                }
            case .pullShared(let wanted):
                server.order.append("PULL_SHARED \(wanted)")
                guard let file = server.sharedFile else { return }
                let step = max(wanted, server.step)
                let tensors = server.layout.tensors
                func publish(_ s: UInt64) -> UInt32 {
                    let values = tensors.indices.flatMap { t in
                        (0..<tensors[t].spec.count).map { FakeServer.weight(step: s, tensor: t, element: $0) }
                    }
                    return values.withUnsafeBufferPointer { file.publish(step: s, tensors: [$0]) }
                }
                let slot = publish(step)
                if server.overwriteSharedSlot {
                    server.overwriteSharedSlot = false
                    _ = publish(step + 1)
                    _ = publish(step + 2)  // into `slot` again
                }
                if server.holdSharedAnswers {
                    server.heldAnswers.append { self.send(.weightsShared(step: step, slot: slot), context: context) }
                } else {
                    send(.weightsShared(step: step, slot: slot), context: context)
                }
            case .pushBegin(let step, _):
                pushStep = step
                if let current = server.stepClosedOnPush {
                    ignoringPush = true
                    send(.stepClosed(step: step, currentStep: current), context: context)
                    // Read nothing for a while, as a busy server would: the client's window
                    // fills, and STEP_CLOSED reaches it while the push waits to go on.
                    _ = context.channel.setOption(ChannelOptions.autoRead, value: false)
                    let channel = context.channel
                    context.eventLoop.scheduleTask(in: .milliseconds(200)) {
                        _ = channel.setOption(ChannelOptions.autoRead, value: true)
                        channel.read()
                    }
                } else {
                    ignoringPush = false
                    // Each push is recorded from scratch, so only a whole resend completes it.
                    server.gradients[step] = server.layout.tensors.map { [Float](repeating: .nan, count: $0.spec.count) }
                }
            case .pushEnd(let step, let loss):
                server.order.append("PUSH_END \(step)")
                if !ignoringPush { server.pushEnds.append((step, loss, 0)) }
                pushStep = nil
            case .eval(let step, _, let accuracy, _):
                server.evals.append((step, accuracy))
            case .heartbeat(let sequence):
                send(.heartbeat(sequence: sequence), context: context)
            case .bye:
                server.byes += 1
                context.close(promise: nil)
            default:
                break
            }
        }

        func chunk(_ header: ChunkHeader, _ data: inout ByteBuffer, context: ChannelHandlerContext) {
            guard header.kind == .push, !ignoringPush, header.step == pushStep else { return }
            let t = Int(header.tensor)
            let start = Int(header.offset)
            data.withUnsafeReadableBytes { raw in
                server.gradients[header.step]![t].withUnsafeMutableBytes { dst in
                    UnsafeMutableRawBufferPointer(rebasing: dst[(start * 4)...]).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw.prefix(Int(header.count) * 4)))
                }
            }
            server.pushChunks += 1
            server.pushChunkTensors.append(header.tensor)
            if let n = server.dropAfterPushChunks, server.pushChunks == n {
                server.dropAfterPushChunks = nil
                server.drops += 1
                context.close(promise: nil)
            }
        }
    }
}
