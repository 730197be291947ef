/// What the optimizer measured on one tensor in one step, as telemetry shows it.
public struct LayerFigures: Sendable, Equatable {
    /// ||w|| before the update.
    public var weightNorm: Double
    /// ||g|| of the averaged gradient (before weight decay).
    public var gradientNorm: Double
    /// The LARS trust ratio used for this step (1 for tensors that do not adapt).
    public var trustRatio: Double
    /// The rate actually applied to this tensor: global rate x trust, or the LARC-clipped one.
    public var effectiveRate: Double

    public init(weightNorm: Double, gradientNorm: Double, trustRatio: Double, effectiveRate: Double) {
        self.weightNorm = weightNorm
        self.gradientNorm = gradientNorm
        self.trustRatio = trustRatio
        self.effectiveRate = effectiveRate
    }
}
