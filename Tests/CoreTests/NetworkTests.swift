import Foundation
import Testing
@testable import Core

@Suite struct NetworkTests {
    /// Weights, gradients and a batch for `model`, with the network's mean gradient computed.
    final class Fixture {
        let spec: ModelSpec
        let network: Network
        let weights: FloatArena
        let gradients: FloatArena
        let data: ImageDataset

        init(model: String, samples: Int, seed: UInt64 = 7, maxBatch: Int? = nil) throws {
            network = try Network(modelNamed: model, maxBatch: maxBatch ?? samples)
            spec = network.spec
            weights = FloatArena(layout: spec.layout)
            gradients = FloatArena(layout: spec.layout)
            try spec.initialize(seed: seed, into: weights.buffers)
            data = ImageDataset.synthetic(count: samples, seed: seed)
        }

        var constWeights: [UnsafeBufferPointer<Float>] { weights.buffers.map { UnsafeBufferPointer($0) } }

        @discardableResult
        func step(count: Int? = nil, offset: Int = 0) throws -> (loss: Double, correct: Int) {
            let n = count ?? data.count
            return try data.images.withUnsafeBufferPointer { x in
                try network.lossAndGradient(
                    weights: constWeights, images: UnsafeBufferPointer(rebasing: x[(offset * 784)...]),
                    labels: Array(data.labels[offset..<(offset + n)]), count: n, gradients: gradients.buffers)
            }
        }
    }

    /// Every element of the analytic gradient at the sampled coordinates is within this
    /// fraction of the tensor's largest analytic gradient entry of the Float64 reference's
    /// central difference (h = 1e-6, truncation and rounding below 1e-9). Float32 sums over up
    /// to 1568 terms leave a few 1e-7; 2.2e-7 measured.
    static let gradientTolerance = 1e-5

    /// Central differences of the Float64 reference at a sample of coordinates of every tensor
    /// (5 seeded ones plus the tensor's largest gradient entry), against the network's gradient.
    @Test(arguments: ["mlp", "cnn"])
    func gradientMatchesFiniteDifferencesOfFloat64Reference(model: String) throws {
        let f = try Fixture(model: model, samples: 3)
        let result = try f.step()
        let images = f.data.images.map(Double.init)
        var reference = NetworkReference(model: model, weights: f.weights.buffers.map { $0.map(Double.init) })
        let refLoss = reference.loss(images: images, labels: f.data.labels)
        #expect(abs(result.loss - refLoss) <= 1e-5 * refLoss, "loss \(result.loss) vs Float64 \(refLoss)")

        var rng = SplitMix64(seed: 99)
        var worst = 0.0
        for (t, tensor) in f.spec.layout.tensors.enumerated() {
            let g = f.gradients.buffers[t]
            let scale = g.reduce(0) { max($0, abs(Double($1))) }
            #expect(scale > 0, "\(tensor.name): all-zero gradient")
            let largest = g.indices.max { abs(g[$0]) < abs(g[$1]) }!
            let coordinates = [largest] + (0..<5).map { _ in Int(rng.next() % UInt64(g.count)) }
            for i in coordinates {
                let w = reference.weights[t][i], h = 1e-6
                reference.weights[t][i] = w + h
                let up = reference.loss(images: images, labels: f.data.labels)
                reference.weights[t][i] = w - h
                let down = reference.loss(images: images, labels: f.data.labels)
                reference.weights[t][i] = w
                let error = abs((up - down) / (2 * h) - Double(g[i])) / scale
                worst = max(worst, error)
                #expect(error <= Self.gradientTolerance, "\(tensor.name)[\(i)]: fd \((up - down) / (2 * h)), analytic \(g[i])")
            }
        }
        print("\(model): worst gradient error \(worst) of the tensor's largest entry (tolerance \(Self.gradientTolerance))")
    }

