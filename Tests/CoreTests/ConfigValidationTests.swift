import Foundation
import Testing
@testable import Core

/// Every unusable option is a `ConfigError` that names the key, the value and what is allowed.
@Suite("Config validation")
struct ConfigValidationTests {
    struct Bad: Sendable, CustomTestStringConvertible {
        enum Section: Sendable { case optimizer, schedule }
        var section: Section
        var json: String
        var key: String
        var value: String
        /// Fragments the `allowed` text must contain.
        var allowed: [String]
        var testDescription: String { json }
    }

    static let bad: [Bad] = [
        Bad(section: .optimizer, json: #"{"momentum": 1.0}"#, key: "optimizer.momentum", value: "1.0", allowed: ["[0, 1)"]),
        Bad(section: .optimizer, json: #"{"momentum": -0.1}"#, key: "optimizer.momentum", value: "-0.1", allowed: ["[0, 1)"]),
        Bad(section: .optimizer, json: #"{"eta": 0}"#, key: "optimizer.eta", value: "0.0", allowed: ["> 0"]),
        Bad(section: .optimizer, json: #"{"eta": -0.001}"#, key: "optimizer.eta", value: "-0.001", allowed: ["> 0"]),
        Bad(section: .optimizer, json: #"{"weight_decay": -1e-4}"#, key: "optimizer.weight_decay", value: "-0.0001", allowed: [">= 0"]),
        Bad(section: .optimizer, json: #"{"eps": -1}"#, key: "optimizer.eps", value: "-1.0", allowed: [">= 0"]),
        Bad(section: .optimizer, json: #"{"name": "adam"}"#, key: "optimizer.name", value: #""adam""#,
            allowed: [#""lars""#, #""sgd""#]),
        Bad(section: .optimizer, json: #"{"denominator": "sum_of_squares"}"#, key: "optimizer.denominator",
            value: #""sum_of_squares""#, allowed: [#""sum_of_norms""#, #""norm_of_sum""#]),
        Bad(section: .optimizer, json: #"{"momentum_placement": "nesterov"}"#, key: "optimizer.momentum_placement",
            value: #""nesterov""#, allowed: [#""paper""#, #""scaled_grad""#]),
        Bad(section: .optimizer, json: #"{"adapt": "rank3"}"#, key: "optimizer.adapt", value: #""rank3""#,
            allowed: [#""rank2""#, #""all""#, #""pattern""#]),
        Bad(section: .optimizer, json: #"{"adapt": "pattern", "adapt_pattern": "fc[("}"#, key: "optimizer.adapt_pattern",
            value: #""fc[(""#, allowed: ["regular expression"]),
        Bad(section: .optimizer, json: #"{"adapt": "pattern"}"#, key: "optimizer.adapt_pattern", value: "missing",
            allowed: ["regular expression"]),
        Bad(section: .schedule, json: #"{"peak_rate": -0.1}"#, key: "schedule.peak_rate", value: "-0.1", allowed: [">= 0"]),
        Bad(section: .schedule, json: #"{"end_rate": -0.01}"#, key: "schedule.end_rate", value: "-0.01", allowed: [">= 0"]),
        Bad(section: .schedule, json: #"{"warmup_epochs": -1}"#, key: "schedule.warmup_epochs", value: "-1.0", allowed: [">= 0"]),
        Bad(section: .schedule, json: #"{"name": "cosine"}"#, key: "schedule.name", value: #""cosine""#,
            allowed: [#""polynomial""#, #""constant""#, #""step""#]),
        Bad(section: .schedule, json: #"{"name": "step", "milestones": [2, -1]}"#, key: "schedule.milestones[1]",
            value: "-1.0", allowed: [">= 0"]),
    ]

    @Test(arguments: bad)
    func decodingRefuses(_ b: Bad) throws {
        let data = Data(b.json.utf8)
        let error = #expect(throws: ConfigError.self) {
            switch b.section {
            case .optimizer: _ = try JSONDecoder().decode(OptimizerConfig.self, from: data)
            case .schedule: _ = try JSONDecoder().decode(ScheduleConfig.self, from: data)
            }
        }
        let e = try #require(error)
        #expect(e.key == b.key)
        #expect(e.value == b.value)
        for fragment in b.allowed { #expect(e.allowed.contains(fragment), "allowed: \(e.allowed)") }
        #expect(e.description.contains(b.key) && e.description.contains(b.value))
    }

    /// Configs built in code are checked too, by the optimizer that would use them.
    @Test(arguments: [1.0, -0.1, .nan])
    func optimizerRefusesMomentum(_ m: Double) {
        var config = OptimizerConfig()
        config.momentum = m
        let error = #expect(throws: ConfigError.self) {
            _ = try LARSOptimizer(config: config, layout: Layout([TensorSpec(name: "w", shape: [2, 2])]))
        }
        #expect(error?.key == "optimizer.momentum")
    }

    @Test func etaZeroAllowedForSGD() throws {
        var config = OptimizerConfig()
        config.eta = 0
        #expect(throws: ConfigError.self) { try config.validate() }
        config.kind = .sgd
        try config.validate()
    }

    @Test func warmupLongerThanRun() throws {
        var s = ScheduleConfig()
        s.warmupEpochs = 5.5
        let error = #expect(throws: ConfigError.self) {
            _ = try LearningRateSchedule(config: s, stepsPerEpoch: 4, totalSteps: 20)
        }
        #expect(error?.key == "schedule.warmup_epochs")
        #expect(error?.value == "5.5")
        #expect(error?.allowed.contains("20 steps") == true)
        s.warmupEpochs = 5  // exactly the run: every step warms up
        let whole = try LearningRateSchedule(config: s, stepsPerEpoch: 4, totalSteps: 20)
        #expect(whole.warmupSteps == 20)
        #expect(whole.rate(at: 19) == s.peakRate)
    }

    @Test func defaultsRoundTrip() throws {
        var o = OptimizerConfig()
        o.adapt = .namePattern(#"^fc\."#)
        o.placement = .scaledGrad
        o.denominator = .normOfSum
        let back = try JSONDecoder().decode(OptimizerConfig.self, from: JSONEncoder().encode(o))
        #expect(back == o)
        let empty = try JSONDecoder().decode(OptimizerConfig.self, from: Data("{}".utf8))
        #expect(empty == OptimizerConfig())
        #expect(empty.eta == 0.001 && empty.momentum == 0.9 && empty.weightDecay == 5e-4 && empty.eps == 0)
    }
}
