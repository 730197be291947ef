/// A k x k convolution with stride 1 and `pad` zeros each side (output the input's size),
/// weight `[out, in, k, k]` (PyTorch's layout), optionally followed by ReLU. One GEMM per
/// sample over an im2col buffer of `[in * k * k, height * width]`.
final class ConvolutionLayer: Layer {
    let inChannels: Int, outChannels: Int, height: Int, width: Int, kernel: Int, pad: Int
    let relu: Bool
    let weightIndex: Int
    /// The weight, then the bias.
    var parameterTensors: Range<Int> { weightIndex..<weightIndex + 2 }
    let inputSize: Int
    let outputSize: Int
    /// im2col of one sample, and the gradient with respect to it.
    private let col: UnsafeMutablePointer<Float>
    private let colGradient: UnsafeMutablePointer<Float>
    private var colCount: Int { inChannels * kernel * kernel * height * width }

    init(in inChannels: Int, out outChannels: Int, height: Int, width: Int, kernel: Int, pad: Int, relu: Bool, weightIndex: Int) {
        precondition(kernel == 2 * pad + 1, "stride-1 convolution that keeps the size")
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.height = height
        self.width = width
        self.kernel = kernel
        self.pad = pad
        self.relu = relu
        self.weightIndex = weightIndex
        inputSize = inChannels * height * width
        outputSize = outChannels * height * width
        let n = inChannels * kernel * kernel * height * width
        col = .allocate(capacity: n)
        colGradient = .allocate(capacity: n)
    }

    deinit {
        col.deallocate()
        colGradient.deallocate()
    }

    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, weights: [UnsafeBufferPointer<Float>]) {
        let w = weights[weightIndex].baseAddress!, b = weights[weightIndex + 1].baseAddress!
        let plane = height * width, taps = inChannels * kernel * kernel
        for s in 0..<batch {
            LayerKernels.im2col(x + s * inputSize, channels: inChannels, height: height, width: width,
                                kernel: kernel, pad: pad, into: col)
            let ys = y + s * outputSize
            BLAS.sgemm(transA: false, transB: false, m: outChannels, n: plane, k: taps, a: w, b: col, c: ys)
            LayerKernels.addChannelBias(ys, channels: outChannels, plane: plane, bias: b, relu: relu)
        }
    }

    func backward(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
        dx: UnsafeMutablePointer<Float>?, batch: Int,
        weights: [UnsafeBufferPointer<Float>], gradients: [UnsafeMutableBufferPointer<Float>], accumulate: Bool
    ) {
        if relu { LayerKernels.reluMask(dy, output: y, count: batch * outputSize) }
        let w = weights[weightIndex].baseAddress!
        let dw = gradients[weightIndex], db = gradients[weightIndex + 1]
        if !accumulate {
            dw.update(repeating: 0)
            db.update(repeating: 0)
        }
        let plane = height * width, taps = inChannels * kernel * kernel
        for s in 0..<batch {
            let dys = dy + s * outputSize
            LayerKernels.im2col(x + s * inputSize, channels: inChannels, height: height, width: width,
                                kernel: kernel, pad: pad, into: col)
            // dW += dY_s col^T: [out, plane] x [plane, taps].
            BLAS.sgemm(transA: false, transB: true, m: outChannels, n: taps, k: plane,
                       a: dys, b: col, beta: 1, c: dw.baseAddress!)
            LayerKernels.accumulatePlaneSums(dys, channels: outChannels, plane: plane, into: db.baseAddress!)
            if let dx {
                // dcol = W^T dY_s: [taps, out] x [out, plane], folded back onto the input.
                BLAS.sgemm(transA: true, transB: false, m: taps, n: plane, k: outChannels,
                           a: w, b: dys, c: colGradient)
                LayerKernels.col2im(colGradient, channels: inChannels, height: height, width: width,
                                    kernel: kernel, pad: pad, into: dx + s * inputSize)
            }
        }
    }
}
