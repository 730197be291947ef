import Core
import NIOCore
@testable import Wire

/// One frame of a golden fixture: a control message, or a chunk frame with its data.
enum GoldenFrame {
    case message(Message)
    case chunk(ChunkHeader, data: [UInt8])

    var parsed: ParsedEvent {
        switch self {
        case .message(let m): .message(m)
        case .chunk(let h, let data): .chunk(h, data: data)
        }
    }

    var frame: Frame {
        switch self {
        case .message(let m): .message(m)
        case .chunk(let h, let data): .chunk(h, data: buffer(data))
        }
    }

    func encode(into out: inout ByteBuffer, encoder: FrameEncoder = FrameEncoder()) throws {
        switch self {
        case .message(let m): try encoder.encode(m, into: &out)
        case .chunk(let h, let data): try encoder.encodeChunk(h, data: buffer(data), into: &out)
        }
    }
}

/// The golden fixtures: every message type, each as Tests/WireTests/Fixtures/<name>.hex.
/// docs/wire-protocol.md shows hello.hex and push-one-tensor.hex byte for byte.
enum Golden {
    /// A two-tensor model: a 2x3 weight (adapted) and its bias (not adapted).
    static let layout = WireLayout([
        WireTensor(spec: TensorSpec(name: "fc.weight", shape: [2, 3]), adapt: true),
        WireTensor(spec: TensorSpec(name: "fc.bias", shape: [2]), adapt: false),
    ])
    /// The one-tensor model of the worked push example.
    static let oneTensor = WireLayout([WireTensor(spec: TensorSpec(name: "w", shape: [4]), adapt: false)])

    static let job = #"{"model":"tiny","batch_share":32,"seed":1}"#

    static let cases: [(name: String, frames: [GoldenFrame])] = [
        ("hello", [.message(.hello(Hello(wantedRank: 1, layoutHash: layout.hash, token: "s3cret", workerName: "worker-a")))]),
        ("hello-any-rank", [.message(.hello(Hello(workerName: "w")))]),
        ("welcome", [.message(.welcome(Welcome(rank: 1, worldSize: 2, currentStep: 0, job: job, layout: layout)))]),
        ("welcome-no-layout", [.message(.welcome(Welcome(rank: 0, worldSize: 1, currentStep: 0, job: "{}", layout: WireLayout([]))))]),
        ("init", [.message(.initLayout(layout: layout, chunkCount: 2))]),
        ("init-chunk", [.chunk(ChunkHeader(kind: .initValues, step: 0, tensor: 0, offset: 0, count: 6),
                               data: float32Bytes([0.5, -0.5, 0.25, -0.25, 1, -1]))]),
        ("pull", [.message(.pull(step: 7))]),
        ("weights", [.message(.weights(step: 7, chunkCount: 2))]),
        ("pull-shared", [.message(.pullShared(step: 7))]),
        ("weights-shared", [.message(.weightsShared(step: 7, slot: 1))]),
        ("shared-gradients", [.message(.sharedGradients(nonce: 0x0123_4567_89AB_CDEF, elements: 9, path: "/dev/shm/lars-ps-42-1"))]),
        ("shared-gradients-answer", [.message(.sharedGradientsAnswer(accepted: true))]),
        ("push-shared", [.message(.pushShared(step: 7, tensor: 0, offset: 3, count: 3))]),
        ("weights-chunk", [.chunk(ChunkHeader(kind: .weights, step: 7, tensor: 1, offset: 0, count: 2),
                                  data: float32Bytes([0.5, -1]))]),
        ("push-begin", [.message(.pushBegin(step: 7, sampleCount: 32))]),
        ("push-chunk", [.chunk(ChunkHeader(kind: .push, step: 7, tensor: 0, offset: 3, count: 3),
                               data: float32Bytes([0.125, -2, 3]))]),
        ("push-chunk-bfloat16", [.chunk(ChunkHeader(kind: .push, step: 7, tensor: 1, offset: 0, count: 2, dtype: .bfloat16),
                                        data: [0x80, 0x3f, 0x00, 0xc0])]),
        ("push-chunk-float16", [.chunk(ChunkHeader(kind: .push, step: 7, tensor: 1, offset: 0, count: 2, dtype: .float16),
                                       data: [0x00, 0x3c, 0x00, 0xc0])]),
        ("push-end", [.message(.pushEnd(step: 7, loss: 2.5))]),
        ("push-one-tensor", [
            .message(.pushBegin(step: 7, sampleCount: 32)),
            .chunk(ChunkHeader(kind: .push, step: 7, tensor: 0, offset: 0, count: 4), data: float32Bytes([0.5, -0.25, 1, -2])),
            .message(.pushEnd(step: 7, loss: 2.5)),
        ]),
        ("step-closed", [.message(.stepClosed(step: 6, currentStep: 7))]),
        ("eval-request", [.message(.evalRequest(step: 100))]),
        ("eval", [.message(.eval(step: 100, testLoss: 0.5, accuracy: 0.875, sampleCount: 10_000))]),
        ("heartbeat", [.message(.heartbeat(sequence: 3))]),
        ("error", [.message(.error(code: .layoutMismatch, message: "layout hash differs", requestID: 0))]),
        ("bye", [.message(.bye(reason: .diverged, detail: "loss 73.5 at step 120"))]),
    ]

    static func encoded(_ frames: [GoldenFrame]) throws -> [UInt8] {
        var out = ByteBufferAllocator().buffer(capacity: 256)
        for frame in frames { try frame.encode(into: &out) }
        return Array(out.readableBytesView)
    }

    /// Every golden frame encoded on its own, for the randomized and split tests.
    static func allFrames() throws -> [[UInt8]] {
        try cases.flatMap { try $0.frames.map { try encoded([$0]) } }
    }
}
