import NIOCore

/// Writes frames into `ByteBuffer`s.
///
/// Control messages are written whole. Chunk frames are written as their 40 header bytes only
/// (``encodeChunkHeader(_:into:)``), so the data can follow as a slice of the buffer that
/// holds it: `channel.write(header); channel.write(dataSlice)` sends the data without a copy.
/// The encoder applies the same ``WireLimits`` as the receiver, so an oversized frame fails
/// at the sender with the error the receiver would have sent.
public struct FrameEncoder: Sendable {
    public var limits: WireLimits

    public init(limits: WireLimits = .default) {
        self.limits = limits
    }

    /// Appends one complete control frame (header and payload) for `message`.
    public func encode(_ message: Message, into buffer: inout ByteBuffer) throws(WireError) {
        let start = buffer.writerIndex
        FrameHeader(type: message.type, length: 0, id: message.id).write(to: &buffer)
        do {
            try message.writePayload(to: &buffer, limits: limits)
        } catch {
            buffer.moveWriterIndex(to: start)
            throw error
        }
        let length = buffer.writerIndex - start - FrameHeader.size
        guard length <= limits.maxControlPayload else {
            buffer.moveWriterIndex(to: start)
            throw .frameTooLarge(type: message.type, length: UInt32(clamping: length), limit: limits.maxControlPayload)
        }
        buffer.setInteger(UInt32(length), at: start + 8, endianness: .little)
    }

    /// A new buffer holding the control frame for `message`.
    public func encode(_ message: Message, allocator: ByteBufferAllocator = ByteBufferAllocator()) throws(WireError) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        try encode(message, into: &buffer)
        return buffer
    }

    /// Appends the frame header and chunk header of a chunk frame (``ChunkHeader/frameOverhead``
    /// bytes); the caller sends exactly ``ChunkHeader/dataBytes`` bytes of data after them.
    public func encodeChunkHeader(_ header: ChunkHeader, into buffer: inout ByteBuffer) throws(WireError) {
        let length = header.payloadLength
        guard length <= limits.maxChunkPayload else {
            throw .frameTooLarge(type: header.kind.messageType, length: UInt32(clamping: length), limit: limits.maxChunkPayload)
        }
        FrameHeader(type: header.kind.messageType, length: UInt32(length), id: header.step).write(to: &buffer)
        header.write(to: &buffer)
    }

    /// Appends a whole chunk frame: headers, then the readable bytes of `data`, which must be
    /// exactly ``ChunkHeader/dataBytes`` long. Copies the data; prefer
    /// ``encodeChunkHeader(_:into:)`` plus a slice on hot paths.
    public func encodeChunk(_ header: ChunkHeader, data: ByteBuffer, into buffer: inout ByteBuffer) throws(WireError) {
        guard data.readableBytes == header.dataBytes else {
            throw .wrongLength(field: "chunk data", value: data.readableBytes, expected: header.dataBytes)
        }
        try encodeChunkHeader(header, into: &buffer)
        var data = data
        buffer.writeBuffer(&data)
    }
}
