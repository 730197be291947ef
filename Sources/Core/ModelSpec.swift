/// A model as the server sees it: its name, its tensors in order, and how each starts out.
/// Forward and backward live with the layers; this is all the server needs to own the weights.
public struct ModelSpec: Sendable, Hashable {
    /// Name as a job config spells it, e.g. `mlp`.
    public var name: String
    /// Tensors in order; a tensor's index here is its key on the wire.
    public var layout: Layout
    /// How each tensor of `layout` starts out, index for index.
    public var initializers: [TensorInit]

    public init(name: String, layout: Layout, initializers: [TensorInit]) {
        precondition(layout.tensors.count == initializers.count, "one initializer per tensor")
        self.name = name
        self.layout = layout
        self.initializers = initializers
    }

    /// The built-in models, in the order error messages list them.
    public static let builtIn: [ModelSpec] = [.mlp, .cnn, .resnet50Shapes]

    /// The names `named(_:)` accepts.
    public static var builtInNames: [String] { builtIn.map(\.name) }

    /// The built-in model called `name`, or an error listing the known names.
    public static func named(_ name: String) throws(ModelSpecError) -> ModelSpec {
        guard let spec = builtIn.first(where: { $0.name == name }) else {
            throw .unknownModel(name: name, known: builtInNames)
        }
        return spec
    }

    /// The seed tensor `index` draws from: the `(index + 1)`-th output of `SplitMix64(seed:)`.
    /// Each tensor has its own stream, so tensors can be initialised alone or in parallel and
    /// still come out the same.
    public static func tensorSeed(jobSeed: UInt64, index: Int) -> UInt64 {
        var g = SplitMix64(seed: jobSeed)
        for _ in 0..<index { _ = g.next() }
        return g.next()
    }

    /// Writes the initial values of tensor `index` into `buffer` (row-major, one draw per
    /// element in order), deterministic in `seed`.
    public func initialize(tensor index: Int, seed: UInt64, into buffer: UnsafeMutableBufferPointer<Float>) throws(ModelSpecError) {
        let spec = layout.tensors[index]
        guard buffer.count == spec.count else {
            throw .bufferMismatch(model: name, tensor: spec.name, expected: spec.count, actual: buffer.count)
        }
        switch initializers[index] {
        case .constant(let value):
            buffer.initialize(repeating: value)
        case .uniform(let bound):
            var g = SplitMix64(seed: Self.tensorSeed(jobSeed: seed, index: index))
            for i in buffer.indices { buffer[i] = g.nextFloat(in: -bound...bound) }
        }
    }

    /// Writes the initial values of every tensor into caller-owned buffers, one per tensor in
    /// layout order.
    public func initialize(seed: UInt64, into buffers: [UnsafeMutableBufferPointer<Float>]) throws(ModelSpecError) {
        guard buffers.count == layout.tensors.count else {
            throw .tensorCountMismatch(model: name, expected: layout.tensors.count, actual: buffers.count)
        }
        for (i, b) in buffers.enumerated() { try initialize(tensor: i, seed: seed, into: b) }
    }

    /// The initial values of every tensor, in layout order.
    public func initialValues(seed: UInt64) -> [[Float]] {
        layout.tensors.indices.map { i in
            [Float](unsafeUninitializedCapacity: layout.tensors[i].count) { buffer, count in
                // The buffer has exactly the layout's size, so this cannot throw.
                try! initialize(tensor: i, seed: seed, into: buffer)
                count = buffer.count
            }
        }
    }
}
