import Core
import Synchronization
import Wire

/// The numerical half of a worker: the network, its weight and gradient buffers, this rank's
/// batch buffers and the batch plan. Not thread-safe; one training loop uses it.
final class Trainer {
    let rank: Int
    let data: TrainingData
    let network: Network
    let plan: BatchPlan
    let totalSteps: Int
    /// The weights of the step pulled last (one buffer per layout tensor), unless they are read
    /// in place from the server's shared weight file (`inPlace`).
    let weights: FloatArena
    /// The weights of the step pulled last, when they are read in place from the server's shared
    /// weight file's slot (nothing copied); nil: they are in `weights`.
    private(set) var inPlace: SharedSlotWeights?
    /// Whether this worker may compute from the shared file's slot in place: every step waits
    /// for every worker, so the slot cannot be written again before this worker's next push
    /// (`NextPull.borrow`).
    let mayReadInPlace: Bool
    /// The gradient buffers (one per layout tensor): slices of a gradient file the server
    /// reads pushes from (`ClientSession.shareGradients`), or of an arena of this process's own.
    let gradients: [UnsafeMutableBufferPointer<Float>]
    /// The arena behind `gradients` when there is no gradient file, or the file.
    private let gradientArena: FloatArena?
    private let gradientFile: SharedWeightFile?
    let gradientViews: [UnsafeBufferPointer<Float>]
    /// Three batch buffers: the one being computed on, the one the gatherer fills with the next
    /// step's samples, and a spare for a copy the training thread makes itself when it cannot
    /// wait for the gatherer (or for an abandoned gather to notice that it was).
    private let batches: [Batch]
    /// The batch of the step computed last: not overwritten.
    private var busy = 0
    private var order: (epoch: Int, permutation: [Int])?
    /// Copies samples on a thread of its own at a low priority (see `BatchGatherer`).
    private let gatherer: BatchGatherer
    /// The buffer the gatherer is filling, for which step, and the job it shares with this thread.
    private var gathering: (buffer: Int, step: Int, count: Int, rows: RowCopy)?
    /// The job submitted last to the gatherer.
    private var submitted: RowCopy?
    /// A buffer an abandoned gather may still be writing: off limits until the gatherer is idle.
    private var abandoned: Int?
    /// How long the training thread waits for a gather in progress before it copies the batch
    /// itself (the copy takes about 4 ms for 4,096 images).
    var gatherPatience: Duration = .milliseconds(2)
    /// The last forward/backward's duration: the next batch's gather starts a twentieth of it
    /// (at most `gatherDelayLimit`) after the forward pass (`computeGradient`).
    private var lastCompute: Duration = .zero
    static let gatherDelayLimit: Duration = .milliseconds(10)

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

