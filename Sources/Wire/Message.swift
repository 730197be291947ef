/// A decoded control message: everything on the wire except tensor data.
///
/// Frames that carry tensor data (INIT_CHUNK, WEIGHTS_CHUNK, PUSH_CHUNK) are described by a
/// ``ChunkHeader`` instead; their data never becomes a value of this type.
public enum Message: Sendable, Hashable {
    /// Worker -> server, first frame on every connection.
    case hello(Hello)
    /// Server -> worker, the answer to HELLO.
    case welcome(Welcome)
    /// Worker -> server: the layout of a model the worker brings; `chunkCount` INIT_CHUNK
    /// frames with the initial values follow.
    case initLayout(layout: WireLayout, chunkCount: UInt32)
    /// Worker -> server: send the weights of `step` once they are published.
    case pull(step: UInt64)
    /// Server -> worker: `chunkCount` WEIGHTS_CHUNK frames of `step` follow.
    case weights(step: UInt64, chunkCount: UInt32)
    /// Worker -> server: like PULL, for a worker that has mapped the server's shared weight
    /// file (``SharedWeightFile``); the answer is WEIGHTS_SHARED, or WEIGHTS when the server
    /// has no such file.
    case pullShared(step: UInt64)
    /// Server -> worker: the weights of `step` are in slot `slot` of the shared weight file.
    case weightsShared(step: UInt64, slot: UInt32)
    /// Worker -> server, after WELCOME: this worker's gradients are in slot 0 of the file at
    /// `path` (the shared weight file's format, `nonce` and `elements` in its header); the
    /// answer is SHARED_GRADIENTS_ANSWER.
    case sharedGradients(nonce: UInt64, elements: UInt64, path: String)
    /// Server -> worker: whether it mapped the file SHARED_GRADIENTS named (then the worker
    /// may send PUSH_SHARED instead of PUSH_CHUNK).
    case sharedGradientsAnswer(accepted: Bool)
    /// Worker -> server, inside a push: the grid chunk (`tensor`, `offset`, `count`) of the
    /// gradient of `step` is in the worker's gradient file, at that tensor's place in slot 0.
    case pushShared(step: UInt64, tensor: UInt32, offset: UInt64, count: UInt32)
    /// Worker -> server: a gradient for `step`, the mean over `sampleCount` samples, follows
    /// as PUSH_CHUNK frames.
    case pushBegin(step: UInt64, sampleCount: UInt32)
    /// Worker -> server: the push for `step` is complete; `loss` is the mean training loss
    /// over its samples (may be NaN or infinite: the server judges divergence).
    case pushEnd(step: UInt64, loss: Double)
    /// Server -> worker: `step` closed without this push; `currentStep` is the open step.
    case stepClosed(step: UInt64, currentStep: UInt64)
    /// Server -> worker: evaluate the weights of `step` on the test set.
    case evalRequest(step: UInt64)
    /// Worker -> server: the evaluation `evalRequest` asked for.
    case eval(step: UInt64, testLoss: Double, accuracy: Double, sampleCount: UInt32)
    /// Either way, any time after the handshake: keeps idle connections alive.
    case heartbeat(sequence: UInt64)
    /// Either way: a typed refusal; `requestID` is the id of the frame it answers (or 0).
    case error(code: ErrorCode, message: String, requestID: UInt64)
    /// Either way: the sender is finished with the connection.
    case bye(reason: ByeReason, detail: String)

    /// The type byte frames of this message carry.
    public var type: MessageType {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .initLayout: .initLayout
        case .pull: .pull
        case .weights: .weights
        case .pullShared: .pullShared
        case .weightsShared: .weightsShared
        case .sharedGradients: .sharedGradients
        case .sharedGradientsAnswer: .sharedGradientsAnswer
        case .pushShared: .pushShared
        case .pushBegin: .pushBegin
        case .pushEnd: .pushEnd
        case .stepClosed: .stepClosed
        case .evalRequest: .evalRequest
        case .eval: .eval
        case .heartbeat: .heartbeat
        case .error: .error
        case .bye: .bye
        }
    }

    /// The header id: the step for step messages, the request id for ERROR, the sequence
    /// number for HEARTBEAT, 0 otherwise.
    public var id: UInt64 {
        switch self {
        case .hello, .welcome, .initLayout, .bye, .sharedGradients, .sharedGradientsAnswer: 0
        case .pull(let step), .weights(let step, _), .pullShared(let step), .weightsShared(let step, _), .pushBegin(let step, _), .pushEnd(let step, _),
            .pushShared(let step, _, _, _),
            .stepClosed(let step, _), .evalRequest(let step), .eval(let step, _, _, _):
            step
        case .heartbeat(let sequence): sequence
        case .error(_, _, let requestID): requestID
        }
    }
}

/// HELLO: who the worker is and what it wants.
public struct Hello: Sendable, Hashable {
    /// Highest protocol version the worker speaks (1).
    public var version: UInt16
    /// The rank the worker asks for (its old rank after a reconnect), or nil for any.
    public var wantedRank: UInt32?
    /// The worker's layout hash (``WireLayout/hash``), if it has a model of its own to check.
    public var layoutHash: UInt64?
    /// The auth token; empty when the server has none.
    public var token: String
    /// A name for logs and /status, e.g. `host-3:worker-1`.
    public var workerName: String

    public init(
        version: UInt16 = FrameHeader.version, wantedRank: UInt32? = nil, layoutHash: UInt64? = nil,
        token: String = "", workerName: String
    ) {
        self.version = version
        self.wantedRank = wantedRank
        self.layoutHash = layoutHash
        self.token = token
        self.workerName = workerName
    }
}

/// WELCOME: the worker's place in the job, the job itself, and the layout.
public struct Welcome: Sendable, Hashable {
    public var rank: UInt32
    public var worldSize: UInt32
    /// The step the server is on: the worker pulls this one next.
    public var currentStep: UInt64
    /// The job as UTF-8 JSON, as the server provides it (model, data set and fingerprint,
    /// this worker's share of the batch, seed, schedule summary); Wire does not parse it.
    public var job: String
    /// The model's layout; empty when the server has none yet and waits for INIT.
    public var layout: WireLayout

    public init(rank: UInt32, worldSize: UInt32, currentStep: UInt64, job: String, layout: WireLayout) {
        self.rank = rank
        self.worldSize = worldSize
        self.currentStep = currentStep
        self.job = job
        self.layout = layout
    }
}

/// Why a BYE was sent.
public enum ByeReason: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The job finished (or the worker's work is done).
    case done = 1
    /// Training diverged; the job ended.
    case diverged = 2
    /// The sender is shutting down (signal, operator).
    case shutdown = 3

    public var description: String {
        switch self {
        case .done: "done"
        case .diverged: "diverged"
        case .shutdown: "shutdown"
        }
    }
}
