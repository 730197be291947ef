import Core
import Foundation
import Wire

/// The job JSON of WELCOME, parsed: the job config plus what the server worked out for this
/// worker (its share of the batch, the chunk grid, the step counts, the data set fingerprint).
public struct JobDescription: Sendable {
    /// The JSON exactly as the server sent it.
    public let json: String
    /// The job config fields, decoded with Core's `JobConfig` (unknown keys ignored).
    public let config: JobConfig
    /// Samples this worker computes per step.
    public let share: Int
    /// Elements per push chunk: every tensor is split into chunks of this many elements, the
    /// last one shorter, and every push chunk must be exactly one of them.
    public let chunkElements: Int
    public let stepsPerEpoch: Int?
    public let totalSteps: Int?
    /// The training data the server expects, for jobs with a data set.
    public let fingerprint: DatasetFingerprint?
    /// The server's shared weight file, when it has one (workers on its host pull from it).
    public let sharedWeights: (path: String, nonce: UInt64, elements: Int)?

    /// Parses `json`; a missing or mistyped field the session needs is a protocol error.
    init(json: String) throws(WireError) {
        self.json = json
        let object = Self.parseObject(json)
        guard let object else {
            throw .malformed(field: "WELCOME job", value: "not a JSON object", expected: "a JSON object")
        }
        do {
            config = try JSONDecoder().decode(JobConfig.self, from: Data(json.utf8))
        } catch {
            throw .malformed(field: "WELCOME job", value: "\(error)", expected: "the job config fields")
        }
        share = try Self.int(object, "share")
        chunkElements = try Self.int(object, "chunk_elements")
        guard share >= 1, chunkElements >= 1 else {
            throw .malformed(field: "WELCOME job share/chunk_elements", value: "\(share)/\(chunkElements)", expected: ">= 1")
        }
        stepsPerEpoch = object["steps_per_epoch"].flatMap { ($0 as? NSNumber)?.intValue }
        totalSteps = object["total_steps"].flatMap { ($0 as? NSNumber)?.intValue }
        if let f = object["fingerprint"] as? [String: Any] {
            guard let count = (f["sample_count"] as? NSNumber)?.intValue,
                let crc = (f["label_crc32"] as? NSNumber)?.int64Value, let crc32 = UInt32(exactly: crc)
            else {
                throw .malformed(field: "WELCOME job fingerprint", value: "\(f)", expected: "{sample_count, label_crc32}")
            }
            fingerprint = DatasetFingerprint(sampleCount: count, labelCRC32: crc32)
        } else {
            fingerprint = nil
        }
        if let s = object["shared_weights"] as? [String: Any] {
            guard let path = s["path"] as? String, let hex = s["nonce"] as? String, let nonce = UInt64(hex, radix: 16),
                let elements = (s["elements"] as? NSNumber)?.intValue
            else {
                throw .malformed(field: "WELCOME job shared_weights", value: "\(s)", expected: "{path, nonce (hex), elements}")
            }
            sharedWeights = (path, nonce, elements)
        } else {
            sharedWeights = nil
        }
    }

    /// The whole JSON object, for keys without a typed accessor.
    public var object: [String: Any] { Self.parseObject(json) ?? [:] }

    private static func parseObject(_ json: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
    }

    private static func int(_ object: [String: Any], _ key: String) throws(WireError) -> Int {
        guard let n = object[key] as? NSNumber, let value = Int(exactly: n.doubleValue) else {
            throw .malformed(field: "WELCOME job \"\(key)\"", value: object[key].map { "\($0)" } ?? "missing", expected: "an integer")
        }
        return value
    }
}

/// What the handshake gave this worker.
public struct SessionInfo: Sendable {
    public var rank: Int
    public var worldSize: Int
    /// The step the server was on at the handshake: pull this one first.
    public var currentStep: Int
    public var layout: WireLayout
    public var job: JobDescription
    /// The server's shared weight file this worker pulls through, nil when it pulls over TCP.
    public var sharedWeightsPath: String?
}
