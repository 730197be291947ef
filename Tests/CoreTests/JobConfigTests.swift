import Foundation
import Testing

@testable import Core

@Suite("JobConfig")
struct JobConfigTests {
    static let minimal = #"{"model": "mlp", "steps": 10, "global_batch": 64, "workers": 2}"#

    @Test func parsesTheShippedMLPConfig() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../configs/fashion-mnist-mlp-lars.json")
        let job = try JobConfig.parse(json: Data(contentsOf: url))
        #expect(job.name == "fashion-mnist-mlp-lars")
        #expect(job.model == "mlp")
        #expect(job.globalBatch == 8192)
        #expect(job.workers == 4)
        #expect(job.epochs == 60)
        #expect(job.optimizer.kind == .lars)
        #expect(job.optimizer.eta == 0.001)
        #expect(job.optimizer.weightDecay == 0.0005)
        #expect(job.optimizer.momentum == 0.9)
        // Every tensor adapts: at peak 16 the biases blow up on the plain global rate
        // (docs/results.md, "The adapt mask").
        #expect(job.optimizer.adapt == .all)
        #expect(job.schedule.peakRate == 16)
        #expect(job.schedule.warmupEpochs == 5)
        #expect(job.schedule.power == 2)
    }

    @Test func roundTripsThroughJSON() throws {
        let job = try JobConfig.parse(json: Data(Self.minimal.utf8), defaultName: "mini")
        #expect(job.name == "mini")
        let again = try JobConfig.parse(json: Data(job.jsonString().utf8))
        #expect(again == job)
    }

    @Test func sharesSplitTheGlobalBatch() throws {
        var job = JobConfig()
        job.globalBatch = 10
        job.workers = 4
        #expect((0..<4).map(job.share(ofRank:)) == [3, 3, 2, 2])
        #expect((0..<4).map(job.share(ofRank:)).reduce(0, +) == 10)
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var json: String
        var key: String
        var mentions: String
        var testDescription: String { key }
    }

    @Test(arguments: [
        Bad(json: "{\n  \"model\": \"mlp\",\n  \"steps\": 10,,\n}", key: "(file)", mentions: "line 3"),
        Bad(json: #"{"model": "mlp", "steps": 10, "bogus": 1}"#, key: "bogus", mentions: "unknown key"),
        Bad(json: #"{"model": "mlp", "steps": 10, "optimizer": {"etaa": 1}}"#, key: "optimizer.etaa", mentions: "unknown key"),
        Bad(json: #"{"model": "mlp", "steps": "ten"}"#, key: "steps", mentions: "integer"),
        Bad(json: #"{"model": "mlp", "steps": 10, "workers": 0}"#, key: "workers", mentions: "1...4096"),
        Bad(json: #"{"model": "mlp", "steps": 10, "workers": 4, "min_workers": 5}"#, key: "min_workers", mentions: "1...4"),
        Bad(json: #"{"model": "mlp", "steps": 10, "global_batch": 2, "workers": 3}"#, key: "global_batch", mentions: "number of workers"),
        Bad(json: #"{"model": "mlp"}"#, key: "dataset/epochs/steps", mentions: "either"),
        Bad(json: #"{"model": "mlp", "steps": 10, "epochs": 3}"#, key: "dataset/epochs/steps", mentions: "either"),
        Bad(json: #"{"model": "mlp", "steps": 10, "step_deadline_s": 0}"#, key: "step_deadline_s", mentions: "> 0"),
        Bad(json: #"{"model": "mlp", "steps": 10, "optimizer": {"momentum": 1.5}}"#, key: "optimizer.momentum", mentions: "[0, 1)"),
        Bad(json: #"{"model": "mlp", "steps": 10, "schedule": {"name": "cosine"}}"#, key: "schedule.name", mentions: "polynomial"),
        Bad(json: "[1, 2]", key: "(file)", mentions: "JSON object"),
    ])
    func refusesBadFilesNamingTheKey(_ bad: Bad) {
        do {
            _ = try JobConfig.parse(json: Data(bad.json.utf8))
            Issue.record("accepted: \(bad.json)")
        } catch {
            #expect(error.key == bad.key, "\(error)")
            #expect(error.description.contains(bad.mentions), "\(error)")
        }
    }
}
