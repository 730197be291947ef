/// Which samples each worker computes at each step (DESIGN.md §2): every epoch visits the
/// training set in a fresh seeded order; global batch b of an epoch is positions
/// `b*B ..< (b+1)*B` of that order (the last partial batch is dropped), split across the N
/// ranks in rank order with the shares of `JobConfig.share(ofRank:)`.
public struct BatchPlan: Sendable, Hashable {
    public let sampleCount: Int
    /// Global batch B.
    public let globalBatch: Int
    /// Workers N.
    public let workers: Int
    /// The job's seed.
    public let seed: UInt64

    /// A plan for `sampleCount` samples; needs 1 <= workers <= globalBatch.
    public init(sampleCount: Int, globalBatch: Int, workers: Int, seed: UInt64) {
        precondition(workers >= 1 && globalBatch >= workers && sampleCount >= 0, "1 <= workers <= global batch")
        self.sampleCount = sampleCount
        self.globalBatch = globalBatch
        self.workers = workers
        self.seed = seed
    }

    /// The plan of a job over a data set of `sampleCount` training samples.
    public init(job: JobConfig, sampleCount: Int) {
        self.init(sampleCount: sampleCount, globalBatch: job.globalBatch, workers: job.workers, seed: job.seed)
    }

    /// floor(n / B): global batches per epoch.
    public var stepsPerEpoch: Int { sampleCount / globalBatch }

    /// The epoch and global batch of step `step` (counted from 0 over the whole job).
    public func position(ofStep step: Int) -> (epoch: Int, batch: Int) {
        precondition(stepsPerEpoch > 0, "fewer samples than one global batch")
        return (step / stepsPerEpoch, step % stepsPerEpoch)
    }

    /// Samples rank `rank` computes per step (the first B mod N ranks take one more).
    public func share(ofRank rank: Int) -> Int {
        globalBatch / workers + (rank < globalBatch % workers ? 1 : 0)
    }

    /// Where rank `rank`'s samples start within a global batch: the sum of the lower ranks' shares.
    public func offset(ofRank rank: Int) -> Int {
        rank * (globalBatch / workers) + min(rank, globalBatch % workers)
    }

    /// The visiting order of epoch `epoch`: a permutation of `0..<sampleCount`.
    public func permutation(epoch: Int) -> [Int] {
        Self.permutation(count: sampleCount, seed: seed, epoch: epoch)
    }

    /// Rank `rank`'s sample indices for global batch `batch`, cut from an epoch's `permutation`.
    public func slice(ofRank rank: Int, batch: Int, in permutation: [Int]) -> ArraySlice<Int> {
        precondition(rank >= 0 && rank < workers && batch >= 0 && batch < stepsPerEpoch, "rank or batch out of range")
        let start = batch * globalBatch + offset(ofRank: rank)
        return permutation[start..<(start + share(ofRank: rank))]
    }

    /// Rank `rank`'s sample indices for global batch `batch` of epoch `epoch`. Builds the
    /// epoch's permutation: callers stepping through an epoch keep `permutation(epoch:)` instead.
    public func indices(epoch: Int, batch: Int, rank: Int) -> [Int] {
        Array(slice(ofRank: rank, batch: batch, in: permutation(epoch: epoch)))
    }

    /// Keeps epoch orders apart from the weight-init streams drawn from the same job seed.
    static let domain: UInt64 = 0x5045_524d_5554_4521

    /// Fisher-Yates over `0..<count` driven by SplitMix64: the generator is seeded with output
    /// `epoch + 1` of `SplitMix64(seed: seed ^ domain)`; for i from count-1 down to 1, j is
    /// `next() % (i + 1)` and elements i and j swap (the modulo bias is below 2^-40 here, and
    /// keeps the order easy to reproduce in other languages).
    public static func permutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        // Output k + 1 of SplitMix64(s) is the first output of SplitMix64(s + k * increment).
        var outer = SplitMix64(seed: (seed ^ domain) &+ UInt64(truncatingIfNeeded: epoch) &* 0x9e37_79b9_7f4a_7c15)
        var g = SplitMix64(seed: outer.next())
        var order = Array(0..<count)
        order.withUnsafeMutableBufferPointer { p in
            var i = count - 1
            while i > 0 {
                let j = Int(g.next() % UInt64(i + 1))
                p.swapAt(i, j)
                i -= 1
            }
        }
        return order
    }
}
