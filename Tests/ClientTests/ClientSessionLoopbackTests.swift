import Core
import Foundation
import Logging
import NIOCore
import Testing
import Wire

@testable import Client

/// `ClientSession` against ``FakeServer`` over loopback: the handshake, pulls and pushes with
/// their exact bytes, and the faults a worker must live through.
@Suite(.timeLimit(.minutes(1)))
struct ClientSessionLoopbackTests {
    static let small = WireLayout([
        WireTensor(spec: TensorSpec(name: "fc.weight", shape: [50, 60]), adapt: true),
        WireTensor(spec: TensorSpec(name: "fc.bias", shape: [50]), adapt: false),
        WireTensor(spec: TensorSpec(name: "empty", shape: [0]), adapt: false),
    ])

    static func options(_ name: String = "test-worker") -> ClientOptions {
        ClientOptions(
            workerName: name, connectTimeout: .seconds(5), reconnectTimeout: .seconds(5),
            initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(100), heartbeatInterval: nil)
    }

    /// Float buffers shaped like `layout`.
    final class Buffers {
        let arena: FloatArena
        init(_ layout: WireLayout) { arena = FloatArena(layout: layout.layout) }
        var mutable: [UnsafeMutableBufferPointer<Float>] { arena.buffers }
        var readOnly: [UnsafeBufferPointer<Float>] { arena.buffers.map { UnsafeBufferPointer($0) } }
        /// Whether every element holds what `FakeServer` sends as the weights of `step`.
        func holdFakeWeights(step: UInt64) -> Bool {
            arena.buffers.enumerated().allSatisfy { t, buffer in
                buffer.indices.allSatisfy { buffer[$0] == FakeServer.weight(step: step, tensor: t, element: $0) }
            }
        }
    }

