import Core
import NIOCore

/// One tensor as the wire describes it: name and shape (``Core/TensorSpec``), element type at
/// rest, and whether LARS adapts its rate (trust ratio and weight decay) or leaves it plain.
public struct WireTensor: Sendable, Hashable {
    public var spec: TensorSpec
    public var dtype: DType
    public var adapt: Bool

    public init(spec: TensorSpec, dtype: DType = .float32, adapt: Bool) {
        self.spec = spec
        self.dtype = dtype
        self.adapt = adapt
    }
}

/// The layout WELCOME and INIT carry: the ordered tensors of the model. A tensor's key on the
/// wire is its index here.
public struct WireLayout: Sendable, Hashable {
    public var tensors: [WireTensor]

    public init(_ tensors: [WireTensor]) {
        self.tensors = tensors
    }

    /// A layout of float32 tensors, adapting those the predicate picks (default: rank >= 2).
    public init(_ layout: Layout, adapt: (TensorSpec) -> Bool = { $0.rank >= 2 }) {
        self.tensors = layout.tensors.map { WireTensor(spec: $0, adapt: adapt($0)) }
    }

    /// Names and shapes only, as Core keeps them.
    public var layout: Layout { Layout(tensors.map(\.spec)) }

    /// ``Core/Layout/hash`` of the names and shapes: the value HELLO may carry.
    public var hash: UInt64 { layout.hash }

    /// The server's chunk grid (WELCOME's `chunk_elements`): every tensor split into chunks of
    /// `chunkElements` elements in layout order, the last one shorter, and one empty chunk for
    /// an empty tensor. Each push chunk must be exactly one grid chunk, so a resend after a
    /// reconnect lines up with what the server already added; server and client both use this.
    public func grid(chunkElements: Int) -> [ChunkRange] {
        let perChunk = min(max(1, chunkElements), Int(UInt32.max))
        var ranges: [ChunkRange] = []
        for (index, tensor) in tensors.enumerated() {
            let count = tensor.spec.count
            var offset = 0
            repeat {
                let n = min(perChunk, count - offset)
                ranges.append(ChunkRange(tensor: UInt32(index), offset: UInt64(offset), count: UInt32(n)))
                offset += n
            } while offset < count
        }
        return ranges
    }

    /// The chunks that cover every tensor in order, each at most `chunkBytes` of data (at
    /// least one element); a chunk never spans two tensors (one key per tensor), and empty
    /// tensors have none.
    public func chunks(chunkBytes: Int = 4 << 20, dtype: DType = .float32) -> [ChunkRange] {
        grid(chunkElements: chunkBytes / dtype.size).filter { $0.count > 0 }
    }
}

/// Which elements of which tensor one chunk frame carries.
public struct ChunkRange: Sendable, Hashable {
    public var tensor: UInt32
    public var offset: UInt64
    public var count: UInt32

    public init(tensor: UInt32, offset: UInt64, count: UInt32) {
        self.tensor = tensor
        self.offset = offset
        self.count = count
    }
}

extension WireLayout {
    /// Layout encoding (docs/wire-protocol.md, "Layout"): u32 tensor count, u64 layout hash,
    /// then per tensor u16 name length, name, u8 dtype, u8 flags (bit 0 adapt), u8 rank,
    /// u8 reserved, rank x u64 dimensions.
    func write(to buffer: inout ByteBuffer, limits: WireLimits) throws(WireError) {
        guard tensors.count <= limits.maxTensors else {
            throw .limitExceeded(field: "layout tensor count", value: tensors.count, limit: limits.maxTensors)
        }
        buffer.writeInteger(UInt32(tensors.count), endianness: .little)
        buffer.writeInteger(hash, endianness: .little)
        for (index, tensor) in tensors.enumerated() {
            let spec = tensor.spec
            guard !spec.name.isEmpty else {
                throw .malformed(field: "tensor \(index) name", value: "empty", expected: "1 or more bytes")
            }
            try buffer.writeString16(spec.name, field: "tensor \(index) name", limit: limits.maxNameBytes)
            guard spec.rank <= limits.maxRank else {
                throw .limitExceeded(field: "tensor \(index) rank", value: spec.rank, limit: limits.maxRank)
            }
            if let negative = spec.shape.first(where: { $0 < 0 }) {
                throw .malformed(field: "tensor \(index) dimension", value: "\(negative)", expected: ">= 0")
            }
            _ = try Self.elementCount(spec.shape.map { UInt64($0) }, tensor: index, limits: limits)
            buffer.writeInteger(tensor.dtype.rawValue)
            buffer.writeInteger(UInt8(tensor.adapt ? 1 : 0))
            buffer.writeInteger(UInt8(spec.rank))
            buffer.writeInteger(UInt8(0))
            for dim in spec.shape { buffer.writeInteger(UInt64(dim), endianness: .little) }
        }
    }

