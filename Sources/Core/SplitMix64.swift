/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator whose exact stream the numpy
/// reference script reproduces, so tests and fixtures can share inputs without storing them.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// A Float32 uniform in `range`: the top 24 bits as a fraction in [0, 1), scaled in Double,
    /// then rounded once to Float.
    public mutating func nextFloat(in range: ClosedRange<Float>) -> Float {
        let unit = Double(next() >> 40) / Double(1 << 24)
        return Float(Double(range.lowerBound) + unit * Double(range.upperBound - range.lowerBound))
    }
}