    /// `microBatch`: samples per forward/backward pass (nil: the model's `Network.passSize`).
    /// `gradientFile`: a file made for the layout's parameter count whose slot 0 holds the
    /// gradients (kept open as long as this trainer); nil, or one of another size: an arena.
    init(info: SessionInfo, data: TrainingData, microBatch: Int? = nil, gradientFile: SharedWeightFile? = nil) throws(Unsupported) {
        let job = info.job
        rank = info.rank
        self.data = data
        do {
            let pass = microBatch ?? Network.passSize[job.config.model] ?? job.share
            network = try Network(modelNamed: job.config.model, maxBatch: min(job.share, max(pass, 1)))
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
        mayReadInPlace = job.config.quorum == job.config.workers
        if let file = gradientFile, file.elements == network.spec.layout.parameterCount {
            gradients = file.tensors(inSlot: 0, counts: network.spec.layout.tensors.map(\.count))
            gradientArena = nil
            self.gradientFile = file
        } else {
            let arena = FloatArena(layout: network.spec.layout)
            gradients = arena.buffers
            gradientArena = arena
            self.gradientFile = nil
        }
        gradientViews = gradients.map { UnsafeBufferPointer($0) }
        let features = network.inputSize
        batches = (0..<3).map { _ in Batch(capacity: job.share, features: features) }
        gatherer = BatchGatherer()   // last: an init that throws must not leave its thread behind
    }

    deinit {
        gatherer.stop()
    }

    /// Starts gathering this rank's samples of step `step` on the gatherer thread, unless a
    /// buffer holds them or is being filled with them. A gather for another step (after a
    /// reconnect) is abandoned; while it winds down (unless every row of it was already
    /// copied) nothing new starts, and `awaitBatch` copies.
    func prefetch(step: Int, after delay: Duration = .zero) {
        guard step < totalSteps, !batches.contains(where: { $0.step == step }), gathering?.step != step else { return }
        abandonGather()
        // The gatherer may still be in a job this thread finished for it (it has nothing left
        // to write there): the new one waits behind it.
        guard gatherer.isIdle || (submitted?.isComplete == true && gatherer.canSubmit) else { return }
        abandoned = nil
        let (target, rows) = rowCopy(step: step)
        gathering = (target, step, rows.count, rows)
        submitted = rows
        gatherer.submit(after: delay) { shouldStop in rows.copy(streaming: true, until: shouldStop) }
    }

    /// Makes sure step `step`'s samples are in a batch buffer. If the gatherer is on them, this
    /// thread copies the rows it has not taken yet, then waits up to `gatherPatience` for the
    /// block the gatherer is in the middle of, if any; otherwise (or then) it copies them all
    /// itself into another buffer.
    /// Returns the seconds spent (near zero when the gatherer was ahead).
    func awaitBatch(step: Int) -> Double {
        guard !batches.contains(where: { $0.step == step }) else { return 0 }
        let start = ContinuousClock.now
        if let g = gathering, g.step == step {
            g.rows.copy(until: { false })   // the blocks the gatherer has not taken
            if gatherer.wait(until: { g.rows.isComplete }, upTo: gatherPatience) {
                gathering = nil
                batches[g.buffer].step = g.step
                batches[g.buffer].count = g.count
                return (ContinuousClock.now - start).seconds
            }
        }
        abandonGather()   // late, or for another step
        if abandoned != nil && gatherer.isIdle { abandoned = nil }
        let (target, rows) = rowCopy(step: step)
        rows.copy(until: { false })
        batches[target].step = step
        batches[target].count = rows.count
        return (ContinuousClock.now - start).seconds
    }

    /// Copies one block of step `step`'s rows that the gatherer has not taken, if it is
    /// gathering them; false when nothing is left to take.
    func gatherSome(step: Int) -> Bool {
        guard let g = gathering, g.step == step else { return false }
        return g.rows.copyBlock()
    }

    /// Tells the gather in flight, if any, to stop; its buffer stays off limits until the
    /// gatherer is idle.
    private func abandonGather() {
        guard let g = gathering else { return }
        gatherer.abandon()
        abandoned = g.buffer
        gathering = nil
    }

    /// The copy of step `step`'s rows into a spare batch buffer — one neither computed on, nor
    /// being filled, nor possibly written by an abandoned gather (three buffers, at most two of
    /// them taken), marked empty until the copy is known to be done — and those rows.
    private func rowCopy(step: Int) -> (target: Int, rows: RowCopy) {
        let target = batches.indices.first { $0 != busy && $0 != gathering?.buffer && $0 != abandoned }!
        let batch = batches[target]
        batch.step = nil
        return (target, RowCopy(images: batch.images, labels: batch.labels, source: data.train, indices: Array(slice(ofStep: step))))
    }

    /// This rank's sample indices of step `step`.
    private func slice(ofStep step: Int) -> ArraySlice<Int> {
        let (epoch, index) = plan.position(ofStep: step)
        if order?.epoch != epoch { order = (epoch, plan.permutation(epoch: epoch)) }
        return plan.slice(ofRank: rank, batch: index, in: order!.permutation)
    }

    /// Samples in step `step`'s batch, which `awaitBatch` has made ready.
    func batchCount(step: Int) -> Int {
        batches.first { $0.step == step }?.count ?? 0
    }

    /// The mean gradient of step `step`'s samples into `gradients`; returns the mean loss and
    /// the sample count, or nil if `shouldStop` stopped it. The next step's samples are gathered
    /// meanwhile. `shouldStop`, `gradientsFinal`: see `Network.lossAndGradient`.
    func computeGradient(
        step: Int, shouldStop: (() -> Bool)? = nil, gradientsFinal: ((Range<Int>) -> Void)? = nil
    ) -> (loss: Double, count: Int)? {
        _ = awaitBatch(step: step)
        busy = batches.firstIndex { $0.step == step }!
        // The next batch is not needed until this forward/backward ends. Its gather waits a
        // little, so that it does not take a core in the first milliseconds of the step, when
        // the server, the other workers and a worker that closed the step still need them.
        prefetch(step: step + 1, after: min(Self.gatherDelayLimit, lastCompute / 20))
        let batch = batches[busy]
        let started = ContinuousClock.now
        do {
            let loss = try network.lossAndGradient(
                weights: weightViews, images: UnsafeBufferPointer(batch.images), labels: UnsafeBufferPointer(batch.labels),
                count: batch.count, gradients: gradients, shouldStop: shouldStop, gradientsFinal: gradientsFinal).loss
            lastCompute = ContinuousClock.now - started
            return (loss, batch.count)
        } catch .stopped {
            return nil
        } catch {
            // Sizes are fixed at init and labels checked at load: this cannot happen.
            preconditionFailure("\(error)")
        }
    }

    /// Takes the weights of the step pulled last from the shared file's slot (`shared`), or
    /// from `weights` (nil: a pull wrote them there).
    func useWeights(_ shared: SharedSlotWeights?) {
        inPlace = shared
    }

    /// Makes `weights` hold the weights in hand, copying them out of the shared file's slot if
    /// they are read there. False when the server has written that slot again since: `weights`
    /// then holds garbage and the caller pulls.
    func ownWeights() -> Bool {
        guard let shared = inPlace else { return true }
        inPlace = nil
        return shared.copy(into: weights.buffers)
    }

    /// Test loss and accuracy of the weights in hand.
    func evaluate() -> (loss: Double, accuracy: Double) {
        do {
            return try network.evaluate(weights: weightViews, on: data.test)
        } catch {
            preconditionFailure("\(error)")
        }
    }

    private var weightViews: [UnsafeBufferPointer<Float>] { inPlace?.tensors ?? weights.buffers.map { UnsafeBufferPointer($0) } }
}

/// The row copy of one gather (`ImageDataset.gather` into one batch buffer), shared by the
/// gatherer thread and the training thread: each takes the next block of rows from a counter,
/// so rows the gatherer has not reached when the training thread needs the batch are copied by
/// the training thread, and only the block the gatherer is in the middle of is waited for.
/// The buffers stay put until the trainer has waited for the gatherer.
private final class RowCopy: @unchecked Sendable {
    let images: UnsafeMutableBufferPointer<Float>
    let labels: UnsafeMutableBufferPointer<UInt8>
    let source: ImageDataset
    let indices: [Int]
    /// The first row of the next block nobody has taken.
    private let next = Atomic<Int>(0)
    /// Rows copied so far, by either thread.
    private let copied = Atomic<Int>(0)
    /// Rows per block: small, so the block the gatherer holds is soon done.
    static let blockRows = 16

