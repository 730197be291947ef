/// Element type of tensor data on the wire. Tensors are float32 at rest; bfloat16 and float16
/// exist to compress gradients in flight.
public enum DType: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case float32 = 1
    case bfloat16 = 2
    case float16 = 3

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32: 4
        case .bfloat16, .float16: 2
        }
    }

    public var description: String {
        switch self {
        case .float32: "float32"
        case .bfloat16: "bfloat16"
        case .float16: "float16"
        }
    }
}
