/// A model that cannot be used as asked.
public enum ModelSpecError: Error, Equatable, CustomStringConvertible {
    /// No built-in model has this name.
    case unknownModel(name: String, known: [String])
    /// The caller passed buffers that do not match the layout.
    case bufferMismatch(model: String, tensor: String, expected: Int, actual: Int)
    /// The caller passed buffers for a different number of tensors than the layout has.
    case tensorCountMismatch(model: String, expected: Int, actual: Int)

    public var description: String {
        switch self {
        case .unknownModel(let name, let known):
            return "unknown model \"\(name)\"; known models: \(known.map { "\"\($0)\"" }.joined(separator: ", "))"
        case .bufferMismatch(let model, let tensor, let expected, let actual):
            return "model \(model): buffer for tensor '\(tensor)' holds \(actual) elements, layout says \(expected)"
        case .tensorCountMismatch(let model, let expected, let actual):
            return "model \(model): \(actual) buffers given, layout has \(expected) tensors"
        }
    }
}
