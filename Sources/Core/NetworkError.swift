/// A network that cannot be built, or a call whose buffers do not fit it.
public enum NetworkError: Error, Equatable, CustomStringConvertible {
    /// No layers exist for this model (only the built-in `mlp` and `cnn` have them).
    case unsupportedModel(name: String, supported: [String])
    /// The batch is empty, or larger than a call that takes one pass was sized for (`maxBatch`;
    /// nil where any size >= 1 runs, in passes).
    case batchSize(count: Int, maxBatch: Int?)
    /// The weight or gradient buffers do not match the layout.
    case bufferMismatch(model: String, tensor: String, expected: Int, actual: Int)
    /// A different number of weight or gradient buffers than the layout has tensors.
    case tensorCountMismatch(model: String, expected: Int, actual: Int)
    /// Fewer image floats or labels than `count` samples need.
    case inputTooShort(what: String, expected: Int, actual: Int)
    /// A label outside `0..<classes`.
    case labelOutOfRange(index: Int, label: UInt8, classes: Int)
    /// The caller's `shouldStop` said to stop; the gradients are incomplete.
    case stopped

    public var description: String {
        switch self {
        case .unsupportedModel(let name, let supported):
            return "model \"\(name)\" has no layers to train; trainable models: \(supported.joined(separator: ", "))"
        case .batchSize(let count, let maxBatch):
            return "batch of \(count) samples; this network takes \(maxBatch.map { "1...\($0)" } ?? "1 or more")"
        case .bufferMismatch(let model, let tensor, let expected, let actual):
            return "model \(model): buffer for tensor '\(tensor)' holds \(actual) elements, layout says \(expected)"
        case .tensorCountMismatch(let model, let expected, let actual):
            return "model \(model): \(actual) buffers given, layout has \(expected) tensors"
        case .inputTooShort(let what, let expected, let actual):
            return "\(what): \(actual) elements given, the batch needs \(expected)"
        case .labelOutOfRange(let index, let label, let classes):
            return "label \(label) of sample \(index) is outside 0..<\(classes)"
        case .stopped:
            return "stopped by the caller before the gradient was complete"
        }
    }
}
