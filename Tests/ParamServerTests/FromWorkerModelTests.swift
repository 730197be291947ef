import Client
import Core
import Foundation
import Testing
import Wire

@testable import ParamServer

/// A job whose model a worker brings (`"model": "from-worker"`): the first worker's INIT sets
/// the layout and the initial values, and training runs on them like on a built-in model.
@Suite("From-worker model", .serialized, .timeLimit(.minutes(2)))
struct FromWorkerModelTests {
    static let layout = Layout([
        TensorSpec(name: "w", shape: [4, 3]),
        TensorSpec(name: "b", shape: [3]),
    ])

    @Test func initSetsTheModelAndTrainingMatchesCoreLARS() async throws {
        var job = ServerHarness.job(steps: 2, workers: 1, globalBatch: 8)
        job.model = ParameterServer.fromWorker
        let h = try await ServerHarness(job: job, deterministic: true)
        #expect((try h.status()["state"] as? String) == "waiting")

        let raw = try RawWorker(port: h.server.port)
        try raw.send(.hello(Hello(workerName: "brings-a-model")))
        guard case .welcome(let welcome) = raw.receive(until: { if case .welcome = $0 { true } else { false } }) else {
            Issue.record("no WELCOME")
            return
        }
        #expect(welcome.layout.tensors.isEmpty, "the layout is the worker's to send")
        #expect(welcome.job.contains("\"awaiting_init\":true"), "\(welcome.job)")

        // A second worker waits: the model is not there yet.
        let early = try RawWorker(port: h.server.port)
        try early.send(.hello(Hello(workerName: "too-early")))
        guard case .error(let code, _, _) = early.receive(until: { if case .error = $0 { true } else { false } }) else {
            Issue.record("a second worker was welcomed before the model")
            return
        }
        #expect(code == .rankUnavailable)

        let initial: [[Float]] = [(0..<12).map { Float($0) * 0.1 - 0.5 }, [0.01, -0.02, 0.03]]
        try raw.send(.initLayout(layout: WireLayout(Self.layout), chunkCount: 2))
        try raw.sendChunk(kind: .initValues, step: 0, tensor: 0, offset: 0, values: initial[0])
        try raw.sendChunk(kind: .initValues, step: 0, tensor: 1, offset: 0, values: initial[1])
        try raw.send(.pull(step: 0))
        let w0 = try #require(raw.receiveWeights(counts: [12, 3]))
        #expect(w0.step == 0)
        #expect(w0.values == initial, "the weights served are the INIT values")

        let gradient: [[Float]] = [(0..<12).map { Float($0 % 5) * 0.01 - 0.02 }, [0.5, -0.25, 0.125]]
        try raw.send(.pushBegin(step: 0, sampleCount: 8))
        try raw.sendChunk(kind: .push, step: 0, tensor: 0, offset: 0, values: gradient[0])
        try raw.sendChunk(kind: .push, step: 0, tensor: 1, offset: 0, values: gradient[1])
        try raw.send(.pushEnd(step: 0, loss: 1.5))
        try raw.send(.pull(step: 1))
        let w1 = try #require(raw.receiveWeights(counts: [12, 3]))
        #expect(w1.step == 1)

        let start = Tensors(Self.layout), g = Tensors(Self.layout)
        for (k, v) in initial.enumerated() { for (i, x) in v.enumerated() { start.storage[k][i] = x } }
        for (k, v) in gradient.enumerated() { for (i, x) in v.enumerated() { g.storage[k][i] = x } }
        let reference = try ReferenceTrainer(job: job, layout: Self.layout, initial: start)
        try reference.step(0, contributions: [(8, g)])
        #expect(w1.values == reference.weights.values)
        #expect(h.server.telemetry.layerNames == ["w", "b"])
        #expect(h.metric(#"lars_trust_ratio{layer="w"}"#).map { $0 > 0 && $0.isFinite } == true)
        raw.close()
        early.close()
        await h.finish()
    }

    /// A from-worker job and a raw worker welcomed to bring its model.
    func welcomedToBringTheModel(name: String) async throws -> (ServerHarness, RawWorker) {
        var job = ServerHarness.job(steps: 2, workers: 1, globalBatch: 8)
        job.model = ParameterServer.fromWorker
        let h = try await ServerHarness(job: job)
        let raw = try RawWorker(port: h.server.port)
        try raw.send(.hello(Hello(workerName: name)))
        _ = raw.receive { if case .welcome = $0 { true } else { false } }
        return (h, raw)
    }

    @Test func pushBeforeInitIsRefused() async throws {
        let (h, raw) = try await welcomedToBringTheModel(name: "no-init")
        try raw.send(.pull(step: 0))
        guard case .error(let code, let message, _) = raw.receive(until: { if case .error = $0 { true } else { false } }) else {
            Issue.record("PULL before INIT was not refused")
            return
        }
        #expect(code == .unexpectedMessage)
        #expect(message.contains("INIT"), "\(message)")
        raw.close()
        await h.finish()
    }

    /// A tensor too large for one weight buffer is refused at INIT, before the server allocates
    /// anything for it, and the server keeps waiting for a model it can hold.
    @Test func aTensorOverTheBufferLimitIsRefusedAtInit() async throws {
        let (h, raw) = try await welcomedToBringTheModel(name: "brings-a-giant")
        let giant = Layout([TensorSpec(name: "embedding", shape: [1 << 20, 1 << 10])])
        try raw.send(.initLayout(layout: WireLayout(giant), chunkCount: 1024))
        guard case .error(let code, let message, _) = raw.receive(until: { if case .error = $0 { true } else { false } }) else {
            Issue.record("an INIT with a 2^30-element tensor was not refused")
            return
        }
        #expect(code == .limitExceeded)
        #expect(message.contains("embedding") && message.contains("1073741824"), "\(message)")
        raw.close()

        // The refused worker is gone; the next one brings a model the server can hold.
        var next = try RawWorker(port: h.server.port)
        var welcome: Message?
        for _ in 0..<100 {  // until the server has seen the first connection close (each refusal closes one)
            try next.send(.hello(Hello(workerName: "brings-a-small-one")))
            welcome = next.receive { if case .welcome = $0 { true } else if case .error = $0 { true } else { false } }
            if case .welcome = welcome { break }
            next.close()
            try await Task.sleep(for: .milliseconds(20))
            next = try RawWorker(port: h.server.port)
        }
        guard case .welcome = welcome else {
            Issue.record("no worker could bring a model after the refused INIT: \(String(describing: welcome))")
            return
        }
        let values: [[Float]] = [(0..<12).map { Float($0) }, [1, 2, 3]]
        try next.send(.initLayout(layout: WireLayout(Self.layout), chunkCount: 2))
        try next.sendChunk(kind: .initValues, step: 0, tensor: 0, offset: 0, values: values[0])
        try next.sendChunk(kind: .initValues, step: 0, tensor: 1, offset: 0, values: values[1])
        try next.send(.pull(step: 0))
        let w0 = try #require(next.receiveWeights(counts: [12, 3]))
        #expect(w0.values == values)
        next.close()
        await h.finish()
    }
}
