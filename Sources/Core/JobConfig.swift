import Foundation

/// Where a job's training data comes from.
public struct DatasetConfig: Sendable, Hashable, Codable {
    /// Data set name; `fashion-mnist` (any MNIST-format set in `dir` works).
    public var name: String
    /// Directory holding the four IDX files, gzip or plain.
    public var dir: String

    public init(name: String = "fashion-mnist", dir: String = "/usr/share/datasets/fashion-mnist") {
        self.name = name
        self.dir = dir
    }

    /// How to get this data set into `directory`, for the end of an error message: Debian's
    /// package for Fashion-MNIST, otherwise what must be there.
    public func installHint(for directory: String) -> String {
        if name == "fashion-mnist" {
            return "`apt-get install dataset-fashion-mnist` installs Fashion-MNIST in \(DatasetFiles.fashionMNISTDirectory)"
        }
        return "the job's data set \"\(name)\" must be in \(directory) as MNIST-format IDX files "
            + "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each plain or .gz)"
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case name, dir }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? name
        dir = try c.decodeIfPresent(String.self, forKey: .dir) ?? dir
    }
}

/// The job a server runs (DESIGN.md §2): model, data, batch, workers, optimizer, schedule, length.
/// Read from a JSON file; the server's flags override single fields afterwards.
public struct JobConfig: Sendable, Hashable {
    /// Job name: names the checkpoint directory and appears in /status.
    public var name: String = "job"
    /// A built-in model (`mlp`, `cnn`, `resnet50-shapes`) or `from-worker`.
    public var model: String = "mlp"
    /// Training data; nil for jobs that give `steps` instead.
    public var dataset: DatasetConfig?
    /// Global batch B, split across the workers.
    public var globalBatch: Int = 8192
    /// N, the workers a step expects.
    public var workers: Int = 1
    /// K, the contributions that close a step (K < N: backup workers).
    public var minWorkers: Int?
    /// Epochs over the data set (with `dataset`).
    public var epochs: Int?
    /// Total steps (instead of `dataset` and `epochs`).
    public var steps: Int?
    public var seed: UInt64 = 1
    public var optimizer = OptimizerConfig()
    public var schedule = ScheduleConfig()
    /// Seconds after which an incomplete step is reported (it stays open).
    public var stepDeadlineSeconds: Double = 60
    /// Write a checkpoint every this many steps (0: only at the end and on shutdown).
    public var checkpointEvery: Int = 0

    public init() {}

    /// The quorum of a step: K if set, else N.
    public var quorum: Int { minWorkers ?? workers }

    /// Samples rank `rank` computes per step: B split as evenly as possible over N.
    public func share(ofRank rank: Int) -> Int {
        globalBatch / workers + (rank < globalBatch % workers ? 1 : 0)
    }

    /// Fails with the first field outside what is allowed.
    public func validate() throws(ConfigError) {
        guard !name.isEmpty, name.utf8.count <= 128, !name.contains("/") else {
            throw ConfigError(key: "name", value: "\"\(name)\"", allowed: "1 to 128 characters, no '/'")
        }
        guard globalBatch >= 1 else { throw ConfigError(key: "global_batch", value: "\(globalBatch)", allowed: "an integer >= 1") }
        guard workers >= 1, workers <= 4096 else { throw ConfigError(key: "workers", value: "\(workers)", allowed: "an integer in 1...4096") }
        guard globalBatch >= workers else {
            throw ConfigError(key: "global_batch", value: "\(globalBatch)", allowed: "at least the number of workers (\(workers))")
        }
        if let k = minWorkers, k < 1 || k > workers {
            throw ConfigError(key: "min_workers", value: "\(k)", allowed: "an integer in 1...\(workers) (workers)")
        }
        switch (dataset, epochs, steps) {
        case (.some, .some(let e), nil):
            guard e >= 1 else { throw ConfigError(key: "epochs", value: "\(e)", allowed: "an integer >= 1") }
        case (nil, nil, .some(let s)):
            guard s >= 1 else { throw ConfigError(key: "steps", value: "\(s)", allowed: "an integer >= 1") }
        default:
            throw ConfigError(key: "dataset/epochs/steps", value: describeLength(),
                              allowed: "either \"dataset\" with \"epochs\", or \"steps\" alone")
        }
        guard stepDeadlineSeconds.isFinite, stepDeadlineSeconds > 0 else {
            throw ConfigError(key: "step_deadline_s", value: "\(stepDeadlineSeconds)", allowed: "a number of seconds > 0")
        }
        guard checkpointEvery >= 0 else {
            throw ConfigError(key: "checkpoint_every", value: "\(checkpointEvery)", allowed: "an integer >= 0 (0: only at the end)")
        }
        try optimizer.validate()
        try schedule.validate()
    }

    private func describeLength() -> String {
        "dataset \(dataset == nil ? "absent" : "given"), epochs \(epochs.map(String.init) ?? "absent"), steps \(steps.map(String.init) ?? "absent")"
    }

