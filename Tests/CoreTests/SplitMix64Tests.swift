import Testing
@testable import Core

@Suite("SplitMix64")
struct SplitMix64Tests {
    /// The published first outputs for seed 0, which scripts/lars_reference.py also checks.
    @Test func publishedStream() {
        var rng = SplitMix64(seed: 0)
        #expect([rng.next(), rng.next(), rng.next()] == [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F])
    }

    @Test func nextFloatStaysInRange() {
        var rng = SplitMix64(seed: 7)
        let xs = (0..<10_000).map { _ in rng.nextFloat(in: -0.25...0.75) }
        #expect(xs.allSatisfy { $0 >= -0.25 && $0 <= 0.75 })
        #expect(xs.min()! < -0.24 && xs.max()! > 0.74)
    }
}
