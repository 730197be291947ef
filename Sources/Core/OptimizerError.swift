/// Why a step was refused. A refused step changes no weight and no momentum.
public enum OptimizerError: Error, Equatable, CustomStringConvertible {
    /// A gradient holds NaN or infinity; the whole step is skipped.
    case nonFiniteGradient(tensor: String, index: Int, value: Float)
    /// A caller-owned buffer does not have the element count the layout gives.
    case bufferSizeMismatch(tensor: String, role: String, expected: Int, actual: Int)
    /// The caller passed buffers for a different number of tensors than the layout has.
    case tensorCountMismatch(role: String, expected: Int, actual: Int)

    public var description: String {
        switch self {
        case .nonFiniteGradient(let t, let i, let v):
            return "non-finite gradient in tensor '\(t)' at element \(i) (value \(v)); step skipped, weights unchanged"
        case .bufferSizeMismatch(let t, let role, let e, let a):
            return "\(role) buffer for tensor '\(t)' holds \(a) elements, layout says \(e)"
        case .tensorCountMismatch(let role, let e, let a):
            return "\(a) \(role) buffers given, layout has \(e) tensors"
        }
    }
}
