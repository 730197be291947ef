import NIOCore

/// The streaming frame parser: a state machine fed `ByteBuffer`s split anywhere, which needs no
/// `Channel` (DESIGN.md §4).
///
/// Control frames are gathered up to their (limit-checked) length and handed to the sink as
/// ``Message``s; a frame that is already whole in the buffer is decoded from a slice without a
/// copy. Chunk frames are not gathered: after their headers, the data goes to the sink straight
/// from the buffer it arrived in, in whole elements; an element split between two reads waits
/// in a 4-byte carry. Use it inside a channel handler's `channelRead`:
///
/// ```swift
/// var buffer = unwrapInboundIn(data)
/// do { try parser.parse(&buffer, into: &sink) }
/// catch { send(.error(code: error.code, message: error.description, requestID: 0)); close() }
/// ```
///
/// After a ``WireError`` the stream cannot be resynchronised: the parser stays failed and
/// rethrows that error.
public struct FrameParser {
    /// The limits every header and payload is checked against.
    public var limits: WireLimits
    /// When set, chunk frames are checked against it (tensor index and element range) before
    /// the sink sees them; otherwise only against ``WireLimits/maxTensorElements``.
    public var layout: WireLayout?
    /// Whether the next frame must be HELLO (true on a server's fresh connection).
    public private(set) var awaitingHello: Bool

    private enum State {
        case header
        case controlPayload(FrameHeader)
        case chunkHeader(FrameHeader)
        /// `next` is the tensor element the next delivered byte belongs to.
        case chunkData(ChunkHeader, next: Int, remainingBytes: Int)
    }

    private var state = State.header
    /// Header bytes that arrived split across reads.
    private var staging: ByteBuffer
    /// A control payload that arrived split across reads.
    private var payload: ByteBuffer
    /// Bytes of one element split across reads, little-endian in the low bytes.
    private var carry: UInt32 = 0
    private var carryCount = 0
    private var failure: WireError?

    /// - Parameter requireHello: refuse any first frame but HELLO (server side).
    public init(limits: WireLimits = .default, layout: WireLayout? = nil, requireHello: Bool = false) {
        self.limits = limits
        self.layout = layout
        self.awaitingHello = requireHello
        let allocator = ByteBufferAllocator()
        self.staging = allocator.buffer(capacity: ChunkHeader.size)
        self.payload = allocator.buffer(capacity: 0)
    }

    /// True between frames: nothing of a partial frame is held.
    public var isAtFrameBoundary: Bool {
        if case .header = state { return staging.readableBytes == 0 }
        return false
    }

    /// Consumes every readable byte of `buffer`, calling `sink` for what it completes.
    public mutating func parse<Sink: FrameSink>(_ buffer: inout ByteBuffer, into sink: inout Sink) throws(WireError) {
        if let failure { throw failure }
        do {
            try run(&buffer, &sink)
        } catch {
            failure = error
            throw error
        }
    }

    /// The closure form of ``parse(_:into:)``.
    public mutating func parse(_ buffer: inout ByteBuffer, _ handle: (FrameEvent) throws(WireError) -> Void) throws(WireError) {
        try withoutActuallyEscaping(handle) { (escapable) throws(WireError) in
            var sink = ClosureSink(handle: escapable)
            try parse(&buffer, into: &sink)
        }
    }

    /// Call at end of stream: throws ``WireError/truncated(field:needed:available:)`` if the
    /// stream stopped inside a frame.
    public func finish() throws(WireError) {
        if let failure { throw failure }
        switch state {
        case .header:
            guard staging.readableBytes == 0 else {
                throw .truncated(field: "frame header", needed: FrameHeader.size, available: staging.readableBytes)
            }
        case .controlPayload(let frame):
            throw .truncated(field: "\(frame.type) payload", needed: Int(frame.length), available: payload.readableBytes)
        case .chunkHeader(let frame):
            throw .truncated(field: "\(frame.type) chunk header", needed: ChunkHeader.size, available: staging.readableBytes)
        case .chunkData(let chunk, _, let remaining):
            throw .truncated(
                field: "\(chunk.kind.messageType) data", needed: chunk.dataBytes,
                available: chunk.dataBytes - remaining + carryCount)
        }
    }

