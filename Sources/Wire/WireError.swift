/// Why bytes from a peer were refused. Each case names the field, the value found and the
/// bound it broke, so the message sent back in ERROR tells the peer's author what to fix.
///
/// Decoding never traps on input: every path that reads peer bytes ends in a message or one
/// of these.
public enum WireError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The frame does not start with `LARS`.
    case badMagic(found: UInt32)
    /// The header's version is not ``FrameHeader/version``.
    case unsupportedVersion(found: UInt16, supported: UInt16)
    /// The header's type byte is not a ``MessageType``.
    case unknownType(found: UInt8)
    /// The header claims a payload over the limit for its type.
    case frameTooLarge(type: MessageType, length: UInt32, limit: Int)
    /// `field` needs `needed` bytes but only `available` remain (in the payload, or in the
    /// stream when it ended).
    case truncated(field: String, needed: Int, available: Int)
    /// `field` holds `value`, which the protocol does not allow; `expected` says what it allows.
    case malformed(field: String, value: String, expected: String)
    /// A count or length inside a payload is over its limit.
    case limitExceeded(field: String, value: Int, limit: Int)
    /// A length disagrees with what the header or the other fields imply.
    case wrongLength(field: String, value: Int, expected: Int)
    /// A dtype byte is not a ``DType``, or the dtype is not allowed there.
    case wrongDType(field: String, value: UInt8)
    /// A chunk's tensor index or element range lies outside the layout.
    case chunkOutOfRange(tensor: UInt32, offset: UInt64, count: UInt32, tensorCount: Int, tensorElements: Int)
    /// A layout's hash disagrees with the one computed from its tensors, or with the server's.
    case layoutMismatch(expected: UInt64, found: UInt64)
    /// The first frame on a connection was `found`, not HELLO.
    case handshakeRequired(found: MessageType)
    /// A message the protocol does not allow in the current state.
    case unexpectedMessage(MessageType, state: String)
    /// Refused by the application (server or client) with a wire code, e.g. ``ErrorCode/stepClosed``.
    case rejected(code: ErrorCode, message: String)

    /// The code to put in the ERROR frame that answers this.
    public var code: ErrorCode {
        switch self {
        case .badMagic: .badMagic
        case .unsupportedVersion: .unsupportedVersion
        case .unknownType: .unknownType
        case .frameTooLarge: .frameTooLarge
        case .truncated: .truncated
        case .malformed: .malformedPayload
        case .limitExceeded: .limitExceeded
        case .wrongLength: .wrongLength
        case .wrongDType: .wrongDtype
        case .chunkOutOfRange: .chunkOutOfRange
        case .layoutMismatch: .layoutMismatch
        case .handshakeRequired: .handshakeRequired
        case .unexpectedMessage: .unexpectedMessage
        case .rejected(let code, _): code
        }
    }

    public var description: String {
        switch self {
        case .badMagic(let found):
            "bad magic: frame starts with 0x\(hex(found, width: 8)) (little-endian), expected \"LARS\" (0x5352414c)"
        case .unsupportedVersion(let found, let supported):
            "unsupported version: header version is \(found), this peer speaks \(supported)"
        case .unknownType(let found):
            "unknown message type 0x\(hex(found, width: 2))"
        case .frameTooLarge(let type, let length, let limit):
            "frame too large: \(type) payload length is \(length) bytes, limit is \(limit)"
        case .truncated(let field, let needed, let available):
            "truncated: \(field) needs \(needed) bytes, only \(available) present"
        case .malformed(let field, let value, let expected):
            "malformed payload: \(field) is \(value), expected \(expected)"
        case .limitExceeded(let field, let value, let limit):
            "limit exceeded: \(field) is \(value), limit is \(limit)"
        case .wrongLength(let field, let value, let expected):
            "wrong length: \(field) is \(value), expected \(expected)"
        case .wrongDType(let field, let value):
            "wrong dtype: \(field) is \(value), expected 1 (float32), 2 (bfloat16) or 3 (float16)"
        case .chunkOutOfRange(let tensor, let offset, let count, let tensorCount, let elements):
            tensor >= tensorCount
                ? "chunk out of range: tensor index \(tensor), layout has \(tensorCount) tensors"
                : "chunk out of range: \(count) elements at offset \(offset) of tensor \(tensor), which has \(elements)"
        case .layoutMismatch(let expected, let found):
            "layout mismatch: layout hash is 0x\(hex(found, width: 16)), expected 0x\(hex(expected, width: 16))"
        case .handshakeRequired(let found):
            "handshake required: first frame was \(found), expected HELLO"
        case .unexpectedMessage(let type, let state):
            "unexpected message: \(type) is not allowed \(state)"
        case .rejected(let code, let message):
            "\(code.name): \(message)"
        }
    }
}

private func hex<T: BinaryInteger>(_ value: T, width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}