    /// All-zero weights give equal logits: the loss is ln 10 and the last bias's gradient is
    /// the mean of softmax (0.1 each) minus the one-hot labels.
    @Test(arguments: ["mlp", "cnn"])
    func uniformLogitsGiveLn10(model: String) throws {
        let f = try Fixture(model: model, samples: 8)
        for b in f.weights.buffers { b.update(repeating: 0) }
        let result = try f.step()
        #expect(abs(result.loss - log(10)) < 1e-6)
        let bias = f.gradients.buffers.last!
        for c in 0..<10 {
            let share = Double(f.data.labels.filter { $0 == c }.count) / 8
            #expect(abs(Double(bias[c]) - (0.1 - share)) < 1e-6)
        }
    }

    /// The same samples give the same gradient whether the network's scratch is sized for them
    /// or for more, and whatever was computed before.
    @Test func gradientDoesNotDependOnScratchOrHistory() throws {
        let small = try Fixture(model: "cnn", samples: 4)
        let large = try Fixture(model: "cnn", samples: 6, maxBatch: 6)
        try large.step(count: 2, offset: 4)
        let a = try small.step()
        let b = try large.step(count: 4)
        #expect(a.loss == b.loss && a.correct == b.correct)
        for (x, y) in zip(small.gradients.buffers, large.gradients.buffers) { #expect(Array(x) == Array(y)) }
    }

    /// A batch larger than the scratch runs in passes (here 3 + 3 + 3 + 1 samples) whose
    /// gradients add up to the one-pass mean: every element within 1e-6 of the tensor's largest
    /// gradient entry (the passes only change the order of Float sums), the loss within 1e-6
    /// relative and the correct count exact. The gradients start out holding garbage, which
    /// the first pass must overwrite.
    @Test(arguments: ["mlp", "cnn"])
    func batchLargerThanScratchRunsInPassesWithTheSameMean(model: String) throws {
        let whole = try Fixture(model: model, samples: 10)
        let passes = try Fixture(model: model, samples: 10, maxBatch: 3)
        for g in passes.gradients.buffers { g.update(repeating: 7) }
        let a = try whole.step()
        let b = try passes.step()
        #expect(abs(a.loss - b.loss) <= 1e-6 * a.loss)
        #expect(a.correct == b.correct)
        for (t, (x, y)) in zip(whole.spec.layout.tensors, zip(whole.gradients.buffers, passes.gradients.buffers)) {
            let scale = x.map { abs($0) }.max()!
            #expect(scale > 0, "\(t.name): zero gradient tests nothing")
            let worst = zip(x, y).map { abs($0 - $1) }.max()!
            #expect(worst <= 1e-6 * scale, "\(model) \(t.name): off by \(worst), largest entry \(scale)")
        }
    }

    /// `gradientsFinal` names every parameter tensor once, the last layer first, during the
    /// last pass only, and each tensor already holds its final gradient when named: a copy
    /// taken at the call equals the gradient at the end (here over passes of 3 + 3 + 3 + 1).
    @Test(arguments: ["mlp", "cnn"])
    func gradientsFinalNamesEachLayerOnceItsGradientIsDone(model: String) throws {
        let f = try Fixture(model: model, samples: 10, maxBatch: 3)
        var named: [Range<Int>] = []
        var copies: [Int: [Float]] = [:]
        let gradients = f.gradients.buffers
        _ = try f.data.images.withUnsafeBufferPointer { x in
            try f.network.lossAndGradient(
                weights: f.constWeights, images: x, labels: f.data.labels, count: 10, gradients: gradients,
                gradientsFinal: { tensors in
                    named.append(tensors)
                    for t in tensors { copies[t] = Array(gradients[t]) }
                })
        }
        let expected: [Range<Int>] = model == "mlp" ? [4..<6, 2..<4, 0..<2] : [6..<8, 4..<6, 2..<4, 0..<2]
        #expect(named == expected)
        for t in gradients.indices {
            #expect(copies[t] == Array(gradients[t]), "\(model) tensor \(t) changed after it was named final")
            #expect(copies[t]?.contains { $0 != 0 } == true, "\(model) tensor \(t): zero gradient tests nothing")
        }
    }

    /// `shouldStop` is asked before every layer, forward and backward, of every pass; the
    /// first true ends the call with `stopped`. Here it says so at its eighth question: three
    /// layers forward and three backward in the first pass (of 3 + 3 + 3 + 1 samples), then the
    /// second layer of the second pass's forward.
    @Test func shouldStopEndsTheCallAtTheNextLayer() throws {
        let f = try Fixture(model: "mlp", samples: 10, maxBatch: 3)
        var asked = 0
        #expect(throws: NetworkError.stopped) {
            try f.data.images.withUnsafeBufferPointer { x in
                try f.network.lossAndGradient(
                    weights: f.constWeights, images: x, labels: f.data.labels, count: 10, gradients: f.gradients.buffers,
                    shouldStop: {
                        asked += 1
                        return asked == 8
                    })
            }
        }
        #expect(asked == 8)
        // Never true: the same result as without it.
        let a = try f.step()
        let b = try f.data.images.withUnsafeBufferPointer { x in
            try f.network.lossAndGradient(
                weights: f.constWeights, images: x, labels: f.data.labels, count: 10, gradients: f.gradients.buffers,
                shouldStop: { false })
        }
        #expect(a.loss == b.loss && a.correct == b.correct)
    }

