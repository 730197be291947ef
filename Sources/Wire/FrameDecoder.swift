import NIOCore

/// A whole frame as ``FrameDecoder`` produces it.
public enum Frame: Sendable, Hashable {
    case message(Message)
    /// A chunk frame with its data gathered into one buffer.
    case chunk(ChunkHeader, data: ByteBuffer)
}

/// An NIO `ByteToMessageDecoder` for control frames, built on the same header and payload
/// decoding as ``FrameParser``.
///
/// It also decodes chunk frames whole (data gathered in the decoder's cumulation buffer), which
/// suits tests and small tensors; bulk tensor traffic should go through ``FrameParser``, which
/// hands data to its sink without that extra copy.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    public var limits: WireLimits
    /// When set, chunk frames are checked against it (see ``FrameParser/layout``).
    public var layout: WireLayout?
    /// Whether the next frame must be HELLO.
    public private(set) var awaitingHello: Bool

    public init(limits: WireLimits = .default, layout: WireLayout? = nil, requireHello: Bool = false) {
        self.limits = limits
        self.layout = layout
        self.awaitingHello = requireHello
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try decodeFrame(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while let frame = try decodeFrame(&buffer) {
            context.fireChannelRead(Self.wrapInboundOut(frame))
        }
        if buffer.readableBytes > 0 {
            let needed = (try? FrameHeader.peek(buffer, limits: limits)).flatMap { $0 }.map { FrameHeader.size + Int($0.length) }
            throw WireError.truncated(field: "frame", needed: needed ?? FrameHeader.size, available: buffer.readableBytes)
        }
        return .needMoreData
    }

    /// Decodes the frame at the reader index of `buffer` and moves past it, or returns nil
    /// (consuming nothing) while the frame is incomplete. Errors are raised as soon as the
    /// bytes that show them have arrived.
    public mutating func decodeFrame(_ buffer: inout ByteBuffer) throws(WireError) -> Frame? {
        guard let header = try FrameHeader.peek(buffer, limits: limits) else { return nil }
        if awaitingHello, header.type != .hello { throw .handshakeRequired(found: header.type) }
        var chunk: ChunkHeader?
        if header.type.isChunk {
            try ChunkHeader.checkPayloadLength(of: header)
            guard let bytes = buffer.getSlice(at: buffer.readerIndex + FrameHeader.size, length: ChunkHeader.size) else {
                return nil
            }
            chunk = try ChunkHeader.decode(bytes, frame: header, limits: limits, layout: layout)
        }
        guard buffer.readableBytes >= FrameHeader.size + Int(header.length) else { return nil }
        let start = buffer.readerIndex
        buffer.moveReaderIndex(forwardBy: FrameHeader.size)
        guard var payload = buffer.readSlice(length: Int(header.length)) else {
            buffer.moveReaderIndex(to: start)
            return nil
        }
        let frame: Frame
        if let chunk {
            payload.moveReaderIndex(forwardBy: ChunkHeader.size)
            frame = .chunk(chunk, data: payload)
        } else {
            do {
                frame = .message(try Message.decode(frame: header, payload: payload, limits: limits))
            } catch {
                buffer.moveReaderIndex(to: start)
                throw error
            }
        }
        awaitingHello = false
        return frame
    }
}

extension FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Message

    /// `MessageToByteEncoder` conformance: writes `data` as one control frame.
    public func encode(data: Message, out: inout ByteBuffer) throws {
        try encode(data, into: &out)
    }
}