    /// Polls `condition` until it holds (or 10 s passed): the server records asynchronously.
    func eventually(_ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while try await !condition(), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    static let big = WireLayout([
        WireTensor(spec: TensorSpec(name: "w", shape: [4_000_000]), adapt: true),
        WireTensor(spec: TensorSpec(name: "b", shape: [10]), adapt: false),
    ])

    /// A shared weight file for the small layout, in a temporary directory of its own (which
    /// the caller removes), for FakeServer to name in WELCOME.
    static func sharedFile() throws -> SharedWeightFile {
        let dir = NSTemporaryDirectory() + "lars-fake-shm-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return try SharedWeightFile.create(elements: small.layout.parameterCount, directory: dir)
    }

    func withServer(
        layout: WireLayout = small, chunkElements: Int = 1024,
        _ body: (FakeServer) async throws -> Void
    ) async throws {
        let server = FakeServer(layout: layout, chunkElements: chunkElements)
        try await server.start()
        do {
            try await body(server)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test func handshakePullAndPushCarryExactValues() async throws {
        try await withServer { server in
            try await server.write { $0.step = 3 }
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            let info = try await session.connect()
            #expect(info.rank == 0)
            #expect(info.worldSize == 2)
            #expect(info.currentStep == 3)
            #expect(info.layout == Self.small)
            #expect(info.job.share == 32)
            #expect(info.job.chunkElements == 1024)
            #expect(info.job.totalSteps == 10)
            #expect(info.job.stepsPerEpoch == 5)
            #expect(info.job.config.globalBatch == 64)
            #expect(info.job.fingerprint == DatasetFingerprint(sampleCount: 60000, labelCRC32: 3_000_000_000))
            #expect(info.job.object["model"] as? String == "from-test")

            let weights = Buffers(Self.small)
            let pulled = try await session.pull(step: 3, into: weights.mutable)
            #expect(pulled.step == 3)
            #expect(weights.holdFakeWeights(step: 3))

            let gradients = Buffers(Self.small)
            for (t, buffer) in gradients.mutable.enumerated() {
                for i in buffer.indices { buffer[i] = Float(t) - Float(i) * 0.25 }
            }
            let result = try await session.push(step: 3, sampleCount: 32, loss: 1.5, gradients: gradients.readOnly)
            #expect(result == .accepted)
            try await eventually { try await server.read { $0.pushEnds.count } == 1 }
            let received = try await server.read { s in s.gradients[3] ?? [] }
            #expect(received == gradients.readOnly.map { Array($0) })
            let ends = try await server.read { $0.pushEnds.map(\.loss) }
            #expect(ends == [1.5])
            // 3000 + 50 elements in 1024-element chunks (3 + 1), and one empty chunk.
            #expect(try await server.read { $0.pushChunks } == 5)
            await session.close()
            try await eventually { try await server.read { $0.byes } == 1 }
            #expect(try await server.read { $0.byes } == 1)
        }
    }

    @Test func buffersThatDoNotMatchTheLayoutAreRefused() async throws {
        try await withServer { server in
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            _ = try await session.connect()
            let wrong = FloatArena(layout: Layout([TensorSpec(name: "x", shape: [3000]), TensorSpec(name: "y", shape: [49]), TensorSpec(name: "z", shape: [0])]))
            await #expect(throws: ClientError.buffersMismatch(tensor: 1, expected: 50, found: 49)) {
                _ = try await session.pull(step: 0, into: wrong.buffers)
            }
            await session.close()
        }
    }

    @Test func controlFramesBetweenWeightChunksAreDelivered() async throws {
        try await withServer { server in
            try await server.write { $0.evalRequestMidWeights = 0 }
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            _ = try await session.connect()
            let weights = Buffers(Self.small)
            _ = try await session.pull(step: 0, into: weights.mutable)
            #expect(weights.mutable[0][2999] == FakeServer.weight(step: 0, tensor: 0, element: 2999))
            #expect(session.takeEvalRequest() == 0)
            #expect(session.takeEvalRequest() == nil)
            try await session.sendEval(step: 0, testLoss: 0.4, accuracy: 0.875, sampleCount: 10000)
            try await eventually { try await server.read { $0.evals.count } == 1 }
            let evals = try await server.read { $0.evals.map(\.accuracy) }
            #expect(evals == [0.875])
            var iterator = session.events.makeAsyncIterator()
            #expect(await iterator.next() == .evalRequest(step: 0))
            await session.close()
        }
    }

    /// STEP_CLOSED reaches the session while a 16 MB push waits for its window: the rest of the
    /// push is not sent.
    @Test func stepClosedEndsThePushEarly() async throws {
        try await withServer(layout: Self.big, chunkElements: 65_536) { server in
            try await server.write { $0.stepClosedOnPush = 1 }
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            _ = try await session.connect()
            let buffers = Buffers(Self.big)
            let result = try await session.push(step: 0, sampleCount: 32, loss: 1, gradients: buffers.readOnly)
            #expect(result == .stepClosed(current: 1))
            // The session now knows step 1 is open: a push for 0 again is not even sent.
            let again = try await session.push(step: 0, sampleCount: 32, loss: 1, gradients: buffers.readOnly)
            #expect(again == .stepClosed(current: 1))
            await session.close()
            try await eventually { try await server.read { $0.byes } == 1 }
            // Chunks the server dropped are not counted; the grid has 63 of them.
            #expect(try await server.read { $0.pushEnds.count } == 0)
        }
    }

    /// A small push is written whole before STEP_CLOSED can arrive; the push still reports it,
    /// because it returns only when the server has read everything (the HEARTBEAT echo).
    @Test func aSmallLatePushReportsStepClosed() async throws {
        try await withServer { server in
            try await server.write { $0.stepClosedOnPush = 1 }
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            _ = try await session.connect()
            let buffers = Buffers(Self.small)
            #expect(try await session.push(step: 0, sampleCount: 32, loss: 1, gradients: buffers.readOnly) == .stepClosed(current: 1))
            await session.close()
        }
    }

    @Test func byeEndsTheSession() async throws {
        try await withServer { server in
            try await server.write { $0.byeOnPull = .done }
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            _ = try await session.connect()
            let buffers = Buffers(Self.small)
            await #expect(throws: ClientError.byeReceived(reason: .done, detail: "scripted")) {
                _ = try await session.pull(step: 0, into: buffers.mutable)
            }
            var events: [SessionEvent] = []
            for await event in session.events { events.append(event) }
            #expect(events == [.bye(reason: .done, detail: "scripted")])
            await #expect(throws: ClientError.byeReceived(reason: .done, detail: "scripted")) {
                _ = try await session.push(step: 0, sampleCount: 1, loss: 0, gradients: buffers.readOnly)
            }
        }
    }

