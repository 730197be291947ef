import Foundation
import Testing
@testable import Core

/// The reference vectors of `scripts/lars_reference.py` (a Float64 numpy implementation of
/// DESIGN.md §3), committed under Fixtures/. Float32 values are stored as decimals that read
/// back exactly through Double, so they decode as Double and convert to Float without loss.
enum ReferenceFixtures {
    /// One optimizer run over a small layout with every input stored.
    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        /// The state after step `step` (0-based) has been applied; v is u for `scaled_grad`.
        struct Snapshot: Decodable, Sendable {
            var step: Int
            var weights: [[Double]]
            var momenta: [[Double]]
        }

        var name: String
        var about: String
        var optimizer: OptimizerConfig
        var schedule: ScheduleConfig
        var stepsPerEpoch: Int
        var totalSteps: Int
        var warmupSteps: Int
        var layout: Layout
        var initialWeights: [[Double]]
        /// Per step, per tensor.
        var gradients: [[[Double]]]
        var rates: [Double]
        var trustRatios: [[Double]]
        var effectiveRates: [[Double]]
        var snapshots: [Snapshot]

        var testDescription: String { name }

        enum CodingKeys: String, CodingKey {
            case name, about, optimizer, schedule, layout, gradients, rates, snapshots
            case stepsPerEpoch = "steps_per_epoch", totalSteps = "total_steps", warmupSteps = "warmup_steps"
            case initialWeights = "initial_weights", trustRatios = "trust_ratios", effectiveRates = "effective_rates"
        }
    }

    /// A schedule's rate for every step of a run.
    struct ScheduleCase: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        var schedule: ScheduleConfig
        var stepsPerEpoch: Int
        var totalSteps: Int
        var warmupSteps: Int
        var rates: [Double]

        var testDescription: String { name }

        enum CodingKeys: String, CodingKey {
            case name, schedule, rates
            case stepsPerEpoch = "steps_per_epoch", totalSteps = "total_steps", warmupSteps = "warmup_steps"
        }
    }

    /// A run over 1,000,003 + 21 elements whose inputs both sides draw from `SplitMix64`; only every
    /// `stride`-th element of the result is stored, with the maxima that scale the tolerances.
    struct LargeCase: Decodable, Sendable {
        var seed: UInt64
        /// The generator's first outputs as hex, to tell a generator mismatch from an optimizer one.
        var firstDraws: [String]
        var weightRange: [Float]
        var gradientRange: [Float]
        var optimizer: OptimizerConfig
        var schedule: ScheduleConfig
        var stepsPerEpoch: Int
        var totalSteps: Int
        var warmupSteps: Int
        var layout: Layout
        var rates: [Double]
        var trustRatios: [[Double]]
        var effectiveRates: [[Double]]
        var stride: Int
        var initialWeightsSampled: [[Double]]
        var finalWeightsSampled: [[Double]]
        var finalMomentaSampled: [[Double]]
        var finalMaxAbsWeight: [Double]
        var finalMaxAbsMomentum: [Double]

        enum CodingKeys: String, CodingKey {
            case seed, optimizer, schedule, layout, rates, stride
            case firstDraws = "first_draws", weightRange = "weight_range", gradientRange = "gradient_range"
            case stepsPerEpoch = "steps_per_epoch", totalSteps = "total_steps", warmupSteps = "warmup_steps"
            case trustRatios = "trust_ratios", effectiveRates = "effective_rates"
            case initialWeightsSampled = "initial_weights_sampled", finalWeightsSampled = "final_weights_sampled"
            case finalMomentaSampled = "final_momenta_sampled", finalMaxAbsWeight = "final_max_abs_weight"
            case finalMaxAbsMomentum = "final_max_abs_momentum"
        }
    }

    struct SmallFile: Decodable, Sendable {
        var cases: [Case]
        var schedules: [ScheduleCase]
    }

    static func load<T: Decodable>(_ type: T.Type, file: String) throws -> T {
        let url = try #require(Bundle.module.url(forResource: file, withExtension: "json", subdirectory: "Fixtures"),
                               "Fixtures/\(file).json is missing; run scripts/lars_reference.py")
        return try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
    }

    /// nil when the file is missing or malformed; `LARSReferenceTests.fixturesLoad` then fails.
    static let small: SmallFile? = try? load(SmallFile.self, file: "lars_cases")
    static var cases: [Case] { small?.cases ?? [] }
    static var schedules: [ScheduleCase] { small?.schedules ?? [] }
}

extension Array where Element == Double {
    /// Stored Float32 values back as Float (exact: each decimal reads back to the same Float).
    var float32: [Float] { map { Float($0) } }
}
