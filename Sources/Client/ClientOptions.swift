import Wire

/// How a ``ClientSession`` introduces itself and how patiently it (re)connects.
public struct ClientOptions: Sendable {
    /// The worker's name for the server's logs and /status, e.g. `host-3:worker-1`.
    public var workerName: String
    /// The auth token; empty when the server has none.
    public var token: String
    /// The rank to ask for on the first connection, or nil for any free one. Reconnects always
    /// ask for the rank the first WELCOME gave.
    public var wantedRank: Int?
    /// The hash of a layout the worker brings (``Wire/WireLayout/hash``); the server refuses a
    /// different one. Reconnects always send the hash of the layout the first WELCOME gave.
    public var layoutHash: UInt64?
    /// How long ``ClientSession/connect()`` keeps trying before it gives up.
    public var connectTimeout: Duration
    /// How long the session keeps trying to get a lost connection back before it gives up.
    public var reconnectTimeout: Duration
    /// The first wait between attempts; it doubles up to ``maxBackoff``.
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// Send a HEARTBEAT after this long without writing anything (nil: never).
    public var heartbeatInterval: Duration?
    /// The bounds applied to every frame the server sends, and to the frames this side encodes.
    public var limits: WireLimits
    /// Pull through the server's shared weight file when WELCOME names one this process can map
    /// (a worker on the server's host); otherwise, or when false, pull over TCP.
    public var sharedWeights: Bool

    public init(
        workerName: String,
        token: String = "",
        wantedRank: Int? = nil,
        layoutHash: UInt64? = nil,
        connectTimeout: Duration = .seconds(60),
        reconnectTimeout: Duration = .seconds(60),
        initialBackoff: Duration = .milliseconds(100),
        maxBackoff: Duration = .seconds(2),
        heartbeatInterval: Duration? = .seconds(5),
        limits: WireLimits = .default,
        sharedWeights: Bool = true
    ) {
        self.workerName = workerName
        self.token = token
        self.wantedRank = wantedRank
        self.layoutHash = layoutHash
        self.connectTimeout = connectTimeout
        self.reconnectTimeout = reconnectTimeout
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.heartbeatInterval = heartbeatInterval
        self.limits = limits
        self.sharedWeights = sharedWeights
    }
}