    @Test func rankUnavailableIsRetriedAndAuthFailureIsFatal() async throws {
        try await withServer { server in
            try await server.write { $0.refuseHellos = [.rankUnavailable, .rankUnavailable] }
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            let info = try await session.connect()
            #expect(info.rank == 0)
            #expect(try await server.read { $0.hellos.count } == 3)
            await session.close()

            try await server.write { $0.refuseHellos = [.authFailed] }
            let refused = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            await #expect(throws: ClientError.refused(code: .authFailed, message: "scripted refusal")) {
                _ = try await refused.connect()
            }
        }
    }

    @Test func connectGivesUpAfterItsTimeout() async throws {
        let server = FakeServer(layout: Self.small, chunkElements: 1024)
        try await server.start()
        let port = server.port
        await server.shutdown()
        var options = Self.options()
        // Long enough for a retry or two even on a loaded machine (refusals are immediate).
        options.connectTimeout = .seconds(2)
        let session = ClientSession(host: "127.0.0.1", port: port, options: options)
        let started = ContinuousClock.now
        do {
            _ = try await session.connect()
            Issue.record("connect succeeded without a server")
        } catch {
            guard case .connectFailed(_, _, let attempts, _, _) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            // More than one attempt proves the retry; how many fit in 2 s depends on load.
            #expect(attempts >= 2)
        }
        // Keeps trying for the whole timeout (the backoff's next wait, 1.6 s after 1.5 s of
        // attempts, once made it give up at 1.5 s), and gives up rather than hanging (that bound
        // is loose: no timing thresholds in tests).
        let took = ContinuousClock.now - started
        #expect(took >= .seconds(2), "gave up after \(took) of a 2 s timeout")
        #expect(took < .seconds(30))
    }

    /// The server drops the connection after two chunks of a 16 MB push: the session
    /// reconnects asking for its rank and the layout's hash, and sends the whole push again.
    @Test func aPushCutOffMidwayIsSentAgainWhole() async throws {
        try await withServer(layout: Self.big, chunkElements: 65_536) { server in
            var options = Self.options()
            options.wantedRank = 1
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: options)
            let info = try await session.connect()
            #expect(info.rank == 1)
            let gradients = Buffers(Self.big)
            for (t, buffer) in gradients.mutable.enumerated() {
                for i in buffer.indices { buffer[i] = Float(i % 1000) * 0.5 + Float(t) }
            }
            try await server.write { $0.dropAfterPushChunks = 2 }
            let result = try await session.push(step: 0, sampleCount: 32, loss: 0.75, gradients: gradients.readOnly)
            #expect(result == .accepted)
            try await eventually { try await server.read { $0.pushEnds.count } == 1 }
            #expect(try await server.read { $0.drops } == 1)
            let hellos = try await server.read { $0.hellos }
            #expect(hellos.count == 2)
            #expect(hellos.last?.wantedRank == 1)
            #expect(hellos.last?.layoutHash == Self.big.hash)
            let received = try await server.read { $0.gradients[0] ?? [] }
            let sent = gradients.readOnly.map { Array($0) }
            #expect(received.count == 2)
            let same = received == sent
            #expect(same, "the resent gradient differs from the one sent")
            #expect(try await server.read { $0.pushEnds.map(\.loss) } == [0.75])
            var iterator = session.events.makeAsyncIterator()
            #expect(await iterator.next() == .reconnected(rank: 1, currentStep: 0))
            await session.close()
        }
    }

    /// A streamed push: PUSH_BEGIN goes at once, a tensor's chunks only once it is released
    /// (in the order released, the last layer's first, as a backward pass finishes them), and
    /// PUSH_END with the loss only at `finish`; the server gets the exact values.
    @Test func aStreamedPushSendsEachTensorWhenReleased() async throws {
        try await withServer { server in
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            _ = try await session.connect()
            let gradients = Buffers(Self.small)
            for (t, buffer) in gradients.mutable.enumerated() {
                for i in buffer.indices { buffer[i] = Float(t) * 3 - Float(i) * 0.125 }
            }
            let stream = try await session.beginPush(step: 0, sampleCount: 32, gradients: gradients.readOnly)
            try await eventually { try await server.read { $0.gradients[0] != nil } }
            #expect(try await server.read { $0.pushChunks } == 0)

            stream.release(tensors: 1..<2)
            try await eventually { try await server.read { $0.pushChunks } == 1 }
            let bias = try await server.read { $0.gradients[0]?[1] ?? [] }
            #expect(bias == Array(gradients.readOnly[1]))
            // Nothing else has gone, PUSH_END included.
            try await Task.sleep(for: .milliseconds(50))
            #expect(try await server.read { $0.pushChunks } == 1)
            #expect(try await server.read { $0.pushEnds.count } == 0)

            // Tensors 0 and 2 were never released: `finish` sends them.
            let result = try await stream.finish(loss: 0.625)
            #expect(result == .accepted)
            try await eventually { try await server.read { $0.pushEnds.count } == 1 }
            #expect(try await server.read { $0.gradients[0] ?? [] } == gradients.readOnly.map { Array($0) })
            #expect(try await server.read { $0.pushEnds.map(\.loss) } == [0.625])
            #expect(try await server.read { $0.pushChunkTensors } == [1, 0, 0, 0, 2])
            await session.close()
        }
    }

    /// With a shared weight file named in WELCOME, pulls are read from its slots; a slot the
    /// server wrote again before the copy makes the client pull that step over TCP instead.
    @Test func sharedWeightsAreReadFromTheFileAndARacedCopyGoesAgainOverTCP() async throws {
        try await withServer { server in
            let file = try Self.sharedFile()
            defer { try? FileManager.default.removeItem(atPath: (file.path as NSString).deletingLastPathComponent) }
            try await server.write {
                $0.sharedFile = file
                $0.step = 3
            }
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            let info = try await session.connect()
            #expect(info.sharedWeightsPath == file.path)
            let weights = Buffers(Self.small)
            for (step, overwrite) in [(3, false), (4, true)] {
                try await server.write {
                    $0.step = UInt64(step)
                    $0.overwriteSharedSlot = overwrite
                }
                for buffer in weights.mutable { buffer.update(repeating: .nan) }
                #expect(try await session.pull(step: step, into: weights.mutable).step == step)
                #expect(weights.holdFakeWeights(step: UInt64(step)), "after the pull of step \(step)")
            }
            let counted = await session.sharedPulls()
            #expect(counted.read == 1)
            #expect(counted.fellBack == 1)
            #expect(try await server.read { $0.order } == ["PULL_SHARED 3", "PULL_SHARED 4", "PULL 4"])
            await session.close()
        }
    }

    /// `pullNext` sends its PULL on the push's connection ahead of PUSH_END (the server holds it
    /// when the push closes the step) and fills the buffers with the weights that answer it.
    @Test func pullNextGoesOutAheadOfPushEnd() async throws {
        try await withServer { server in
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            _ = try await session.connect()
            let gradients = Buffers(Self.small)
            let stream = try await session.beginPush(step: 0, sampleCount: 32, gradients: gradients.readOnly)
            let weights = Buffers(Self.small)
            let pull = stream.pullNext(1, into: weights.mutable)
            #expect(try await stream.finish(loss: 0.5) == .accepted)
            #expect(try await pull.step() == 1)
            #expect(try await server.read { $0.order } == ["PULL 1", "PUSH_END 0"])
            #expect(weights.holdFakeWeights(step: 1))
            await session.close()
        }
    }

    /// A session with `server`, which names `file` in WELCOME and holds its WEIGHTS_SHARED
    /// answers: a streamed push of step 0, done, and the pull of step 1 that went ahead of its
    /// PUSH_END, into `weights` set to NaN.
    func heldSharedPull(_ server: FakeServer, file: SharedWeightFile, into weights: Buffers) async throws -> (ClientSession, NextPull) {
        try await server.write {
            $0.sharedFile = file
            $0.holdSharedAnswers = true
        }
        let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
        _ = try await session.connect()
        let gradients = Buffers(Self.small)
        let stream = try await session.beginPush(step: 0, sampleCount: 32, gradients: gradients.readOnly)
        for buffer in weights.mutable { buffer.update(repeating: .nan) }
        let pull = stream.pullNext(1, into: weights.mutable)
        #expect(try await stream.finish(loss: 0.5) == .accepted)
        return (session, pull)
    }

    /// With the server's shared weight file mapped, `NextPull.step()` copies the step from the
    /// file as soon as the server writes it, without its answer: the fake server writes the
    /// slot and holds WEIGHTS_SHARED back. The answer, once let go, is dropped: it writes
    /// nothing into the buffers.
    @Test func nextPullReadsTheSharedFileWithoutWaitingForTheAnswer() async throws {
        try await withServer { server in
            let file = try Self.sharedFile()
            defer { try? FileManager.default.removeItem(atPath: (file.path as NSString).deletingLastPathComponent) }
            let weights = Buffers(Self.small)
            let (session, pull) = try await heldSharedPull(server, file: file, into: weights)
            #expect(try await pull.step() == 1)
            #expect(weights.holdFakeWeights(step: 1))
            #expect(try await server.read { $0.order } == ["PULL_SHARED 1", "PUSH_END 0"])

            for buffer in weights.mutable { buffer.update(repeating: .nan) }
            try await server.write { $0.releaseHeldAnswers() }
            await pull.settle()
            #expect(weights.mutable.allSatisfy { $0.allSatisfy(\.isNaN) }, "the answer was copied after all")
            let counted = await session.sharedPulls()
            #expect(counted.read == 0)
            await session.close()
        }
    }

    /// `borrow` hands back the shared file's slot that holds the step, copying nothing: the
    /// caller's buffers stay as they were, the answer that follows is dropped, and the slot's
    /// values copy out (`copy(into:)`) until the server writes that slot again.
    @Test func aBorrowedPullReadsTheSlotInPlace() async throws {
        try await withServer { server in
            let file = try Self.sharedFile()
            defer { try? FileManager.default.removeItem(atPath: (file.path as NSString).deletingLastPathComponent) }
            let weights = Buffers(Self.small)
            let (session, pull) = try await heldSharedPull(server, file: file, into: weights)
            let (step, shared) = try await pull.borrow()
            #expect(step == 1)
            let inPlace = try #require(shared, "the step came without the file")
            #expect(inPlace.step == 1)
            #expect(inPlace.tensors.map(\.count) == weights.mutable.map(\.count))
            let values = inPlace.tensors.enumerated().allSatisfy { t, buffer in
                buffer.indices.allSatisfy { buffer[$0] == FakeServer.weight(step: 1, tensor: t, element: $0) }
            }
            #expect(values, "the slot does not hold step 1's weights")
            #expect(weights.mutable.allSatisfy { $0.allSatisfy(\.isNaN) }, "borrow wrote the caller's buffers")

            try await server.write { $0.releaseHeldAnswers() }
            await pull.settle()
            #expect(weights.mutable.allSatisfy { $0.allSatisfy(\.isNaN) }, "the answer was copied after all")
            #expect(inPlace.copy(into: weights.mutable))
            #expect(weights.holdFakeWeights(step: 1))
            // Two steps on, the server writes that slot again: the weights are no longer there.
            let others = Buffers(Self.small)
            _ = file.publish(step: 2, tensors: others.readOnly)
            _ = file.publish(step: 3, tensors: others.readOnly)
            #expect(!inPlace.copy(into: weights.mutable))
            await session.close()
        }
    }

    /// A streamed push whose connection drops midway is pushed again whole by `finish` on the
    /// next connection.
    @Test func aStreamedPushCutOffMidwayIsSentAgainWhole() async throws {
        try await withServer(layout: Self.big, chunkElements: 65_536) { server in
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            _ = try await session.connect()
            let gradients = Buffers(Self.big)
            for (t, buffer) in gradients.mutable.enumerated() {
                for i in buffer.indices { buffer[i] = Float(i % 777) * 0.25 - Float(t) }
            }
            try await server.write { $0.dropAfterPushChunks = 3 }
            let stream = try await session.beginPush(step: 0, sampleCount: 32, gradients: gradients.readOnly)
            stream.release(tensors: 1..<2)
            stream.release(tensors: 0..<1)
            let result = try await stream.finish(loss: 2.5)
            #expect(result == .accepted)
            try await eventually { try await server.read { $0.pushEnds.count } == 1 }
            #expect(try await server.read { $0.drops } == 1)
            let received = try await server.read { $0.gradients[0] ?? [] }
            let same = received == gradients.readOnly.map { Array($0) }
            #expect(same, "the resent gradient differs from the one sent")
            #expect(try await server.read { $0.pushEnds.map(\.loss) } == [2.5])
            await session.close()
        }
    }

    /// A streamed push cut off by a server that comes back at an earlier step (restarted from
    /// an older checkpoint, or from the start), after the pull of the next step, sent ahead of
    /// PUSH_END, has already brought that server's step on the new connection: the push is not
    /// sent again, which that server would refuse (ending the session), and `finish` answers
    /// `stepClosed` with the server's step instead.
    @Test func aPushCutOffByAServerThatCameBackEarlierIsNotSentAgain() async throws {
        try await withServer(layout: Self.big, chunkElements: 65_536) { server in
            try await server.write { $0.step = 7 }
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            _ = try await session.connect()
            let gradients = Buffers(Self.big), weights = Buffers(Self.big)
            try await server.write {
                $0.step = 3   // what the next WELCOME says
                $0.dropOnPullAhead = true   // the server goes away at the PULL of step 8
            }
            let stream = try await session.beginPush(step: 7, sampleCount: 32, gradients: gradients.readOnly)
            let next = stream.pullNext(8, into: weights.mutable)
            #expect(try await next.step() == 3, "the pull on the new connection asks for the server's step")
            #expect(try await stream.finish(loss: 1.5) == .stepClosed(current: 3))
            #expect(try await server.read { $0.drops } == 1)
            #expect(try await server.read { $0.hellos.count } == 2, "no reconnect")
            #expect(try await server.read { $0.pushEnds.isEmpty }, "the push went again to a server at an earlier step")
            await session.close()
        }
    }

    /// A connection lost while waiting for the next step: the server is still at the step this
    /// worker pushed, so the pull answers that step (the worker computes and pushes it again).
    @Test func aPullAfterAReconnectAsksForTheServersStep() async throws {
        try await withServer { server in
            try await server.write { $0.step = 4; $0.dropOnPullAhead = true }
            let session = ClientSession(host: "127.0.0.1", port: server.port, options: Self.options())
            _ = try await session.connect()
            let weights = Buffers(Self.small)
            #expect(try await session.pull(step: 4, into: weights.mutable).step == 4)
            #expect(try await session.push(step: 4, sampleCount: 32, loss: 1, gradients: weights.readOnly) == .accepted)
            let next = try await session.pull(step: 5, into: weights.mutable)
            #expect(next.step == 4)
            #expect(weights.mutable[1][7] == FakeServer.weight(step: 4, tensor: 1, element: 7))
            #expect(try await server.read { $0.drops } == 1)
            await session.close()
        }
    }

    @Test func aServerThatStaysAwayEndsTheSessionAfterTheReconnectTimeout() async throws {
        let server = FakeServer(layout: Self.small, chunkElements: 1024)
        try await server.start()
        var options = Self.options()
        options.reconnectTimeout = .milliseconds(400)
        let session = ClientSession(host: "127.0.0.1", port: server.port, options: options)
        _ = try await session.connect()
        // Taken before the shutdown: the session may see the connection drop before it returns.
        let lost = ContinuousClock.now
        await server.shutdown()
        let weights = Buffers(Self.small)
        do {
            _ = try await session.pull(step: 0, into: weights.mutable)
            Issue.record("pull succeeded without a server")
        } catch {
            guard case .connectFailed = error else {
                Issue.record("unexpected error \(error)")
                return
            }
        }
        // Not before the reconnect timeout has passed (it used to give up at 0.3 s of 0.4 s,
        // when the next backoff would have overshot).
        let took = ContinuousClock.now - lost
        #expect(took >= .milliseconds(400), "gave up after \(took) of a 400 ms reconnect timeout")
        await #expect(throws: ClientError.self) {
            _ = try await session.pull(step: 0, into: weights.mutable)
        }
    }
}