    @Test(arguments: ["mlp", "cnn"])
    func sgdStepsReduceTheLossOnTheSyntheticSet(model: String) throws {
        let f = try Fixture(model: model, samples: model == "mlp" ? 64 : 32)
        let before = try f.network.evaluate(weights: f.constWeights, on: f.data)
        for _ in 0..<10 {
            try f.step()
            for (w, g) in zip(f.weights.buffers, f.gradients.buffers) {
                for i in w.indices { w[i] -= 0.2 * g[i] }
            }
        }
        let after = try f.network.evaluate(weights: f.constWeights, on: f.data)
        // PyTorch's init starts the CNN slowly; 10 steps take it from 2.30 to about 1.9.
        #expect(after.loss < (model == "mlp" ? 0.5 : 0.9) * before.loss, "\(model): loss \(before.loss) -> \(after.loss)")
        #expect(after.accuracy > before.accuracy)
    }

    @Test func evaluateAgreesWithOneBigBatch() throws {
        let f = try Fixture(model: "mlp", samples: 10)
        let whole = try f.step()
        let batched = try Network(modelNamed: "mlp", maxBatch: 3).evaluate(weights: f.constWeights, on: f.data)
        #expect(abs(batched.loss - whole.loss) < 1e-6)
        #expect(batched.accuracy == Double(whole.correct) / 10)
    }

    @Test func refusesWhatItCannotRun() throws {
        #expect(throws: NetworkError.unsupportedModel(name: "resnet50-shapes", supported: ["mlp", "cnn"])) {
            try Network(modelNamed: "resnet50-shapes", maxBatch: 4)
        }
        let f = try Fixture(model: "mlp", samples: 4)
        #expect(throws: NetworkError.batchSize(count: 0, maxBatch: nil)) {
            try f.network.lossAndGradient(weights: f.constWeights, images: UnsafeBufferPointer(start: nil, count: 0),
                                          labels: [UInt8](), count: 0, gradients: f.gradients.buffers)
        }
        #expect(throws: NetworkError.tensorCountMismatch(model: "mlp", expected: 6, actual: 5)) {
            try f.network.lossAndGradient(weights: Array(f.constWeights.dropLast()), images: UnsafeBufferPointer(start: nil, count: 0),
                                          labels: [0], count: 1, gradients: f.gradients.buffers)
        }
        var labels = f.data.labels
        labels[2] = 10
        #expect(throws: NetworkError.labelOutOfRange(index: 2, label: 10, classes: 10)) {
            try f.data.images.withUnsafeBufferPointer { x in
                try f.network.lossAndGradient(weights: f.constWeights, images: x, labels: labels, count: 4, gradients: f.gradients.buffers)
            }
        }
    }
}
