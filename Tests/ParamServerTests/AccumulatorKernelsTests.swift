import Testing

@testable import Core
@testable import ParamServer
import Wire

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
                        AccumulatorKernels.finalizeScaled(
                            a.baseAddress! + start, adding: UnsafeRawPointer($0.baseAddress! + start), by: 1, count: n, total: total, terms: terms
                        ).written
                    }
                } else {
                    written = AccumulatorKernels.finalize(a.baseAddress! + start, count: n, total: total, terms: terms)
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

    /// The kernels PUSH_SHARED uses, which scale a worker's mapped values on the way in, against
    /// `scale` into a staging buffer followed by `add` or `finalize`: the same bits, the same
    /// terms, and a NaN or an infinite product reported wherever it is (scaled from an odd
    /// address, as a mapping may give; 5,000 elements end in a scalar tail after 4,992).
    /// Arguments: the element spoiled (-1: none) and its value.
    @Test(arguments: [(-1, Float(0)), (100, .nan), (4_997, .nan), (2_000, .infinity), (4_999, 1e38)])
    func scaledOnTheWayEqualsStagedBitForBit(spoiled: Int, value: Float) {
        let poisoned = spoiled >= 0
        var source = [Float](repeating: 0, count: Self.count + 1)
        let x = Self.values(seed: 21)
        for i in 0..<Self.count { source[i + 1] = x[i] }
        if poisoned { source[1 + spoiled] = value }   // 1e38 x 4096 overflows Float
        let factor: Float = 4096, total: Float = 8192
        let capacity = AccumulatorKernels.termCapacity(count: Self.count)
        let termsA = UnsafeMutablePointer<Double>.allocate(capacity: capacity)
        let termsB = UnsafeMutablePointer<Double>.allocate(capacity: capacity)
        defer { termsA.deallocate(); termsB.deallocate() }
        source.withUnsafeBytes { raw in
            // Not 4-byte aligned: one byte into a Float, as any offset in a mapped file may be.
            let bytes = UnsafeMutableRawPointer.allocate(byteCount: Self.count * 4 + 1, alignment: 16)
            defer { bytes.deallocate() }
            bytes.advanced(by: 1).copyMemory(from: raw.baseAddress! + 4, byteCount: Self.count * 4)
            let src = UnsafeRawPointer(bytes.advanced(by: 1))

            var staged = [Float](repeating: 0, count: Self.count)
            let stagedFinite = staged.withUnsafeMutableBufferPointer {
                AccumulatorKernels.scale(src, dtype: .float32, count: Self.count, by: factor, into: $0.baseAddress!)
            }
            #expect(stagedFinite == !poisoned)

            // Added to a partial sum.
            var accA = Self.values(seed: 22), accB = accA
            accA.withUnsafeMutableBufferPointer { a in
                staged.withUnsafeBufferPointer { AccumulatorKernels.add($0.baseAddress!, into: a.baseAddress!, count: Self.count) }
            }
            let addFinite = accB.withUnsafeMutableBufferPointer {
                AccumulatorKernels.addScaled(src, by: factor, into: $0.baseAddress!, count: Self.count)
            }
            #expect(addFinite == !poisoned)
            #expect(zip(accA, accB).allSatisfy { $0.bitPattern == $1.bitPattern })

            // The last contribution, turned into the mean.
            var meanA = Self.values(seed: 23), meanB = meanA
            let writtenA = meanA.withUnsafeMutableBufferPointer { a in
                staged.withUnsafeBufferPointer {
                    AccumulatorKernels.finalizeScaled(
                        a.baseAddress!, adding: UnsafeRawPointer($0.baseAddress!), by: 1, count: Self.count, total: total, terms: termsA
                    ).written
                }
            }
            let (writtenB, finalFinite) = meanB.withUnsafeMutableBufferPointer {
                AccumulatorKernels.finalizeScaled($0.baseAddress!, adding: src, by: factor, count: Self.count, total: total, terms: termsB)
            }
            #expect(finalFinite == !poisoned)
            #expect(zip(meanA, meanB).allSatisfy { $0.bitPattern == $1.bitPattern })
            #expect(writtenA == writtenB)
            #expect((0..<writtenA).allSatisfy { termsA[$0].bitPattern == termsB[$0].bitPattern })
        }
    }
}
