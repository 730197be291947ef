/// One named tensor of a model's layout: what the server stores, the wire keys by index, and the
/// optimizer updates. Element type is always Float32 at rest.
public struct TensorSpec: Sendable, Hashable, Codable {
    /// Name as the model gives it, e.g. `fc1.weight`.
    public var name: String
    /// Dimensions, outermost first (PyTorch order: `[out, in]` for a linear weight).
    public var shape: [Int]

    public init(name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
    }

    /// Number of elements (1 for a scalar with an empty shape).
    public var count: Int { shape.reduce(1, *) }
    /// Number of dimensions.
    public var rank: Int { shape.count }
}

/// The ordered tensors of one model. A tensor's key on the wire is its index here.
public struct Layout: Sendable, Hashable, Codable {
    public var tensors: [TensorSpec]

    public init(_ tensors: [TensorSpec]) {
        self.tensors = tensors
    }

    /// Total number of parameters.
    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.count } }

    /// A stable 64-bit FNV-1a hash over names and shapes, so a worker and a checkpoint can check
    /// they mean the same model.
    public var hash: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        func mix64(_ v: UInt64) {
            for i in 0..<8 { mix(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
        }
        mix64(UInt64(tensors.count))
        for t in tensors {
            let bytes = Array(t.name.utf8)
            mix64(UInt64(bytes.count))
            bytes.forEach(mix)
            mix64(UInt64(t.shape.count))
            t.shape.forEach { mix64(UInt64(truncatingIfNeeded: $0)) }
        }
        return h
    }
}
