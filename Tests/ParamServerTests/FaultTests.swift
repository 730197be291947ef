import Client
import Core
import Foundation
import NIOCore
import Testing
import Wire

@testable import ParamServer

/// Faults over real sockets (issue 4, item 7): a worker killed mid-push, wrong lengths and
/// dtypes, garbage and half frames, a reader that never reads.
@Suite("Faults", .serialized, .timeLimit(.minutes(2)))
struct FaultTests {
    /// Grid chunks of `layout` with 65,536 elements per chunk, as (tensor, offset, count).
    static func grid(_ layout: Layout, chunk: Int = 1 << 16) -> [(Int, Int, Int)] {
        var out: [(Int, Int, Int)] = []
        for (t, spec) in layout.tensors.enumerated() {
            var o = 0
            repeat {
                out.append((t, o, min(chunk, spec.count - o)))
                o += chunk
            } while o < spec.count
        }
        return out
    }

    /// The ERROR `raw` receives next (code and message); nil, with the miss recorded, when the
    /// connection ends without one.
    func receivedError(from raw: RawWorker, for what: String) -> (ErrorCode, String)? {
        guard case .error(let code, let message, _) = raw.receive(until: { if case .error = $0 { true } else { false } }) else {
            Issue.record("no ERROR for \(what)")
            return nil
        }
        return (code, message)
    }

    func rawRank1(_ h: ServerHarness) throws -> RawWorker {
        let raw = try RawWorker(port: h.server.port)
        try raw.send(.hello(Hello(wantedRank: 1, workerName: "raw")))
        let welcome = raw.receive { if case .welcome = $0 { true } else { false } }
        guard case .welcome(let w) = welcome, w.rank == 1 else {
            throw POSIXError(.EPROTO)
        }
        return raw
    }

    /// Rank 1 dies after three of its chunks: the step waits past its deadline naming rank 1,
    /// then a new worker takes rank 1 and resends; the chunks already added are skipped, so
    /// every chunk is averaged over exactly its contributions.
    @Test func workerKilledMidPushRejoinsAndResends() async throws {
        let job = ServerHarness.job(steps: 2, workers: 2, deadline: 0.3)
        let h = try await ServerHarness(job: job, deterministic: true)
        let a = h.session("a", rank: 0)
        _ = try await a.connect()
        let w = Tensors(h.layout)
        _ = try await a.pull(step: 0, into: w.storage)
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w)
        let ga = Tensors(h.layout), gb = Tensors(h.layout)
        ga.fill(seed: 5)
        gb.fill(seed: 6)

        let raw = try rawRank1(h)
        try raw.send(.pushBegin(step: 0, sampleCount: 32))
        for (t, o, n) in Self.grid(h.layout).prefix(3) {
            try raw.sendChunk(step: 0, tensor: t, offset: o, values: Array(gb.storage[t][o..<o + n]))
        }
        raw.close()
        #expect(try await a.push(step: 0, sampleCount: 32, loss: 1, gradients: ga.readOnly) == .accepted)

        try await Task.sleep(for: .milliseconds(900))
        let status = try h.status()
        #expect(status["missing_ranks"] as? [Int] == [1], "\(status["missing_ranks"] ?? "nil")")
        #expect(h.metric("lars_steps_total") == 0, "the step must wait for rank 1")

