/// Bounds a receiver enforces before it allocates or trusts anything a peer sent.
///
/// Every length on the wire is checked against one of these, so a header that claims 4 GiB is
/// refused with ``WireError/frameTooLarge(type:length:limit:)`` before a byte is buffered.
/// Both ends should use the same values; the defaults are the ones docs/wire-protocol.md lists.
public struct WireLimits: Sendable, Hashable {
    /// Largest payload of a control frame (everything that is not a chunk frame), in bytes.
    public var maxControlPayload: Int
    /// Largest payload of a chunk frame (the 20-byte chunk header plus the data), in bytes.
    public var maxChunkPayload: Int
    /// Longest tensor or worker name, in UTF-8 bytes.
    public var maxNameBytes: Int
    /// Most tensors in one layout.
    public var maxTensors: Int
    /// Most dimensions of one tensor.
    public var maxRank: Int
    /// Longest auth token, in bytes.
    public var maxTokenBytes: Int
    /// Longest human-readable text in ERROR and BYE, in UTF-8 bytes.
    public var maxMessageBytes: Int
    /// Most elements in one tensor.
    public var maxTensorElements: Int

    public init(
        maxControlPayload: Int = 1 << 20,
        maxChunkPayload: Int = 16 << 20,
        maxNameBytes: Int = 256,
        maxTensors: Int = 65_536,
        maxRank: Int = 8,
        maxTokenBytes: Int = 256,
        maxMessageBytes: Int = 4_096,
        maxTensorElements: Int = 1 << 34
    ) {
        self.maxControlPayload = maxControlPayload
        self.maxChunkPayload = maxChunkPayload
        self.maxNameBytes = maxNameBytes
        self.maxTensors = maxTensors
        self.maxRank = maxRank
        self.maxTokenBytes = maxTokenBytes
        self.maxMessageBytes = maxMessageBytes
        self.maxTensorElements = maxTensorElements
    }

    /// The limits docs/wire-protocol.md gives as defaults.
    public static let `default` = WireLimits()

    /// The largest payload a frame of `type` may carry.
    public func maxPayload(for type: MessageType) -> Int {
        type.isChunk ? maxChunkPayload : maxControlPayload
    }
}
