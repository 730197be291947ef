/// Receives what a ``FrameParser`` finds in the byte stream, in order.
///
/// For a control frame the parser calls ``receive(_:)`` once. For a chunk frame it calls
/// ``beginChunk(_:)``, then ``chunkData(_:header:firstElement:)`` zero or more times with
/// the data in whole elements, straight from the receive buffer, then ``endChunk(_:)``.
///
/// Throwing from any method ends parsing: the parser is then failed for good and rethrows the
/// same error on every later call; answer it with ERROR and close the connection. To ignore a
/// chunk (a push for a closed step) just drop its data instead of throwing.
public protocol FrameSink {
    /// A complete control message.
    mutating func receive(_ message: Message) throws(WireError)
    /// A chunk frame's headers have arrived and passed every check; its data follows.
    mutating func beginChunk(_ header: ChunkHeader) throws(WireError)
    /// `bytes` holds whole little-endian elements of `header.dtype`, the first being element
    /// `firstElement` of tensor `header.tensor`. The pointer is valid only during the call and
    /// may be unaligned: copy with `copyMemory` or read with `loadUnaligned`.
    mutating func chunkData(_ bytes: UnsafeRawBufferPointer, header: ChunkHeader, firstElement: Int) throws(WireError)
    /// All `header.count` elements have been delivered.
    mutating func endChunk(_ header: ChunkHeader) throws(WireError)
}

extension FrameSink {
    public mutating func beginChunk(_ header: ChunkHeader) throws(WireError) {}
    public mutating func endChunk(_ header: ChunkHeader) throws(WireError) {}
}

/// One thing a ``FrameParser`` found, for the closure form of
/// ``FrameParser/parse(_:_:)``. The pointer in ``chunkData(_:firstElement:bytes:)`` is valid
/// only during the call.
public enum FrameEvent {
    case message(Message)
    case chunkBegin(ChunkHeader)
    case chunkData(ChunkHeader, firstElement: Int, bytes: UnsafeRawBufferPointer)
    case chunkEnd(ChunkHeader)
}

/// Adapts a closure to ``FrameSink``.
struct ClosureSink: FrameSink {
    let handle: (FrameEvent) throws(WireError) -> Void

    mutating func receive(_ message: Message) throws(WireError) { try handle(.message(message)) }
    mutating func beginChunk(_ header: ChunkHeader) throws(WireError) { try handle(.chunkBegin(header)) }
    mutating func chunkData(_ bytes: UnsafeRawBufferPointer, header: ChunkHeader, firstElement: Int) throws(WireError) {
        try handle(.chunkData(header, firstElement: firstElement, bytes: bytes))
    }
    mutating func endChunk(_ header: ChunkHeader) throws(WireError) { try handle(.chunkEnd(header)) }
}
