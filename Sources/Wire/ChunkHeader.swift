import Core
import NIOCore

/// The 20 bytes at the start of every chunk frame's payload, plus the step from the frame
/// header: which elements of which tensor the data that follows holds.
///
/// | payload offset | size | field                                   |
/// |---------------:|-----:|-----------------------------------------|
/// |              0 |    4 | tensor index in the layout, u32         |
/// |              4 |    8 | first element, u64                      |
/// |             12 |    4 | element count, u32                      |
/// |             16 |    1 | dtype, u8 (``DType``)                    |
/// |             17 |    3 | reserved, 0                             |
/// |             20 |    … | count x dtype size bytes of data        |
public struct ChunkHeader: Sendable, Hashable {
    /// Size of the chunk header inside the payload.
    public static let size = 20
    /// Header bytes before the data: frame header plus chunk header.
    public static let frameOverhead = FrameHeader.size + size

    /// INIT_CHUNK, WEIGHTS_CHUNK or PUSH_CHUNK.
    public var kind: ChunkKind
    /// The frame header's id: the step of the weights or gradient (0 for INIT_CHUNK).
    public var step: UInt64
    public var tensor: UInt32
    /// Index of the first element within the tensor.
    public var offset: UInt64
    public var count: UInt32
    public var dtype: DType

    public init(kind: ChunkKind, step: UInt64, tensor: UInt32, offset: UInt64, count: UInt32, dtype: DType = .float32) {
        self.kind = kind
        self.step = step
        self.tensor = tensor
        self.offset = offset
        self.count = count
        self.dtype = dtype
    }

    public init(kind: ChunkKind, step: UInt64, range: ChunkRange, dtype: DType = .float32) {
        self.init(kind: kind, step: step, tensor: range.tensor, offset: range.offset, count: range.count, dtype: dtype)
    }

    /// Bytes of data after the chunk header.
    public var dataBytes: Int { Int(count) * dtype.size }

    /// The frame header's payload length: chunk header plus data.
    public var payloadLength: Int { Self.size + dataBytes }

    /// Refuses a chunk frame whose payload cannot even hold the chunk header.
    static func checkPayloadLength(of frame: FrameHeader) throws(WireError) {
        guard Int(frame.length) >= size else {
            throw .truncated(field: "\(frame.type) chunk header", needed: size, available: Int(frame.length))
        }
    }

    /// Reads the chunk header at the reader index of `bytes` (exactly ``size`` readable) and
    /// checks it against the frame header, the limits and, when given, the layout.
    static func decode(_ bytes: ByteBuffer, frame: FrameHeader, limits: WireLimits, layout: WireLayout?) throws(WireError) -> ChunkHeader {
        guard let kind = ChunkKind(frame.type) else {
            throw .unexpectedMessage(frame.type, state: "as a chunk frame")
        }
        var reader = PayloadReader(bytes, limits: limits)
        let tensor = try reader.integer("chunk tensor", as: UInt32.self)
        let offset = try reader.integer("chunk offset", as: UInt64.self)
        let count = try reader.integer("chunk count", as: UInt32.self)
        let rawDType = try reader.integer("chunk dtype", as: UInt8.self)
        try reader.reserved("chunk reserved", as: UInt8.self)
        try reader.reserved("chunk reserved", as: UInt16.self)
        guard let dtype = DType(rawValue: rawDType) else { throw .wrongDType(field: "chunk dtype", value: rawDType) }
        let header = ChunkHeader(kind: kind, step: frame.id, tensor: tensor, offset: offset, count: count, dtype: dtype)
        // count <= 2^32 and size <= 4, so this cannot overflow a 64-bit Int.
        guard Int(frame.length) == header.payloadLength else {
            throw .wrongLength(field: "\(frame.type) payload length", value: Int(frame.length), expected: header.payloadLength)
        }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
        if let layout {
            let tensorCount = layout.tensors.count
            guard Int(tensor) < tensorCount else {
                throw .chunkOutOfRange(tensor: tensor, offset: offset, count: count, tensorCount: tensorCount, tensorElements: 0)
            }
            let elements = (try? WireLayout.elementCount(
                layout.tensors[Int(tensor)].spec.shape.map { UInt64(truncatingIfNeeded: $0) }, tensor: Int(tensor), limits: limits)) ?? 0
            guard !overflow, end <= UInt64(elements) else {
                throw .chunkOutOfRange(tensor: tensor, offset: offset, count: count, tensorCount: tensorCount, tensorElements: elements)
            }
        }
        guard !overflow, end <= UInt64(max(limits.maxTensorElements, 0)) else {
            throw .limitExceeded(field: "chunk end element", value: Int(clamping: overflow ? UInt64.max : end), limit: limits.maxTensorElements)
        }
        return header
    }

    /// Appends the chunk header's 20 bytes.
    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(tensor, endianness: .little)
        buffer.writeInteger(offset, endianness: .little)
        buffer.writeInteger(count, endianness: .little)
        buffer.writeInteger(dtype.rawValue)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt16(0), endianness: .little)
    }
}

/// What a chunk frame's data is.
public enum ChunkKind: Sendable, Hashable, CaseIterable {
    /// Initial values after INIT.
    case initValues
    /// Weights after WEIGHTS.
    case weights
    /// Gradient after PUSH_BEGIN.
    case push

    public var messageType: MessageType {
        switch self {
        case .initValues: .initChunk
        case .weights: .weightsChunk
        case .push: .pushChunk
        }
    }

    public init?(_ type: MessageType) {
        switch type {
        case .initChunk: self = .initValues
        case .weightsChunk: self = .weights
        case .pushChunk: self = .push
        default: return nil
        }
    }
}