        let b = h.session("b", rank: 1)
        let info = try await b.connect()
        #expect(info.rank == 1)
        #expect(info.currentStep == 0)
        let wb = Tensors(h.layout)
        _ = try await b.pull(step: 0, into: wb.storage)
        #expect(try await b.push(step: 0, sampleCount: 32, loss: 1, gradients: gb.readOnly) == .accepted)
        _ = try await a.pull(step: 1, into: w.storage)
        try reference.step(0, contributions: [(32, ga), (32, gb)])
        #expect(w.values == reference.weights.values)
        await a.close()
        await b.close()
        await h.finish()
    }

    /// A chunk off the grid and a chunk with an unknown dtype: ERROR naming the problem, the
    /// connection closes, the frame is counted, and the accumulator is untouched (the step that
    /// follows equals the reference).
    @Test func wrongLengthAndDtypeAreRefusedBeforeTheAccumulator() async throws {
        let job = ServerHarness.job(steps: 2, workers: 2)
        let h = try await ServerHarness(job: job, deterministic: true)
        let a = h.session("a", rank: 0)
        _ = try await a.connect()
        let w = Tensors(h.layout)
        _ = try await a.pull(step: 0, into: w.storage)

        let raw = try rawRank1(h)
        try raw.send(.pushBegin(step: 0, sampleCount: 32))
        try raw.sendChunk(step: 0, tensor: 0, offset: 0, values: [Float](repeating: 1e3, count: 100))
        let refusal = raw.receive { if case .error = $0 { true } else { false } }
        guard case .error(let code, let message, _) = refusal else {
            Issue.record("no ERROR for a chunk off the grid")
            return
        }
        #expect(code == .wrongLength)
        #expect(message.contains("grid"), "\(message)")
        #expect(raw.waitForClose())
        #expect(h.metric(#"lars_rejected_frames_total{reason="wrong_length"}"#) == 1)

        let raw2 = try rawRank1(h)
        try raw2.send(.pushBegin(step: 0, sampleCount: 32))
        var bytes: [UInt8] = []
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        try FrameEncoder().encodeChunkHeader(
            ChunkHeader(kind: .push, step: 0, tensor: 1, offset: 0, count: 4, dtype: .float32), into: &buffer)
        bytes = buffer.readBytes(length: buffer.readableBytes)!
        bytes[FrameHeader.size + 16] = 9  // no such dtype
        raw2.send(bytes: bytes + [UInt8](repeating: 0x7f, count: 16))
        let refusal2 = raw2.receive { if case .error = $0 { true } else { false } }
        guard case .error(let code2, _, _) = refusal2 else {
            Issue.record("no ERROR for an unknown dtype")
            return
        }
        #expect(code2 == .wrongDtype)
        #expect(raw2.waitForClose())
        #expect(h.metric(#"lars_rejected_frames_total{reason="wrong_dtype"}"#) == 1)

        // PUSH_SHARED from a worker whose gradient file the server never mapped.
        let raw3 = try rawRank1(h)
        try raw3.send(.pushBegin(step: 0, sampleCount: 32))
        try raw3.send(.pushShared(step: 0, tensor: 0, offset: 0, count: 4))
        guard let (code3, message3) = receivedError(from: raw3, for: "PUSH_SHARED without a gradient file") else { return }
        #expect(code3 == .unexpectedMessage)
        #expect(message3.contains("SHARED_GRADIENTS"), "\(message3)")
        #expect(raw3.waitForClose())

        // Gradient files the server must not map: a path that is not a descriptor's
        // (/proc/<pid>/fd/<n>; not even opened); through a descriptor, a file its worker could
        // cut short under the mapping (a named file, not a sealed memfd: a SIGBUS in the server
        // at the next read); a sealed file whose header is not the one offered (another
        // nonce); another element count; a descriptor that is not there. Each is refused; the
        // connection stays, and a PUSH_SHARED on it is refused as without a file.
        let directory = try #require(h.server.coordinator?.sharedWeights.map { ($0.path as NSString).deletingLastPathComponent })
        let named = try SharedWeightFile.create(elements: h.layout.parameterCount, directory: directory)
        defer { named.remove() }
        let descriptor = open(named.path, O_RDONLY | O_CLOEXEC)
        #expect(descriptor >= 0)
        defer { close(descriptor) }
        let namedThroughDescriptor = "/proc/\(getpid())/fd/\(descriptor)"
        let sealed = try SharedWeightFile.createSealed(elements: h.layout.parameterCount)
        let raw4 = try rawRank1(h)
        #expect(WorkerConnection.isDescriptorPath(namedThroughDescriptor))
        for other in ["/proc/self/fd/3", named.path, "/proc/12/fd/3/..", "/proc/12/fd/", "//proc/12/fd/3", "/proc/1x/fd/3", "/proc/12/fd/٣"] {
            #expect(!WorkerConnection.isDescriptorPath(other), "\(other)")
        }
        let offers: [(path: String, nonce: UInt64, elements: Int)] = [
            (named.path, named.nonce, named.elements),
            (namedThroughDescriptor, named.nonce, named.elements),
            (sealed.path, sealed.nonce &+ 1, sealed.elements),
            (sealed.path, sealed.nonce, sealed.elements + 1),
            ("/proc/\(getpid())/fd/999999", sealed.nonce, sealed.elements),
        ]
        for (path, nonce, elements) in offers {
            try raw4.send(.sharedGradients(nonce: nonce, elements: UInt64(elements), path: path))
            guard case .sharedGradientsAnswer(let accepted) = raw4.receive(until: { if case .sharedGradientsAnswer = $0 { true } else { false } }) else {
                Issue.record("no SHARED_GRADIENTS_ANSWER for \(path)")
                return
            }
            #expect(!accepted, "\(path) with \(elements) elements was mapped")
        }
        try raw4.send(.pushBegin(step: 0, sampleCount: 32))
        try raw4.send(.pushShared(step: 0, tensor: 0, offset: 0, count: UInt32(min(h.layout.tensors[0].count, 1 << 16))))
        guard let (code4, _) = receivedError(from: raw4, for: "PUSH_SHARED after refused gradient files") else { return }
        #expect(code4 == .unexpectedMessage)
        #expect(raw4.waitForClose())

        // Training goes on, and the refused bytes never reached the accumulator.
        let reference = try ReferenceTrainer(job: job, layout: h.layout, initial: w)
        let b = h.session("b", rank: 1)
        _ = try await b.connect()
        let ga = Tensors(h.layout), gb = Tensors(h.layout)
        ga.fill(seed: 7)
        gb.fill(seed: 8)
        async let ra = a.push(step: 0, sampleCount: 32, loss: 1, gradients: ga.readOnly)
        async let rb = b.push(step: 0, sampleCount: 32, loss: 1, gradients: gb.readOnly)
        _ = try await (ra, rb)
        _ = try await a.pull(step: 1, into: w.storage)
        try reference.step(0, contributions: [(32, ga), (32, gb)])
        #expect(w.values == reference.weights.values)
        await a.close()
        await b.close()
        await h.finish()
    }

    /// Garbage after the handshake, garbage instead of it, and half a frame: each such
    /// connection closes; the workers keep training.
    @Test func garbageAndHalfFramesCloseOnlyThatConnection() async throws {
        // Three ranks, two make a step: the garbage sender after HELLO holds the third.
        let job = ServerHarness.job(steps: 2, workers: 3, minWorkers: 2, globalBatch: 96)
        let h = try await ServerHarness(job: job)
        let a = h.session("a", rank: 0), b = h.session("b", rank: 1)
        _ = try await a.connect()
        _ = try await b.connect()

        var rng = SplitMix64(seed: 99)
        let noise = (0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let g1 = try RawWorker(port: h.server.port)
        g1.send(bytes: noise)
        #expect(g1.waitForClose(), "garbage before HELLO must close the connection")

        let g2 = try RawWorker(port: h.server.port)
        try g2.send(.hello(Hello(workerName: "garbage-after-hello")))
        g2.send(bytes: Array("LARS".utf8) + noise)
        #expect(g2.waitForClose())

        let g3 = try RawWorker(port: h.server.port)
        var half = try FrameEncoder().encode(.hello(Hello(workerName: "half")))
        g3.send(bytes: half.readBytes(length: 11)!)
        g3.close()

        // Two garbage streams and one half frame; the last is counted when the server sees the
        // connection end, so wait for it (bounded).
        for _ in 0..<100 where (h.metric(#"lars_rejected_frames_total{reason="malformed"}"#) ?? 0) < 3 {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(h.metric(#"lars_rejected_frames_total{reason="malformed"}"#) == 3)
        let w = Tensors(h.layout), g = Tensors(h.layout)
        g.fill(seed: 1)
        async let ra = a.push(step: 0, sampleCount: 32, loss: 1, gradients: g.readOnly)
        async let rb = b.push(step: 0, sampleCount: 32, loss: 1, gradients: g.readOnly)
        #expect(try await [ra, rb] == [.accepted, .accepted])
        #expect(try await a.pull(step: 1, into: w.storage).step == 1)
        #expect(h.metric("lars_steps_total") == 1)
        await a.close()
        await b.close()
        await h.finish()
    }

    /// A worker that asks for the 102 MB ResNet-50 weights twenty times and reads nothing: the
    /// server holds one shared snapshot, sends it windowed, and its memory stays bounded; other
    /// workers still pull.
    @Test func slowReaderKeepsServerMemoryBounded() async throws {
        let job = ServerHarness.job(model: "resnet50-shapes", steps: 2, workers: 2, globalBatch: 64)
        let h = try await ServerHarness(job: job, chunkElements: 1 << 20)
        let before = Self.residentBytes()
        let slow = try RawWorker(port: h.server.port)
        try slow.send(.hello(Hello(workerName: "slow")))
        for _ in 0..<20 { try slow.send(.pull(step: 0)) }
        try await Task.sleep(for: .milliseconds(500))
        let a = h.session("a")
        _ = try await a.connect()
        let w = Tensors(h.layout)
        #expect(try await a.pull(step: 0, into: w.storage).step == 0)
        let grown = Self.residentBytes() - before
        // The test's own buffers take ~102 MB; twenty copies of the snapshot would be ~2 GB.
        #expect(grown < 400 << 20, "resident memory grew by \(grown >> 20) MiB")
        slow.close()
        await a.close()
        await h.finish()
    }

    /// With --auth-token-file set, a wrong token is refused (ERROR auth_failed, counted) and
    /// the right one joins.
    @Test func wrongAuthTokenIsRefusedAndCounted() async throws {
        let job = ServerHarness.job(steps: 2, workers: 1, globalBatch: 8)
        let h = try await ServerHarness(job: job, authToken: "s3cret")
        let intruder = h.session("intruder", token: "guess")
        do {
            _ = try await intruder.connect()
            Issue.record("a wrong token was accepted")
        } catch {
            guard case .refused(let code, let message) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(code == .authFailed)
            #expect(message.contains("token"), "\(message)")
        }
        #expect(h.metric(#"lars_rejected_frames_total{reason="auth"}"#) == 1)
        let member = h.session("member", token: "s3cret")
        #expect(try await member.connect().rank == 0)
        await member.close()
        await h.finish()
    }

    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kb * 1024
    }

    /// Polls `condition` for up to 10 s; whether it came to hold.
    func eventually(_ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// The EVAL_REQUEST `session` receives within 10 s.
    func evalRequest(_ session: ClientSession) async -> Int? {
        var step: Int?
        _ = await eventually {
            step = session.takeEvalRequest()
            return step != nil
        }
        return step
    }

    /// Both workers push the job's one step; the server asks rank 0 for the final evaluation.
    func trainOneStep(_ h: ServerHarness) async throws -> (ClientSession, ClientSession) {
        let a = h.session("a", rank: 0), b = h.session("b", rank: 1)
        _ = try await a.connect()
        _ = try await b.connect()
        let w = Tensors(h.layout), g = Tensors(h.layout)
        g.fill(seed: 5)
        for s in [a, b] { _ = try await s.pull(step: 0, into: w.storage) }
        async let pa = a.push(step: 0, sampleCount: 32, loss: 1, gradients: g.readOnly)
        async let pb = b.push(step: 0, sampleCount: 32, loss: 1, gradients: g.readOnly)
        _ = try await (pa, pb)
        return (a, b)
    }

    /// The worker asked for the final evaluation leaves without answering: the request goes to
    /// the lowest rank still connected, whose answer ends the job (before: nobody was asked
    /// again and the job ended after the final-evaluation timeout, 120 s by default, without it).
    @Test func theFinalEvaluationIsAskedAgainWhenTheAskedWorkerLeaves() async throws {
        let h = try await ServerHarness(job: ServerHarness.job(steps: 1, workers: 2))
        let (a, b) = try await trainOneStep(h)
        #expect(await evalRequest(a) == 1, "rank 0 was not asked for the final evaluation")
        await a.close()
        try #require(await evalRequest(b) == 1, "rank 1 was not asked after rank 0 left")
        try await answerAndEnd(b, h, accuracy: 0.75)
    }

    /// Every worker leaves while the final evaluation is outstanding: the next worker to join
    /// is asked, after its WELCOME.
    @Test func theFinalEvaluationIsAskedOfAWorkerJoiningAfterEveryoneLeft() async throws {
        let h = try await ServerHarness(job: ServerHarness.job(steps: 1, workers: 2))
        let (a, b) = try await trainOneStep(h)
        #expect(await evalRequest(a) == 1)
        await b.close()
        await a.close()
        // Both gone on the server's side too, so that c is asked because it joined (`welcomed`),
        // not because a rank the server still counted left.
        try #require(await eventually { h.metric("lars_workers_connected") == 0 })
        let c = h.session("c")
        let info = try await c.connect()
        #expect(info.currentStep == 1)
        try #require(await evalRequest(c) == 1, "the worker that joined was not asked for the final evaluation")
        try await answerAndEnd(c, h, accuracy: 0.5)
    }

    /// `session` answers the final evaluation of the one-step job: the job ends done with that
    /// accuracy reported.
    func answerAndEnd(_ session: ClientSession, _ h: ServerHarness, accuracy: Double) async throws {
        try await session.sendEval(step: 1, testLoss: 0.5, accuracy: accuracy, sampleCount: 100)
        #expect(try await h.server.run() == .done)
        #expect(h.metric("lars_test_accuracy") == accuracy)
        await session.close()
        try? FileManager.default.removeItem(atPath: h.directory)  // run() has stopped the server
    }
}
