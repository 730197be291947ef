/// Which update rule runs.
public enum OptimizerKind: String, ConfigChoice, Codable {
    /// Layer-wise adaptive rates (DESIGN.md §3).
    case lars
    /// Momentum SGD with the same weight-decay rule: the baseline.
    case sgd
}

/// Which tensors get the trust ratio and weight decay.
public enum AdaptRule: Sendable, Hashable {
    /// Tensors of rank >= 2 (weights of linear and conv layers); biases and norm scales are excluded.
    case rankAtLeast2
    /// Every tensor.
    case all
    /// Tensors whose name contains a match of this regular expression.
    case namePattern(String)
}

/// The denominator of the trust ratio.
public enum TrustDenominator: String, ConfigChoice, Codable {
    /// ||g|| + beta ||w|| + eps: Algorithm 1 of the paper, MLPerf.
    case sumOfNorms = "sum_of_norms"
    /// ||g + beta w|| + eps: optax, SimCLR.
    case normOfSum = "norm_of_sum"
}

/// Where the global rate enters the momentum recursion.
public enum MomentumPlacement: String, ConfigChoice, Codable {
    /// v = m v + gamma trust d; w -= v.
    case paper
    /// u = m u + trust d; w -= gamma u (apex LARC, timm, torchlars).
    case scaledGrad = "scaled_grad"
}

/// Every option of the optimizer (DESIGN.md §3). Defaults are the paper's values.
public struct OptimizerConfig: Sendable, Hashable {
    public var kind: OptimizerKind = .lars
    /// Trust coefficient eta.
    public var eta: Double = 0.001
    /// Momentum m, in [0, 1).
    public var momentum: Double = 0.9
    /// Weight decay beta (applied to adapted tensors only).
    public var weightDecay: Double = 5e-4
    /// Added to the trust-ratio denominator; 0 by default and never replaced silently.
    public var eps: Double = 0
    public var adapt: AdaptRule = .rankAtLeast2
    public var denominator: TrustDenominator = .sumOfNorms
    public var placement: MomentumPlacement = .paper
    public var nesterov: Bool = false
    /// LARC clipping: the effective rate is min(trust, gamma_t) instead of gamma_t * trust.
    public var clip: Bool = false

    public init() {}

    /// Fails with the first option outside its allowed range.
    public func validate() throws(ConfigError) {
        if kind == .lars { try Check.positive(eta, key: "optimizer.eta") }
        guard momentum.isFinite, momentum >= 0, momentum < 1 else {
            throw ConfigError(key: "optimizer.momentum", value: "\(momentum)", allowed: "a number in [0, 1)")
        }
        try Check.nonNegative(weightDecay, key: "optimizer.weight_decay")
        try Check.nonNegative(eps, key: "optimizer.eps")
        if case .namePattern(let p) = adapt {
            do { _ = try Regex(p) } catch {
                throw ConfigError(key: "optimizer.adapt_pattern", value: "\"\(p)\"", allowed: "a valid regular expression")
            }
        }
    }

    /// Whether the tensor gets the trust ratio and weight decay.
    public func adapts(_ tensor: TensorSpec) -> Bool {
        switch adapt {
        case .rankAtLeast2: return tensor.rank >= 2
        case .all: return true
        case .namePattern(let p):
            guard let regex = try? Regex(p) else { return false }
            return tensor.name.contains(regex)
        }
    }
}

extension OptimizerConfig: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind = "name", eta, momentum, weightDecay = "weight_decay", eps, adapt
        case adaptPattern = "adapt_pattern", denominator, placement = "momentum_placement", nesterov, clip
    }

    /// Spelling of `adapt` in config files.
    public enum AdaptSpelling: String, ConfigChoice {
        case rank2, all, pattern
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var o = OptimizerConfig()
        if let s = try c.decodeIfPresent(String.self, forKey: .kind) { o.kind = try .parse(s, key: "optimizer.name") }
        o.eta = try c.decodeIfPresent(Double.self, forKey: .eta) ?? o.eta
        o.momentum = try c.decodeIfPresent(Double.self, forKey: .momentum) ?? o.momentum
        o.weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? o.weightDecay
        o.eps = try c.decodeIfPresent(Double.self, forKey: .eps) ?? o.eps
        if let s = try c.decodeIfPresent(String.self, forKey: .adapt) {
            switch try AdaptSpelling.parse(s, key: "optimizer.adapt") {
            case .rank2: o.adapt = .rankAtLeast2
            case .all: o.adapt = .all
            case .pattern:
                guard let p = try c.decodeIfPresent(String.self, forKey: .adaptPattern) else {
                    throw ConfigError(key: "optimizer.adapt_pattern", value: "missing",
                                      allowed: "a regular expression over tensor names when adapt is \"pattern\"")
                }
                o.adapt = .namePattern(p)
            }
        }
        if let s = try c.decodeIfPresent(String.self, forKey: .denominator) {
            o.denominator = try .parse(s, key: "optimizer.denominator")
        }
        if let s = try c.decodeIfPresent(String.self, forKey: .placement) {
            o.placement = try .parse(s, key: "optimizer.momentum_placement")
        }
        o.nesterov = try c.decodeIfPresent(Bool.self, forKey: .nesterov) ?? o.nesterov
        o.clip = try c.decodeIfPresent(Bool.self, forKey: .clip) ?? o.clip
        try o.validate()
        self = o
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind.rawValue, forKey: .kind)
        try c.encode(eta, forKey: .eta)
        try c.encode(momentum, forKey: .momentum)
        try c.encode(weightDecay, forKey: .weightDecay)
        try c.encode(eps, forKey: .eps)
        switch adapt {
        case .rankAtLeast2: try c.encode(AdaptSpelling.rank2.rawValue, forKey: .adapt)
        case .all: try c.encode(AdaptSpelling.all.rawValue, forKey: .adapt)
        case .namePattern(let p):
            try c.encode(AdaptSpelling.pattern.rawValue, forKey: .adapt)
            try c.encode(p, forKey: .adaptPattern)
        }
        try c.encode(denominator.rawValue, forKey: .denominator)
        try c.encode(placement.rawValue, forKey: .placement)
        try c.encode(nesterov, forKey: .nesterov)
        try c.encode(clip, forKey: .clip)
    }
}