    static func read(from reader: inout PayloadReader) throws(WireError) -> WireLayout {
        let limits = reader.limits
        let count = Int(try reader.integer("layout tensor count", as: UInt32.self))
        guard count <= limits.maxTensors else {
            throw .limitExceeded(field: "layout tensor count", value: count, limit: limits.maxTensors)
        }
        let declaredHash = try reader.integer("layout hash", as: UInt64.self)
        // Each tensor takes at least 6 bytes, so a count the payload cannot hold fails here
        // before the array is reserved.
        guard count <= reader.buffer.readableBytes / 6 else {
            throw .truncated(field: "layout tensors", needed: count * 6, available: reader.buffer.readableBytes)
        }
        var tensors: [WireTensor] = []
        tensors.reserveCapacity(count)
        for index in 0..<count {
            let name = try reader.string16("tensor \(index) name", limit: limits.maxNameBytes)
            guard !name.isEmpty else {
                throw .malformed(field: "tensor \(index) name", value: "empty", expected: "1 or more bytes")
            }
            let rawDType = try reader.integer("tensor \(index) dtype", as: UInt8.self)
            guard let dtype = DType(rawValue: rawDType) else {
                throw .wrongDType(field: "tensor \(index) dtype", value: rawDType)
            }
            let flags = try reader.integer("tensor \(index) flags", as: UInt8.self)
            guard flags & ~1 == 0 else {
                throw .malformed(field: "tensor \(index) flags", value: "\(flags)", expected: "0 or 1 (bit 0: adapt)")
            }
            let rank = Int(try reader.integer("tensor \(index) rank", as: UInt8.self))
            guard rank <= limits.maxRank else {
                throw .limitExceeded(field: "tensor \(index) rank", value: rank, limit: limits.maxRank)
            }
            try reader.reserved("tensor \(index) reserved", as: UInt8.self)
            var dims: [UInt64] = []
            for d in 0..<rank { dims.append(try reader.integer("tensor \(index) dim \(d)", as: UInt64.self)) }
            _ = try elementCount(dims, tensor: index, limits: limits)
            // elementCount bounded every dimension by maxTensorElements, so each fits in Int.
            let shape = dims.map { Int(truncatingIfNeeded: $0) }
            tensors.append(WireTensor(spec: TensorSpec(name: name, shape: shape), dtype: dtype, adapt: flags & 1 == 1))
        }
        let layout = WireLayout(tensors)
        guard layout.hash == declaredHash else {
            throw .layoutMismatch(expected: layout.hash, found: declaredHash)
        }
        return layout
    }

    /// The product of `dims`, refused when it (or any partial product) passes maxTensorElements.
    static func elementCount(_ dims: [UInt64], tensor: Int, limits: WireLimits) throws(WireError) -> Int {
        let limit = UInt64(max(limits.maxTensorElements, 0))
        var product: UInt64 = 1
        var anyZero = false
        for dim in dims {
            guard dim <= limit else {
                throw .limitExceeded(field: "tensor \(tensor) dimension", value: Int(clamping: dim), limit: limits.maxTensorElements)
            }
            if dim == 0 { anyZero = true; continue }
            let (next, overflow) = product.multipliedReportingOverflow(by: dim)
            guard !overflow, next <= limit else {
                throw .limitExceeded(field: "tensor \(tensor) element count", value: Int(clamping: next), limit: limits.maxTensorElements)
            }
            product = next
        }
        return anyZero ? 0 : Int(product)
    }
}
