/// One layer of a `Network`: forward and backward over a batch of row-major samples, weights
/// and gradients taken from the caller's per-tensor buffers by index. Layers own their scratch.
protocol Layer: AnyObject {
    /// Floats per sample going in and coming out.
    var inputSize: Int { get }
    var outputSize: Int { get }
    /// The layout tensors this layer's parameters occupy (empty for a layer without any).
    var parameterTensors: Range<Int> { get }
    /// y = layer(x) for `batch` samples.
    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, weights: [UnsafeBufferPointer<Float>])
    /// Given x, y and dL/dy (which it may overwrite), writes dL/dx when `dx` is given and
    /// writes its parameters' gradients: over what they held, or added to it when `accumulate`
    /// (the later passes of a batch larger than the network's scratch).
    func backward(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
        dx: UnsafeMutablePointer<Float>?, batch: Int,
        weights: [UnsafeBufferPointer<Float>], gradients: [UnsafeMutableBufferPointer<Float>], accumulate: Bool)
}
