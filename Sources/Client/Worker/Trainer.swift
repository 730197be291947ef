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
    /// Two batch buffers: the gatherer fills one with the next step's samples while the other's
    /// gradient is being computed.
    private let batches: [Batch]
    /// The batch of the step computed last: not overwritten by `prefetch`.
    private var busy = 0
    private var order: (epoch: Int, permutation: [Int])?
    /// Copies samples on a thread of its own at idle priority (see `BatchGatherer`).
    private let gatherer = BatchGatherer()
    /// The buffer the gatherer is filling and for which step.
    private var gathering: (buffer: Int, step: Int, count: Int)?

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

    deinit {
        gatherer.stop()
    }

    /// Starts gathering this rank's samples of step `step` on the gatherer thread, into the
    /// batch buffer not in use, unless a buffer holds them or is being filled with them.
    func prefetch(step: Int) {
        guard step < totalSteps, !batches.contains(where: { $0.step == step }), gathering?.step != step else { return }
        if gathering != nil { finishGathering() }   // a gather for another step (after a reconnect)
        let target = 1 - busy
        let batch = batches[target]
        batch.step = nil
        let (epoch, index) = plan.position(ofStep: step)
        if order?.epoch != epoch { order = (epoch, plan.permutation(epoch: epoch)) }
        let indices = plan.slice(ofRank: rank, batch: index, in: order!.permutation)
        gathering = (target, step, indices.count)
        let rows = RowCopy(images: batch.images, labels: batch.labels, source: data.train, features: network.inputSize)
        gatherer.submit { rows.copy(indices) }
    }

    /// Waits until step `step`'s samples are in a batch buffer, gathering them first if no one
    /// has started; returns the seconds waited (zero when the gatherer was ahead).
    func awaitBatch(step: Int) -> Double {
        guard !batches.contains(where: { $0.step == step }) else { return 0 }
        let start = ContinuousClock.now
        prefetch(step: step)
        finishGathering()
        return (ContinuousClock.now - start).seconds
    }

    private func finishGathering() {
        guard let g = gathering else { return }
        gatherer.wait()
        batches[g.buffer].step = g.step
        batches[g.buffer].count = g.count
        gathering = nil
    }

    /// The mean gradient of step `step`'s samples into `gradients`; returns the mean loss and
    /// the sample count. The next step's samples are gathered meanwhile.
    func computeGradient(step: Int) -> (loss: Double, count: Int) {
        _ = awaitBatch(step: step)
        busy = batches.firstIndex { $0.step == step }!
        prefetch(step: step + 1)
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

/// The row copy a gather job does: rows `indices` of the training set into one batch buffer
/// (memcpy per row; `ImageDataset.gather` copies element by element, 6 ms for 4,096 images
/// here). The buffers stay put until the trainer has waited for the job.
private struct RowCopy: @unchecked Sendable {
    let images: UnsafeMutableBufferPointer<Float>
    let labels: UnsafeMutableBufferPointer<UInt8>
    let source: ImageDataset
    let features: Int

    func copy(_ indices: ArraySlice<Int>) {
        source.images.withUnsafeBufferPointer { src in
            source.labels.withUnsafeBufferPointer { y in
                for (k, i) in indices.enumerated() {
                    (images.baseAddress! + k * features).update(from: src.baseAddress! + i * features, count: features)
                    labels[k] = y[i]
                }
            }
        }
    }
}
