/// The 16-bit code an ERROR frame carries.
///
/// A struct rather than an enum so that a receiver keeps codes a newer peer may send
/// (docs/wire-protocol.md, "Error codes"); ``name`` is `"code N"` for those.
public struct ErrorCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The first four bytes of a frame are not `LARS`.
    public static let badMagic = ErrorCode(rawValue: 1)
    /// The header's version is not one this peer speaks.
    public static let unsupportedVersion = ErrorCode(rawValue: 2)
    /// The header's message type is not defined.
    public static let unknownType = ErrorCode(rawValue: 3)
    /// The header's payload length is over the receiver's limit.
    public static let frameTooLarge = ErrorCode(rawValue: 4)
    /// The payload ends before a field it must hold, or the stream ended mid-frame.
    public static let truncated = ErrorCode(rawValue: 5)
    /// A field holds a value the protocol does not allow (bad UTF-8, reserved bits set, ...).
    public static let malformedPayload = ErrorCode(rawValue: 6)
    /// The first frame on a connection was not HELLO.
    public static let handshakeRequired = ErrorCode(rawValue: 7)
    /// HELLO's auth token is wrong.
    public static let authFailed = ErrorCode(rawValue: 8)
    /// The layout (or its hash) disagrees with the server's.
    public static let layoutMismatch = ErrorCode(rawValue: 9)
    /// A length disagrees with what the header or the layout implies.
    public static let wrongLength = ErrorCode(rawValue: 10)
    /// A dtype is unknown or not allowed where it was used.
    public static let wrongDtype = ErrorCode(rawValue: 11)
    /// A chunk's tensor index or element range lies outside the layout.
    public static let chunkOutOfRange = ErrorCode(rawValue: 12)
    /// A push arrived for a step that is already closed (the connection stays open).
    public static let stepClosed = ErrorCode(rawValue: 13)
    /// The worker's data set is missing or has another fingerprint.
    public static let dataset = ErrorCode(rawValue: 14)
    /// A gradient held NaN or Inf; the step was skipped.
    public static let nonFiniteGradient = ErrorCode(rawValue: 15)
    /// The sender failed for a reason of its own.
    public static let `internal` = ErrorCode(rawValue: 16)
    /// A count or length inside a payload is over the receiver's limit.
    public static let limitExceeded = ErrorCode(rawValue: 17)
    /// A known message arrived where the protocol does not allow it.
    public static let unexpectedMessage = ErrorCode(rawValue: 18)
    /// The wanted rank is taken or outside the world, or the world is full.
    public static let rankUnavailable = ErrorCode(rawValue: 19)

    /// Every code version 1 defines, in numeric order.
    public static let allDefined: [ErrorCode] = (1...19).map { ErrorCode(rawValue: $0) }

    /// The snake_case name docs/wire-protocol.md uses (and metrics labels use).
    public var name: String {
        switch rawValue {
        case 1: "bad_magic"
        case 2: "unsupported_version"
        case 3: "unknown_type"
        case 4: "frame_too_large"
        case 5: "truncated"
        case 6: "malformed_payload"
        case 7: "handshake_required"
        case 8: "auth_failed"
        case 9: "layout_mismatch"
        case 10: "wrong_length"
        case 11: "wrong_dtype"
        case 12: "chunk_out_of_range"
        case 13: "step_closed"
        case 14: "dataset"
        case 15: "non_finite_gradient"
        case 16: "internal"
        case 17: "limit_exceeded"
        case 18: "unexpected_message"
        case 19: "rank_unavailable"
        default: "code \(rawValue)"
        }
    }

    public var description: String { name }
}
