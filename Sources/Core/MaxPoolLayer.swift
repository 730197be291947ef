/// 2x2 max-pooling with stride 2; remembers each window's argmax for the backward pass.
final class MaxPoolLayer: Layer {
    let channels: Int, height: Int, width: Int
    let inputSize: Int
    let outputSize: Int
    var parameterTensors: Range<Int> { 0..<0 }
    private let argmax: UnsafeMutablePointer<Int32>

    init(channels: Int, height: Int, width: Int, maxBatch: Int) {
        precondition(height % 2 == 0 && width % 2 == 0, "even sizes")
        self.channels = channels
        self.height = height
        self.width = width
        inputSize = channels * height * width
        outputSize = inputSize / 4
        argmax = .allocate(capacity: maxBatch * outputSize)
    }

    deinit {
        argmax.deallocate()
    }

    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, weights: [UnsafeBufferPointer<Float>]) {
        LayerKernels.maxPool2(x, planes: batch * channels, height: height, width: width, into: y, argmax: argmax)
    }

    func backward(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
        dx: UnsafeMutablePointer<Float>?, batch: Int,
        weights: [UnsafeBufferPointer<Float>], gradients: [UnsafeMutableBufferPointer<Float>], accumulate: Bool
    ) {
        guard let dx else { return }
        LayerKernels.maxPool2Backward(dy, argmax: argmax, planes: batch * channels, height: height, width: width, into: dx)
    }
}
