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
    private let images: UnsafeMutableBufferPointer<Float>
    private let labels: UnsafeMutableBufferPointer<UInt8>
    private var order: (epoch: Int, permutation: [Int])?

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
        images = .allocate(capacity: job.share * network.inputSize)
        labels = .allocate(capacity: job.share)
    }

    deinit {
        images.deallocate()
        labels.deallocate()
    }

    /// The step whose samples are in the batch buffers, and how many.
    private(set) var gatheredStep: Int?
    private(set) var batchCount = 0

    /// Copies this rank's samples of step `step` into the batch buffers; returns the seconds taken.
    func gather(step: Int) -> Double {
        let start = ContinuousClock.now
        let (epoch, batch) = plan.position(ofStep: step)
        if order?.epoch != epoch { order = (epoch, plan.permutation(epoch: epoch)) }
        let indices = plan.slice(ofRank: rank, batch: batch, in: order!.permutation)
        // Row copies with memcpy (ImageDataset.gather copies element by element: 6 ms for a
        // batch of 4096 here, which is 3% of a demo step).
        let f = network.inputSize
        data.train.images.withUnsafeBufferPointer { src in
            data.train.labels.withUnsafeBufferPointer { y in
                for (k, i) in indices.enumerated() {
                    (images.baseAddress! + k * f).update(from: src.baseAddress! + i * f, count: f)
                    labels[k] = y[i]
                }
            }
        }
        gatheredStep = step
        batchCount = indices.count
        return (ContinuousClock.now - start).seconds
    }

    /// The mean gradient of the gathered batch into `gradients`; returns the mean loss.
    func computeGradient(count: Int) -> Double {
        do {
            return try network.lossAndGradient(
                weights: weightViews, images: UnsafeBufferPointer(images), labels: UnsafeBufferPointer(labels),
                count: count, gradients: gradients.buffers).loss
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
