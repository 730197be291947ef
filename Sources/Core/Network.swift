/// The layers of a built-in model (`mlp` or `cnn`, DESIGN.md §2) with scratch space for up to
/// `maxBatch` samples: the mean gradient of softmax cross-entropy over a batch, written into
/// the caller's per-tensor buffers, and evaluation in batches. Weights are never stored here;
/// every call takes them, one buffer per tensor in layout order (PyTorch layouts).
///
/// Not thread-safe: a network's scratch serves one call at a time. Nothing is allocated per call.
public final class Network {
    /// The model, as the server knows it; buffers follow `spec.layout`.
    public let spec: ModelSpec
    /// The largest batch one call takes.
    public let maxBatch: Int
    /// Floats per input sample (784: one 28 x 28 image, row-major).
    public let inputSize: Int
    /// Number of classes (logits per sample).
    public let classCount: Int

    let layers: [any Layer]
    /// Output of each layer, `maxBatch` samples each; the last holds the logits.
    private let activations: [UnsafeMutablePointer<Float>]
    /// Two buffers the backward pass alternates between (gradient in, gradient out).
    private let gradientScratch: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)

    /// The model names that have layers.
    public static let trainableModels = ["mlp", "cnn"]

    /// Samples per pass a worker uses by default: the MLP's GEMMs run at full speed from 1,024
    /// rows on, and 2,048 keeps its scratch near 20 MB; a CNN sample needs about 200 KB of
    /// activations and gradients, so 256 keeps the CNN's scratch near 50 MB.
    public static let passSize = ["mlp": 2048, "cnn": 256]

    /// Builds the layers of `spec`, which must be the built-in `mlp` or `cnn` (same name and
    /// layout), with scratch for `maxBatch` samples.
    public init(spec: ModelSpec, maxBatch: Int) throws(NetworkError) {
        guard maxBatch >= 1 else { throw .batchSize(count: maxBatch, maxBatch: 1) }
        let layers: [any Layer]
        switch spec.name {
        case "mlp" where spec.layout == ModelSpec.mlp.layout:
            layers = [
                LinearLayer(in: 784, out: 512, relu: true, weightIndex: 0),
                LinearLayer(in: 512, out: 512, relu: true, weightIndex: 2),
                LinearLayer(in: 512, out: 10, relu: false, weightIndex: 4),
            ]
        case "cnn" where spec.layout == ModelSpec.cnn.layout:
            layers = [
                ConvolutionLayer(in: 1, out: 16, height: 28, width: 28, kernel: 5, pad: 2, relu: true, weightIndex: 0),
                MaxPoolLayer(channels: 16, height: 28, width: 28, maxBatch: maxBatch),
                ConvolutionLayer(in: 16, out: 32, height: 14, width: 14, kernel: 5, pad: 2, relu: true, weightIndex: 2),
                MaxPoolLayer(channels: 32, height: 14, width: 14, maxBatch: maxBatch),
                LinearLayer(in: 32 * 7 * 7, out: 128, relu: true, weightIndex: 4),
                LinearLayer(in: 128, out: 10, relu: false, weightIndex: 6),
            ]
        default:
            throw .unsupportedModel(name: spec.name, supported: Self.trainableModels)
        }
        self.spec = spec
        self.maxBatch = maxBatch
        self.layers = layers
        inputSize = layers[0].inputSize
        classCount = layers[layers.count - 1].outputSize
        activations = layers.map { .allocate(capacity: maxBatch * $0.outputSize) }
        let widest = layers.map { max($0.inputSize, $0.outputSize) }.max()!
        gradientScratch = (.allocate(capacity: maxBatch * widest), .allocate(capacity: maxBatch * widest))
    }

    /// The network of the built-in model called `name`.
    public convenience init(modelNamed name: String, maxBatch: Int) throws(NetworkError) {
        guard let spec = ModelSpec.builtIn.first(where: { $0.name == name }) else {
            throw .unsupportedModel(name: name, supported: Self.trainableModels)
        }
        try self.init(spec: spec, maxBatch: maxBatch)
    }

    deinit {
        activations.forEach { $0.deallocate() }
        gradientScratch.0.deallocate()
        gradientScratch.1.deallocate()
    }

    /// Forward and backward over `count` samples: `images` holds `count x inputSize` floats
    /// (row-major), `labels` `count` class indices. Overwrites `gradients` (one buffer per
    /// tensor, layout order) with the mean gradient of the loss over the batch, and returns the
    /// mean loss and the number of samples whose largest logit is their label.
    ///
    /// A batch larger than `maxBatch` runs in passes of up to `maxBatch` samples, the later
    /// passes adding to the parameter gradients: every pass scales by 1/count, so the result
    /// is the batch mean whatever the split (up to Float rounding of the sums), and the scratch
    /// stays the size of one pass whatever the batch.
    ///
    /// `gradientsFinal`, when given, is called during the last pass as soon as a layer's
    /// parameter gradients hold their final values (the last layer first), with that layer's
    /// tensor indices: a caller can send those while the earlier layers are still computed.
    /// The call happens on this thread; the tensors it names are not written again.
    ///
    /// `shouldStop`, when given, is asked before every layer of every pass; once it says true
    /// the call throws `stopped`, the gradients left incomplete (a backup worker whose step
    /// closed without it stops computing at once).
    @discardableResult
    public func lossAndGradient(
        weights: [UnsafeBufferPointer<Float>], images: UnsafeBufferPointer<Float>,
        labels: UnsafeBufferPointer<UInt8>, count: Int, gradients: [UnsafeMutableBufferPointer<Float>],
        shouldStop: (() -> Bool)? = nil, gradientsFinal: ((Range<Int>) -> Void)? = nil
    ) throws(NetworkError) -> (loss: Double, correct: Int) {
        try check(weights.lazy.map(\.count), count: count, limit: nil, images: images.count, labels: labels)
        try checkLayout(gradients.lazy.map(\.count))
        let scale = 1 / Float(count)
        var lossSum = 0.0, correct = 0
        var start = 0
        while start < count {
            let n = min(maxBatch, count - start)
            let x = images.baseAddress! + start * inputSize
            try forward(x, count: n, weights: weights, shouldStop: shouldStop)
            var dy = gradientScratch.0, other = gradientScratch.1
            let result = LayerKernels.softmaxCrossEntropy(
                logits: activations[layers.count - 1], labels: labels.baseAddress! + start, rows: n, classes: classCount,
                gradient: dy, scale: scale)
            for i in layers.indices.reversed() {
                if let shouldStop, shouldStop() { throw .stopped }
                let input = i == 0 ? x : UnsafePointer(activations[i - 1])
                layers[i].backward(input, activations[i], dy: dy, dx: i == 0 ? nil : other, batch: n,
                                   weights: weights, gradients: gradients, accumulate: start > 0)
                if start + n == count, let done = gradientsFinal, !layers[i].parameterTensors.isEmpty {
                    done(layers[i].parameterTensors)
                }
                swap(&dy, &other)
            }
            lossSum += result.loss
            correct += result.correct
            start += n
        }
        return (lossSum / Double(count), correct)
    }

    /// `lossAndGradient` with labels in an array.
    @discardableResult
    public func lossAndGradient(
        weights: [UnsafeBufferPointer<Float>], images: UnsafeBufferPointer<Float>,
        labels: [UInt8], count: Int, gradients: [UnsafeMutableBufferPointer<Float>],
        shouldStop: (() -> Bool)? = nil, gradientsFinal: ((Range<Int>) -> Void)? = nil
    ) throws(NetworkError) -> (loss: Double, correct: Int) {
        try labels.withUnsafeBufferPointer { (l) throws(NetworkError) in
            try lossAndGradient(
                weights: weights, images: images, labels: l, count: count, gradients: gradients,
                shouldStop: shouldStop, gradientsFinal: gradientsFinal)
        }
    }

    /// Mean loss and accuracy over every sample of `images` and `labels` (as many samples as
    /// there are labels), in batches of up to `maxBatch`.
    public func evaluate(
        weights: [UnsafeBufferPointer<Float>], images: UnsafeBufferPointer<Float>, labels: UnsafeBufferPointer<UInt8>
    ) throws(NetworkError) -> (loss: Double, accuracy: Double) {
        let total = labels.count
        guard total > 0 else { throw .batchSize(count: 0, maxBatch: nil) }
        var loss = 0.0, correct = 0
        var start = 0
        while start < total {
            let n = min(maxBatch, total - start)
            let x = UnsafeBufferPointer(rebasing: images[min(images.count, start * inputSize)...])
            let y = UnsafeBufferPointer(rebasing: labels[start..<(start + n)])
            let (l, c) = try logitsLoss(weights: weights, images: x, labels: y, count: n)
            loss += l
            correct += c
            start += n
        }
        return (loss / Double(total), Double(correct) / Double(total))
    }

    /// Mean loss and accuracy of `weights` over a whole data set.
    public func evaluate(weights: [UnsafeBufferPointer<Float>], on dataset: ImageDataset) throws(NetworkError) -> (loss: Double, accuracy: Double) {
        try dataset.images.withUnsafeBufferPointer { (x) throws(NetworkError) in
            try dataset.labels.withUnsafeBufferPointer { (y) throws(NetworkError) in
                try evaluate(weights: weights, images: x, labels: y)
            }
        }
    }

    /// Summed loss and correct count of one batch, forward only.
    func logitsLoss(
        weights: [UnsafeBufferPointer<Float>], images: UnsafeBufferPointer<Float>, labels: UnsafeBufferPointer<UInt8>, count: Int
    ) throws(NetworkError) -> (loss: Double, correct: Int) {
        try check(weights.lazy.map(\.count), count: count, limit: maxBatch, images: images.count, labels: labels)
        try forward(images.baseAddress!, count: count, weights: weights)
        return LayerKernels.softmaxCrossEntropy(
            logits: activations[layers.count - 1], labels: labels.baseAddress!, rows: count, classes: classCount,
            gradient: nil, scale: 0)
    }

    private func forward(
        _ x: UnsafePointer<Float>, count: Int, weights: [UnsafeBufferPointer<Float>], shouldStop: (() -> Bool)? = nil
    ) throws(NetworkError) {
        for i in layers.indices {
            if let shouldStop, shouldStop() { throw .stopped }
            layers[i].forward(i == 0 ? x : UnsafePointer(activations[i - 1]), activations[i], batch: count, weights: weights)
        }
    }

    /// Checks buffer sizes against the layout, the batch against `limit` (if any) and the labels.
    private func check(
        _ counts: some Collection<Int>, count: Int, limit: Int?, images: Int, labels: UnsafeBufferPointer<UInt8>
    ) throws(NetworkError) {
        try checkLayout(counts)
        guard count >= 1, count <= limit ?? Int.max else { throw .batchSize(count: count, maxBatch: limit) }
        guard images >= count * inputSize else { throw .inputTooShort(what: "images", expected: count * inputSize, actual: images) }
        guard labels.count >= count else { throw .inputTooShort(what: "labels", expected: count, actual: labels.count) }
        for i in 0..<count where Int(labels[i]) >= classCount {
            throw .labelOutOfRange(index: i, label: labels[i], classes: classCount)
        }
    }

    /// Checks one buffer per tensor, each of the tensor's size.
    private func checkLayout(_ counts: some Collection<Int>) throws(NetworkError) {
        let tensors = spec.layout.tensors
        guard counts.count == tensors.count else {
            throw .tensorCountMismatch(model: spec.name, expected: tensors.count, actual: counts.count)
        }
        for (t, n) in zip(tensors, counts) where t.count != n {
            throw .bufferMismatch(model: spec.name, tensor: t.name, expected: t.count, actual: n)
        }
    }
}
