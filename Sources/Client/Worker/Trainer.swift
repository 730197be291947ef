import Core
import Wire

/// The numerical half of a worker: the network, its weight and gradient buffers, this rank's
/// batch buffers and the batch plan. Not thread-safe; one training loop uses it.
final class Trainer {
    let rank: Int
    let data: TrainingData
    let network: Network
    let plan: BatchPlan
    let totalSteps: Int
    /// The weights of the step pulled last (one buffer per layout tensor).
    let weights: FloatArena
    let gradients: FloatArena
    let gradientViews: [UnsafeBufferPointer<Float>]
    /// Two batch buffers: the loop gathers the next step's samples into one while the other's
    /// gradient is being pushed.
    private let batches: [Batch]
    /// The batch of the step computed last: not overwritten by `prepare`.
    private var busy = 0
    private var order: (epoch: Int, permutation: [Int])?

    /// One step's samples, gathered.
    final class Batch {
        let images: UnsafeMutableBufferPointer<Float>
        let labels: UnsafeMutableBufferPointer<UInt8>
        var step: Int?
        var count = 0

        init(capacity: Int, features: Int) {
            images = .allocate(capacity: capacity * features)
            labels = .allocate(capacity: capacity)
        }

        deinit {
            images.deallocate()
            labels.deallocate()
        }
    }

    /// A job this worker cannot train: which field and why.
    struct Unsupported: Error, CustomStringConvertible {
        var description: String
    }

    init(info: SessionInfo, data: TrainingData) throws(Unsupported) {
        let job = info.job
        rank = info.rank
        self.data = data
        do {
            network = try Network(modelNamed: job.config.model, maxBatch: job.share)
        } catch {
            throw Unsupported(description: "model \(job.config.model): \(error)")
        }
        guard network.spec.layout.hash == info.layout.hash else {
            throw Unsupported(description: "the server's layout for model \(job.config.model) differs from the built-in one")
        }
        guard data.train.featureCount == network.inputSize else {
            throw Unsupported(description: "images of \(data.train.rows)x\(data.train.columns) pixels; model \(job.config.model) takes \(network.inputSize) inputs")
        }
        plan = BatchPlan(sampleCount: data.train.count, globalBatch: job.config.globalBatch, workers: info.worldSize, seed: job.config.seed)
        guard plan.stepsPerEpoch >= 1 else {
            throw Unsupported(description: "global batch \(job.config.globalBatch) exceeds the \(data.train.count) training samples")
        }
        guard plan.share(ofRank: rank) == job.share else {
            throw Unsupported(description: "the server gives rank \(rank) \(job.share) samples per step, the batch plan \(plan.share(ofRank: rank))")
        }
        if let perEpoch = job.stepsPerEpoch, job.fingerprint != nil, perEpoch != plan.stepsPerEpoch {
            throw Unsupported(description: "the server counts \(perEpoch) steps per epoch, this worker \(plan.stepsPerEpoch)")
        }
        totalSteps = job.totalSteps ?? job.config.steps ?? Int.max
        weights = FloatArena(layout: network.spec.layout)
        gradients = FloatArena(layout: network.spec.layout)
        gradientViews = gradients.buffers.map { UnsafeBufferPointer($0) }
        let features = network.inputSize
        batches = (0..<2).map { _ in Batch(capacity: job.share, features: features) }
    }

    /// Gathers this rank's samples of step `step` into the batch buffer not in use, unless one
    /// already holds them; returns the seconds taken.
    @discardableResult
    func prepare(step: Int) -> Double {
        guard !batches.contains(where: { $0.step == step }) else { return 0 }
        let start = ContinuousClock.now
        let batch = batches[1 - busy]
        let (epoch, index) = plan.position(ofStep: step)
        if order?.epoch != epoch { order = (epoch, plan.permutation(epoch: epoch)) }
        let indices = plan.slice(ofRank: rank, batch: index, in: order!.permutation)
        // Row copies with memcpy (ImageDataset.gather copies element by element: 6 ms for a
        // batch of 4096 here, which is 3% of a demo step).
        let f = network.inputSize
        data.train.images.withUnsafeBufferPointer { src in
            data.train.labels.withUnsafeBufferPointer { y in
                for (k, i) in indices.enumerated() {
                    (batch.images.baseAddress! + k * f).update(from: src.baseAddress! + i * f, count: f)
                    batch.labels[k] = y[i]
                }
            }
        }
        batch.step = step
        batch.count = indices.count
        return (ContinuousClock.now - start).seconds
    }

    /// The mean gradient of step `step`'s samples (gathered by `prepare`) into `gradients`;
    /// returns the mean loss and the sample count.
    func computeGradient(step: Int) -> (loss: Double, count: Int) {
        prepare(step: step)
        busy = batches.firstIndex { $0.step == step }!
        let batch = batches[busy]
        do {
            let loss = try network.lossAndGradient(
                weights: weightViews, images: UnsafeBufferPointer(batch.images), labels: UnsafeBufferPointer(batch.labels),
                count: batch.count, gradients: gradients.buffers).loss
            return (loss, batch.count)
        } catch {
            // Sizes are fixed at init and labels checked at load: this cannot happen.
            preconditionFailure("\(error)")
        }
    }

    /// Test loss and accuracy of the weights in hand.
    func evaluate() -> (loss: Double, accuracy: Double) {
        do {
            return try network.evaluate(weights: weightViews, on: data.test)
        } catch {
            preconditionFailure("\(error)")
        }
    }

    private var weightViews: [UnsafeBufferPointer<Float>] { weights.buffers.map { UnsafeBufferPointer($0) } }
}
