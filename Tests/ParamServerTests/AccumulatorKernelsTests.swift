import Testing

@testable import Core
@testable import ParamServer

/// The close of a step relies on two exact agreements: the chunk a last contribution turns into
/// the mean on arrival (`finalize`) holds the same bits as adding then taking the mean at the
/// close, and adding its terms onto the running total gives the same ||g||^2 as `mean` does —
/// which is also the optimizer's own `sumOfSquares`, bit for bit.
@Suite struct AccumulatorKernelsTests {
    /// A tensor of 5,000 elements in chunks of 2,048: two full chunks and a last one of 904
    /// elements (904 = 56 x 16 + 8, so it has tail elements past the SIMD loop).
    static let count = 5_000
    static let chunk = 2_048

    static func values(seed: UInt64) -> [Float] {
        var g = SplitMix64(seed: seed)
        return (0..<count).map { _ in g.nextFloat(in: -3...3) }
    }

    /// The close's old path: add every contribution, then `mean` chunk by chunk with the running total.
    static func addThenMean(_ contributions: [[Float]], total: Float) -> (values: [Float], sumOfSquares: Double) {
        var acc = contributions[0]
        var sum = 0.0
        acc.withUnsafeMutableBufferPointer { a in
            for x in contributions.dropFirst() {
                x.withUnsafeBufferPointer { AccumulatorKernels.add($0.baseAddress!, into: a.baseAddress!, count: count) }
            }
            for start in stride(from: 0, to: count, by: chunk) {
                sum = AccumulatorKernels.mean(a.baseAddress! + start, count: min(chunk, count - start), total: total, running: sum)
            }
        }
        return (acc, sum)
    }

    /// The new path: the first contributions added, the last one added and turned into the mean
    /// per chunk by `finalize`; the terms then added one by one in chunk order.
    static func finalized(_ contributions: [[Float]], total: Float) -> (values: [Float], sumOfSquares: Double) {
        var acc = contributions[0]
        var sum = 0.0
        let terms = UnsafeMutablePointer<Double>.allocate(capacity: AccumulatorKernels.termCapacity(count: chunk))
        defer { terms.deallocate() }
        acc.withUnsafeMutableBufferPointer { a in
            for x in contributions.dropFirst().dropLast() {
                x.withUnsafeBufferPointer { AccumulatorKernels.add($0.baseAddress!, into: a.baseAddress!, count: count) }
            }
            for start in stride(from: 0, to: count, by: chunk) {
                let n = min(chunk, count - start)
                let written: Int
                if contributions.count > 1 {
                    written = contributions.last!.withUnsafeBufferPointer {
                        AccumulatorKernels.finalize(a.baseAddress! + start, adding: $0.baseAddress! + start, count: n, total: total, terms: terms)
                    }
                } else {
                    written = AccumulatorKernels.finalize(a.baseAddress! + start, adding: nil, count: n, total: total, terms: terms)
                }
                #expect(written <= AccumulatorKernels.termCapacity(count: n))
                for k in 0..<written { sum += terms[k] }
            }
        }
        return (acc, sum)
    }

    @Test(arguments: [1, 2, 3])
    func finalizeEqualsAddThenMeanBitForBit(contributors: Int) {
        let contributions = (0..<contributors).map { Self.values(seed: UInt64(10 + $0)) }
        let total = Float(32 * contributors)
        let old = Self.addThenMean(contributions, total: total)
        let new = Self.finalized(contributions, total: total)
        let differing = zip(old.values, new.values).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(differing == 0, "\(differing) mean gradient values differ")
        #expect(old.sumOfSquares == new.sumOfSquares)
        // And both are the optimizer's own ||g||^2 of the mean gradient.
        let own = new.values.withUnsafeBufferPointer { OptimizerKernels.sumOfSquares($0) }
        #expect(new.sumOfSquares == own)
    }
}