    init(images: UnsafeMutableBufferPointer<Float>, labels: UnsafeMutableBufferPointer<UInt8>, source: ImageDataset, indices: [Int]) {
        self.images = images
        self.labels = labels
        self.source = source
        self.indices = indices
    }

    var count: Int { indices.count }

    /// Copies blocks until none is left or `shouldStop` says so (asked before every block).
    /// `streaming`: with non-temporal stores (the gatherer's copies, read a forward/backward
    /// later; the training thread's own copies are read at once and go through the caches).
    func copy(streaming: Bool = false, until shouldStop: () -> Bool) {
        while !shouldStop(), copyBlock(streaming: streaming) {}
    }

    /// Copies the next block nobody has taken; false when none was left.
    func copyBlock(streaming: Bool = false) -> Bool {
        let first = next.add(Self.blockRows, ordering: .relaxed).oldValue
        guard first < indices.count else { return false }
        let end = min(first + Self.blockRows, indices.count)
        let f = source.featureCount
        source.gather(
            indices[first..<end], images: UnsafeMutableBufferPointer(rebasing: images[(first * f)...]),
            labels: UnsafeMutableBufferPointer(rebasing: labels[first...]), streaming: streaming)
        copied.add(end - first, ordering: .releasing)
        return true
    }

    /// Whether every row is copied: then neither thread writes the buffers again.
    var isComplete: Bool { copied.load(ordering: .acquiring) == indices.count }
}