    private mutating func run<Sink: FrameSink>(_ buffer: inout ByteBuffer, _ sink: inout Sink) throws(WireError) {
        while true {
            switch state {
            case .header:
                guard let bytes = gather(FrameHeader.size, from: &buffer),
                    let frame = try FrameHeader.peek(bytes, limits: limits)
                else { return }
                if awaitingHello {
                    guard frame.type == .hello else { throw .handshakeRequired(found: frame.type) }
                    awaitingHello = false
                }
                if frame.type.isChunk {
                    try ChunkHeader.checkPayloadLength(of: frame)
                    state = .chunkHeader(frame)
                } else {
                    state = .controlPayload(frame)
                }

            case .controlPayload(let frame):
                let length = Int(frame.length)
                let message: Message
                if payload.readableBytes == 0, let whole = buffer.readSlice(length: length) {
                    message = try Message.decode(frame: frame, payload: whole, limits: limits)
                } else {
                    if payload.readableBytes == 0 {
                        payload.clear()
                        payload.reserveCapacity(length)
                    }
                    let take = min(length - payload.readableBytes, buffer.readableBytes)
                    if take > 0, var part = buffer.readSlice(length: take) { payload.writeBuffer(&part) }
                    guard let whole = payload.readSlice(length: length) else { return }
                    message = try Message.decode(frame: frame, payload: whole, limits: limits)
                }
                state = .header
                try sink.receive(message)

            case .chunkHeader(let frame):
                guard let bytes = gather(ChunkHeader.size, from: &buffer) else { return }
                let chunk = try ChunkHeader.decode(bytes, frame: frame, limits: limits, layout: layout)
                // decode bounded offset + count by maxTensorElements, so the offset fits in Int.
                state = .chunkData(chunk, next: Int(chunk.offset), remainingBytes: chunk.dataBytes)
                try sink.beginChunk(chunk)

            case .chunkData(let chunk, var next, var remaining):
                let size = chunk.dtype.size
                if carryCount > 0 {
                    fillCarry(from: &buffer, upTo: size)
                    guard carryCount == size else { return }
                    var failure: WireError?
                    withUnsafeBytes(of: carry.littleEndian) { raw in
                        do throws(WireError) {
                            try sink.chunkData(UnsafeRawBufferPointer(rebasing: raw.prefix(size)), header: chunk, firstElement: next)
                        } catch { failure = error }
                    }
                    if let failure { throw failure }
                    carry = 0
                    carryCount = 0
                    next += 1
                    remaining -= size
                }
                let available = min(buffer.readableBytes, remaining)
                let whole = available - available % size
                if whole > 0 {
                    var failure: WireError?
                    buffer.withUnsafeReadableBytes { raw in
                        do throws(WireError) {
                            try sink.chunkData(UnsafeRawBufferPointer(rebasing: raw.prefix(whole)), header: chunk, firstElement: next)
                        } catch { failure = error }
                    }
                    if let failure { throw failure }
                    buffer.moveReaderIndex(forwardBy: whole)
                    next += whole / size
                    remaining -= whole
                }
                if remaining == 0 {
                    state = .header
                    try sink.endChunk(chunk)
                    continue
                }
                // Fewer than `size` bytes are left in this read: keep them for the next one.
                fillCarry(from: &buffer, upTo: size)
                state = .chunkData(chunk, next: next, remainingBytes: remaining)
                return
            }
        }
    }

    /// Returns the next `count` bytes once they have all arrived, without copying when they
    /// arrived together.
    private mutating func gather(_ count: Int, from buffer: inout ByteBuffer) -> ByteBuffer? {
        if staging.readableBytes == 0 {
            if let whole = buffer.readSlice(length: count) { return whole }
            staging.clear()
        }
        let take = min(count - staging.readableBytes, buffer.readableBytes)
        if take > 0, var part = buffer.readSlice(length: take) { staging.writeBuffer(&part) }
        return staging.readSlice(length: count)
    }

    private mutating func fillCarry(from buffer: inout ByteBuffer, upTo size: Int) {
        while carryCount < size, let byte = buffer.readInteger(as: UInt8.self) {
            carry |= UInt32(byte) << (8 * UInt32(carryCount))
            carryCount += 1
        }
    }
}
