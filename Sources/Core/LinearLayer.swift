/// y = x W^T + b (W is `[out, in]`, PyTorch's layout), optionally followed by ReLU.
final class LinearLayer: Layer {
    let inputSize: Int
    let outputSize: Int
    let relu: Bool
    /// Index of the weight tensor; the bias follows it.
    let weightIndex: Int
    /// The weight, then the bias.
    var parameterTensors: Range<Int> { weightIndex..<weightIndex + 2 }

    init(in inputSize: Int, out outputSize: Int, relu: Bool, weightIndex: Int) {
        self.inputSize = inputSize
        self.outputSize = outputSize
        self.relu = relu
        self.weightIndex = weightIndex
    }

    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, weights: [UnsafeBufferPointer<Float>]) {
        BLAS.sgemm(transA: false, transB: true, m: batch, n: outputSize, k: inputSize,
                   a: x, b: weights[weightIndex].baseAddress!, c: y)
        LayerKernels.addBias(y, rows: batch, width: outputSize, bias: weights[weightIndex + 1].baseAddress!, relu: relu)
    }

    func backward(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
        dx: UnsafeMutablePointer<Float>?, batch: Int,
        weights: [UnsafeBufferPointer<Float>], gradients: [UnsafeMutableBufferPointer<Float>], accumulate: Bool
    ) {
        if relu { LayerKernels.reluMask(dy, output: y, count: batch * outputSize) }
        // dW (+)= dY^T X: [out, batch] x [batch, in].
        BLAS.sgemm(transA: true, transB: false, m: outputSize, n: inputSize, k: batch,
                   a: dy, b: x, beta: accumulate ? 1 : 0, c: gradients[weightIndex].baseAddress!)
        LayerKernels.columnSums(dy, rows: batch, width: outputSize, into: gradients[weightIndex + 1].baseAddress!,
                                accumulate: accumulate)
        if let dx {
            // dX = dY W: [batch, out] x [out, in].
            BLAS.sgemm(transA: false, transB: false, m: batch, n: inputSize, k: outputSize,
                       a: dy, b: weights[weightIndex].baseAddress!, c: dx)
        }
    }
}
