import Testing
@testable import Core

@Suite struct BatchPlanTests {
    /// Every sample of an epoch lands in exactly one rank's slice of one batch, except the
    /// n mod B samples at the end of the order, which are dropped; slices follow rank order.
    @Test(arguments: [(103, 10, 3), (60_000, 8192, 4), (50, 7, 7), (64, 64, 1), (1000, 33, 5)])
    func coversEveryKeptSampleOnce(samples: Int, batch: Int, workers: Int) {
        let plan = BatchPlan(sampleCount: samples, globalBatch: batch, workers: workers, seed: 3)
        var job = JobConfig()
        job.globalBatch = batch
        job.workers = workers
        let order = plan.permutation(epoch: 2)
        #expect(order.sorted() == Array(0..<samples))
        var seen = [Int](repeating: 0, count: samples)
        var walked: [Int] = []
        for b in 0..<plan.stepsPerEpoch {
            for r in 0..<workers {
                let slice = plan.slice(ofRank: r, batch: b, in: order)
                #expect(slice.count == job.share(ofRank: r))
                for i in slice { seen[i] += 1 }
                walked += slice
            }
        }
        #expect(plan.stepsPerEpoch == samples / batch)
        #expect(walked == Array(order.prefix(plan.stepsPerEpoch * batch)))
        let dropped = Set(order.suffix(samples - plan.stepsPerEpoch * batch))
        for i in 0..<samples { #expect(seen[i] == (dropped.contains(i) ? 0 : 1)) }
    }

    @Test func sharesAndOffsetsMatchTheJob() {
        let plan = BatchPlan(sampleCount: 100, globalBatch: 10, workers: 4, seed: 0)
        #expect((0..<4).map(plan.share(ofRank:)) == [3, 3, 2, 2])
        #expect((0..<4).map(plan.offset(ofRank:)) == [0, 3, 6, 8])
        #expect(plan.position(ofStep: 23) == (2, 3))
    }

    /// The order depends only on (seed, epoch), and matches the stream a Python SplitMix64
    /// reproduces (see `BatchPlan.permutation`).
    @Test func permutationIsSeededPerEpoch() {
        #expect(BatchPlan.permutation(count: 10, seed: 1, epoch: 0) == [2, 9, 5, 7, 4, 1, 0, 8, 6, 3])
        #expect(BatchPlan.permutation(count: 10, seed: 1, epoch: 1) == [4, 2, 5, 3, 6, 0, 8, 7, 1, 9])
        #expect(BatchPlan.permutation(count: 12, seed: 42, epoch: 3) == [11, 0, 4, 3, 7, 9, 10, 8, 1, 6, 2, 5])
        let plan = BatchPlan(sampleCount: 1000, globalBatch: 100, workers: 3, seed: 5)
        #expect(plan.permutation(epoch: 4) == plan.permutation(epoch: 4))
        #expect(plan.permutation(epoch: 4) != plan.permutation(epoch: 5))
        #expect(plan.indices(epoch: 4, batch: 2, rank: 1) == Array(plan.permutation(epoch: 4)[234..<267]))
    }
}
