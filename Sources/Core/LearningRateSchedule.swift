import Foundation

/// The shape of the global rate after warm-up.
public enum ScheduleKind: String, ConfigChoice, Codable {
    /// end + (peak - end) (1 - (t - W)/(T - W))^p.
    case polynomial
    /// peak throughout.
    case constant
    /// peak times factor^k after the k-th milestone epoch.
    case step
}

/// The schedule as a job file states it, in epochs.
public struct ScheduleConfig: Sendable, Hashable {
    public var kind: ScheduleKind = .polynomial
    /// gamma_0, the rate reached at the end of warm-up.
    public var peakRate: Double = 0.1
    /// Linear warm-up length in epochs (0: none).
    public var warmupEpochs: Double = 0
    /// Polynomial decay power p.
    public var power: Double = 2
    /// Rate the polynomial decay ends at.
    public var endRate: Double = 0
    /// Epochs at which the `step` schedule multiplies the rate by `factor`.
    public var milestones: [Double] = []
    public var factor: Double = 0.1

    public init() {}

    public func validate() throws(ConfigError) {
        try Check.nonNegative(peakRate, key: "schedule.peak_rate")
        try Check.nonNegative(warmupEpochs, key: "schedule.warmup_epochs")
        try Check.nonNegative(power, key: "schedule.power")
        try Check.nonNegative(endRate, key: "schedule.end_rate")
        try Check.nonNegative(factor, key: "schedule.factor")
        for (i, m) in milestones.enumerated() { try Check.nonNegative(m, key: "schedule.milestones[\(i)]") }
    }
}

extension ScheduleConfig: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind = "name", peakRate = "peak_rate", warmupEpochs = "warmup_epochs", power
        case endRate = "end_rate", milestones, factor
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var s = ScheduleConfig()
        if let k = try c.decodeIfPresent(String.self, forKey: .kind) { s.kind = try .parse(k, key: "schedule.name") }
        s.peakRate = try c.decodeIfPresent(Double.self, forKey: .peakRate) ?? s.peakRate
        s.warmupEpochs = try c.decodeIfPresent(Double.self, forKey: .warmupEpochs) ?? s.warmupEpochs
        s.power = try c.decodeIfPresent(Double.self, forKey: .power) ?? s.power
        s.endRate = try c.decodeIfPresent(Double.self, forKey: .endRate) ?? s.endRate
        s.milestones = try c.decodeIfPresent([Double].self, forKey: .milestones) ?? s.milestones
        s.factor = try c.decodeIfPresent(Double.self, forKey: .factor) ?? s.factor
        try s.validate()
        self = s
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind.rawValue, forKey: .kind)
        try c.encode(peakRate, forKey: .peakRate)
        try c.encode(warmupEpochs, forKey: .warmupEpochs)
        try c.encode(power, forKey: .power)
        try c.encode(endRate, forKey: .endRate)
        try c.encode(milestones, forKey: .milestones)
        try c.encode(factor, forKey: .factor)
    }
}

/// The global rate gamma_t for every step t of a run, counted from 0 (DESIGN.md §2–3).
public struct LearningRateSchedule: Sendable, Hashable {
    public let config: ScheduleConfig
    /// Steps in one epoch: floor(samples / global batch).
    public let stepsPerEpoch: Int
    /// T, the number of steps in the run.
    public let totalSteps: Int
    /// W = round(warm-up epochs x steps per epoch), halves rounded away from zero.
    public let warmupSteps: Int
    /// Milestones converted to steps.
    public let milestoneSteps: [Int]

    /// Resolves `config` for a run of `totalSteps` steps of which `stepsPerEpoch` make an epoch.
    public init(config: ScheduleConfig, stepsPerEpoch: Int, totalSteps: Int) throws(ConfigError) {
        try config.validate()
        guard stepsPerEpoch >= 1 else {
            throw ConfigError(key: "steps_per_epoch", value: "\(stepsPerEpoch)",
                              allowed: ">= 1 (the data set must hold at least one global batch)")
        }
        guard totalSteps >= 1 else {
            throw ConfigError(key: "steps", value: "\(totalSteps)", allowed: "a run of at least one step")
        }
        let w = (config.warmupEpochs * Double(stepsPerEpoch)).rounded(.toNearestOrAwayFromZero)
        guard w <= Double(totalSteps) else {
            throw ConfigError(key: "schedule.warmup_epochs", value: "\(config.warmupEpochs)",
                              allowed: "at most the run length (\(Double(totalSteps) / Double(stepsPerEpoch)) epochs, \(totalSteps) steps)")
        }
        self.config = config
        self.stepsPerEpoch = stepsPerEpoch
        self.totalSteps = totalSteps
        self.warmupSteps = Int(w)
        self.milestoneSteps = config.milestones.map { Int(($0 * Double(stepsPerEpoch)).rounded(.toNearestOrAwayFromZero)) }
    }

    /// Resolves `config` for a run of whole epochs.
    public init(config: ScheduleConfig, stepsPerEpoch: Int, epochs: Int) throws(ConfigError) {
        guard epochs >= 1 else { throw ConfigError(key: "epochs", value: "\(epochs)", allowed: "an integer >= 1") }
        try self.init(config: config, stepsPerEpoch: stepsPerEpoch, totalSteps: epochs * stepsPerEpoch)
    }

    /// gamma_t. Steps past the end keep the last step's rate.
    public func rate(at step: Int) -> Double {
        let t = min(max(step, 0), totalSteps - 1)
        let peak = config.peakRate
        if t < warmupSteps {
            return peak * Double(t + 1) / Double(warmupSteps)
        }
        switch config.kind {
        case .constant:
            return peak
        case .polynomial:
            let remaining = 1 - Double(t - warmupSteps) / Double(totalSteps - warmupSteps)
            return config.endRate + (peak - config.endRate) * pow(remaining, config.power)
        case .step:
            let passed = milestoneSteps.reduce(0) { $0 + (t >= $1 ? 1 : 0) }
            return peak * pow(config.factor, Double(passed))
        }
    }
}