    /// Parses a job file, naming the line of a JSON syntax error, the key of a wrong type and
    /// any unknown key, then validates.
    public static func parse(json data: Data, defaultName: String = "job") throws(ConfigError) -> JobConfig {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw ConfigError(key: "(file)", value: JSONPosition.describe(error, in: data), allowed: "a JSON object")
        }
        guard let top = object as? [String: Any] else {
            throw ConfigError(key: "(file)", value: "a JSON \(type(of: object))", allowed: "a JSON object")
        }
        try rejectUnknown(top, allowed: CodingKeys.allCases.map(\.rawValue), at: "")
        if let o = top["optimizer"] as? [String: Any] {
            try rejectUnknown(o, allowed: OptimizerConfig.CodingKeys.allCases.map(\.rawValue), at: "optimizer.")
        }
        if let s = top["schedule"] as? [String: Any] {
            try rejectUnknown(s, allowed: ScheduleConfig.CodingKeys.allCases.map(\.rawValue), at: "schedule.")
        }
        if let d = top["dataset"] as? [String: Any] {
            try rejectUnknown(d, allowed: DatasetConfig.CodingKeys.allCases.map(\.rawValue), at: "dataset.")
        }
        var job: JobConfig
        do {
            job = try JSONDecoder().decode(JobConfig.self, from: data)
        } catch let e as ConfigError {
            throw e
        } catch let e as DecodingError {
            throw ConfigError(decoding: e)
        } catch {
            throw ConfigError(key: "(file)", value: "\(error)", allowed: "a valid job file")
        }
        if top["name"] == nil { job.name = defaultName }
        try job.validate()
        return job
    }

    private static func rejectUnknown(_ dict: [String: Any], allowed: [String], at prefix: String) throws(ConfigError) {
        for key in dict.keys.sorted() where !allowed.contains(key) {
            throw ConfigError(key: prefix + key, value: "unknown key",
                              allowed: "one of " + allowed.sorted().map { "\"\($0)\"" }.joined(separator: ", "))
        }
    }
}

extension JobConfig: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, model, dataset, globalBatch = "global_batch", workers, minWorkers = "min_workers"
        case epochs, steps, seed, optimizer, schedule, stepDeadlineSeconds = "step_deadline_s"
        case checkpointEvery = "checkpoint_every"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var j = JobConfig()
        j.name = try c.decodeIfPresent(String.self, forKey: .name) ?? j.name
        j.model = try c.decodeIfPresent(String.self, forKey: .model) ?? j.model
        j.dataset = try c.decodeIfPresent(DatasetConfig.self, forKey: .dataset)
        j.globalBatch = try c.decodeIfPresent(Int.self, forKey: .globalBatch) ?? j.globalBatch
        j.workers = try c.decodeIfPresent(Int.self, forKey: .workers) ?? j.workers
        j.minWorkers = try c.decodeIfPresent(Int.self, forKey: .minWorkers)
        j.epochs = try c.decodeIfPresent(Int.self, forKey: .epochs)
        j.steps = try c.decodeIfPresent(Int.self, forKey: .steps)
        j.seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? j.seed
        j.optimizer = try c.decodeIfPresent(OptimizerConfig.self, forKey: .optimizer) ?? j.optimizer
        j.schedule = try c.decodeIfPresent(ScheduleConfig.self, forKey: .schedule) ?? j.schedule
        j.stepDeadlineSeconds = try c.decodeIfPresent(Double.self, forKey: .stepDeadlineSeconds) ?? j.stepDeadlineSeconds
        j.checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? j.checkpointEvery
        self = j
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(model, forKey: .model)
        try c.encodeIfPresent(dataset, forKey: .dataset)
        try c.encode(globalBatch, forKey: .globalBatch)
        try c.encode(workers, forKey: .workers)
        try c.encodeIfPresent(minWorkers, forKey: .minWorkers)
        try c.encodeIfPresent(epochs, forKey: .epochs)
        try c.encodeIfPresent(steps, forKey: .steps)
        try c.encode(seed, forKey: .seed)
        try c.encode(optimizer, forKey: .optimizer)
        try c.encode(schedule, forKey: .schedule)
        try c.encode(stepDeadlineSeconds, forKey: .stepDeadlineSeconds)
        try c.encode(checkpointEvery, forKey: .checkpointEvery)
    }

    /// The job as compact, key-sorted JSON (for logs, WELCOME and checkpoint metadata).
    public func jsonString() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? enc.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

extension ConfigError {
    /// Names the key path and the expectation of a `DecodingError`.
    init(decoding error: DecodingError) {
        func path(_ p: [any CodingKey]) -> String {
            p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .typeMismatch(let type, let ctx):
            self.init(key: path(ctx.codingPath), value: "wrong type", allowed: "a value of type \(Self.jsonType(type))")
        case .valueNotFound(let type, let ctx):
            self.init(key: path(ctx.codingPath), value: "null", allowed: "a value of type \(Self.jsonType(type))")
        case .keyNotFound(let key, let ctx):
            self.init(key: path(ctx.codingPath + [key]), value: "missing", allowed: "a value")
        case .dataCorrupted(let ctx):
            self.init(key: path(ctx.codingPath), value: "invalid", allowed: ctx.debugDescription)
        @unknown default:
            self.init(key: "(file)", value: "\(error)", allowed: "a valid job file")
        }
    }

    private static func jsonType(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "string"
        case is Bool.Type: return "boolean"
        case is Int.Type, is UInt64.Type: return "integer"
        case is Double.Type: return "number"
        default: return "\(type)"
        }
    }
}

/// Turns a JSONSerialization failure into "line L, column C: reason".
enum JSONPosition {
    static func describe(_ error: any Error, in data: Data) -> String {
        let ns = error as NSError
        let reason = (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
        // Darwin gives the byte index in userInfo; corelibs Foundation only in the text
        // ("... around character 34.").
        var index = ns.userInfo["NSJSONSerializationErrorIndex"] as? Int
        if index == nil, let r = reason.range(of: #"character (\d+)"#, options: .regularExpression) {
            index = Int(reason[r].dropFirst("character ".count))
        }
        guard let index else { return "syntax error: \(reason)" }
        var line = 1, column = 1
        for byte in data.prefix(index) {
            if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
        }
        return "syntax error at line \(line), column \(column): \(reason)"
    }
}
