import NIOCore

/// Reads the fields of one payload with bounds checks: every read that runs past the end
/// throws ``WireError/truncated(field:needed:available:)`` naming the field.
struct PayloadReader {
    var buffer: ByteBuffer
    let limits: WireLimits

    init(_ buffer: ByteBuffer, limits: WireLimits) {
        self.buffer = buffer
        self.limits = limits
    }

    mutating func integer<T: FixedWidthInteger>(_ field: String, as: T.Type = T.self) throws(WireError) -> T {
        guard let value = buffer.readInteger(endianness: .little, as: T.self) else {
            throw .truncated(field: field, needed: MemoryLayout<T>.size, available: buffer.readableBytes)
        }
        return value
    }

    mutating func double(_ field: String) throws(WireError) -> Double {
        Double(bitPattern: try integer(field, as: UInt64.self))
    }

    /// A reserved field: must be zero.
    mutating func reserved<T: FixedWidthInteger>(_ field: String, as: T.Type) throws(WireError) {
        let value = try integer(field, as: T.self)
        guard value == 0 else { throw .malformed(field: field, value: "\(value)", expected: "0 (reserved)") }
    }

    /// `length` bytes of UTF-8, after checking `length` against `limit`.
    mutating func string(_ field: String, length: Int, limit: Int) throws(WireError) -> String {
        guard length <= limit else { throw .limitExceeded(field: "\(field) length", value: length, limit: limit) }
        guard let bytes = buffer.readSlice(length: length) else {
            throw .truncated(field: field, needed: length, available: buffer.readableBytes)
        }
        guard let text = String(validating: bytes.readableBytesView, as: UTF8.self) else {
            throw .malformed(field: field, value: "\(length) bytes", expected: "valid UTF-8")
        }
        return text
    }

    /// A string preceded by its u16 byte length.
    mutating func string16(_ field: String, limit: Int) throws(WireError) -> String {
        let length = try integer("\(field) length", as: UInt16.self)
        return try string(field, length: Int(length), limit: limit)
    }

    /// A string preceded by its u32 byte length.
    mutating func string32(_ field: String, limit: Int) throws(WireError) -> String {
        let length = try integer("\(field) length", as: UInt32.self)
        return try string(field, length: Int(length), limit: limit)
    }

    /// Refuses bytes left over after the last field.
    func finish(_ type: MessageType, payloadLength: Int) throws(WireError) {
        guard buffer.readableBytes == 0 else {
            throw .wrongLength(
                field: "\(type) payload length", value: payloadLength,
                expected: payloadLength - buffer.readableBytes)
        }
    }
}

extension ByteBuffer {
    /// Writes `text` preceded by its byte length as a u16, refusing it over `limit`.
    mutating func writeString16(_ text: String, field: String, limit: Int) throws(WireError) {
        let count = text.utf8.count
        guard count <= min(limit, Int(UInt16.max)) else {
            throw .limitExceeded(field: "\(field) length", value: count, limit: min(limit, Int(UInt16.max)))
        }
        writeInteger(UInt16(count), endianness: .little)
        writeString(text)
    }

    /// Writes `text` preceded by its byte length as a u32, refusing it over `limit`.
    mutating func writeString32(_ text: String, field: String, limit: Int) throws(WireError) {
        let count = text.utf8.count
        guard count <= min(limit, Int(UInt32.max)) else {
            throw .limitExceeded(field: "\(field) length", value: count, limit: min(limit, Int(UInt32.max)))
        }
        writeInteger(UInt32(count), endianness: .little)
        writeString(text)
    }
}
