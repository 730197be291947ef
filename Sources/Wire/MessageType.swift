/// The one-byte message type at offset 6 of every frame header.
///
/// Types 0x20...0x2F are chunk frames: their payload is a ``ChunkHeader`` followed by tensor
/// data, which ``FrameParser`` streams to a sink instead of buffering.
public enum MessageType: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case hello = 0x01
    case welcome = 0x02
    case initLayout = 0x03
    case pull = 0x04
    case weights = 0x05
    case pushBegin = 0x06
    case pushEnd = 0x07
    case stepClosed = 0x08
    case evalRequest = 0x09
    case eval = 0x0A
    case heartbeat = 0x0B
    case error = 0x0C
    case bye = 0x0D
    case pullShared = 0x0E
    case weightsShared = 0x0F
    case sharedGradients = 0x10
    case sharedGradientsAnswer = 0x11
    case pushShared = 0x12
    case initChunk = 0x20
    case weightsChunk = 0x21
    case pushChunk = 0x22

    /// Whether frames of this type carry tensor data (and go through the streaming path).
    public var isChunk: Bool { rawValue & 0xF0 == 0x20 }

    public var description: String {
        switch self {
        case .hello: "HELLO"
        case .welcome: "WELCOME"
        case .initLayout: "INIT"
        case .pull: "PULL"
        case .weights: "WEIGHTS"
        case .pushBegin: "PUSH_BEGIN"
        case .pushEnd: "PUSH_END"
        case .stepClosed: "STEP_CLOSED"
        case .evalRequest: "EVAL_REQUEST"
        case .eval: "EVAL"
        case .heartbeat: "HEARTBEAT"
        case .error: "ERROR"
        case .bye: "BYE"
        case .pullShared: "PULL_SHARED"
        case .weightsShared: "WEIGHTS_SHARED"
        case .sharedGradients: "SHARED_GRADIENTS"
        case .sharedGradientsAnswer: "SHARED_GRADIENTS_ANSWER"
        case .pushShared: "PUSH_SHARED"
        case .initChunk: "INIT_CHUNK"
        case .weightsChunk: "WEIGHTS_CHUNK"
        case .pushChunk: "PUSH_CHUNK"
        }
    }
}
