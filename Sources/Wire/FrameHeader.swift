import NIOCore

/// The fixed 20-byte header that starts every frame (all fields little-endian):
///
/// | offset | size | field                                    |
/// |-------:|-----:|------------------------------------------|
/// |      0 |    4 | magic `LARS` (4c 41 52 53)               |
/// |      4 |    2 | version, u16 = 1                         |
/// |      6 |    1 | message type, u8 (``MessageType``)       |
/// |      7 |    1 | flags, u8 = 0 (none defined in v1)       |
/// |      8 |    4 | payload length in bytes, u32             |
/// |     12 |    8 | id, u64: the step, or a request id       |
public struct FrameHeader: Sendable, Hashable {
    /// Size of the header on the wire.
    public static let size = 20
    /// `LARS` read as a little-endian u32.
    public static let magic: UInt32 = 0x5352_414C
    /// The protocol version this module speaks.
    public static let version: UInt16 = 1

    public var type: MessageType
    /// Reserved; 0 in version 1 (a receiver refuses anything else).
    public var flags: UInt8
    /// Payload bytes that follow the header.
    public var length: UInt32
    /// The step the frame belongs to, or a request/sequence id; 0 where a message has none.
    public var id: UInt64

    public init(type: MessageType, flags: UInt8 = 0, length: UInt32, id: UInt64) {
        self.type = type
        self.flags = flags
        self.length = length
        self.id = id
    }

    /// Decodes the header at the reader index of `buffer` without moving it.
    ///
    /// Returns nil when fewer than ``size`` bytes are readable. Checks magic, version, type,
    /// flags and the payload length against `limits` (in that order), so nothing is allocated
    /// for a frame that claims more than the limit.
    public static func peek(_ buffer: ByteBuffer, limits: WireLimits) throws(WireError) -> FrameHeader? {
        let at = buffer.readerIndex
        guard buffer.readableBytes >= size,
            let magic = buffer.getInteger(at: at, endianness: .little, as: UInt32.self),
            let version = buffer.getInteger(at: at + 4, endianness: .little, as: UInt16.self),
            let rawType = buffer.getInteger(at: at + 6, as: UInt8.self),
            let flags = buffer.getInteger(at: at + 7, as: UInt8.self),
            let length = buffer.getInteger(at: at + 8, endianness: .little, as: UInt32.self),
            let id = buffer.getInteger(at: at + 12, endianness: .little, as: UInt64.self)
        else { return nil }
        guard magic == Self.magic else { throw .badMagic(found: magic) }
        guard version == Self.version else { throw .unsupportedVersion(found: version, supported: Self.version) }
        guard let type = MessageType(rawValue: rawType) else { throw .unknownType(found: rawType) }
        guard flags == 0 else { throw .malformed(field: "header.flags", value: "\(flags)", expected: "0") }
        let limit = limits.maxPayload(for: type)
        guard UInt64(length) <= UInt64(max(limit, 0)) else {
            throw .frameTooLarge(type: type, length: length, limit: limit)
        }
        return FrameHeader(type: type, flags: flags, length: length, id: id)
    }

    /// Appends the 20 header bytes to `buffer`.
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(Self.magic, endianness: .little)
        buffer.writeInteger(Self.version, endianness: .little)
        buffer.writeInteger(type.rawValue)
        buffer.writeInteger(flags)
        buffer.writeInteger(length, endianness: .little)
        buffer.writeInteger(id, endianness: .little)
    }
}
