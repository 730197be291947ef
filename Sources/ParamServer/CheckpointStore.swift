import Core
import Foundation

/// The server's checkpoints in a directory: `step-<t>.safetensors`, each holding every weight
/// tensor under its name, its momentum under `momentum/<name>`, and metadata (step, job,
/// layout hash, optimizer config as JSON strings). Written atomically by `SafetensorsWriter`.
enum CheckpointStore {
    /// A loaded checkpoint: values per tensor in layout order.
    struct State {
        var step: Int
        var weights: [[Float]]
        var momenta: [[Float]]
    }

    static func fileName(step: Int) -> String { String(format: "step-%09d.safetensors", step) }

    /// Writes the checkpoint of `step`; returns its path.
    static func save(
        directory: String, step: Int, layout: Layout, weights: [UnsafeBufferPointer<Float>],
        momenta: [UnsafeBufferPointer<Float>], metadata: [String: String]
    ) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var tensors: [SafetensorsWriter.Tensor] = []
        for (i, spec) in layout.tensors.enumerated() {
            tensors.append(.init(name: spec.name, shape: spec.shape, data: weights[i]))
        }
        for (i, spec) in layout.tensors.enumerated() {
            tensors.append(.init(name: "momentum/" + spec.name, shape: spec.shape, data: momenta[i]))
        }
        var meta = metadata
        meta["step"] = String(step)
        let path = (directory as NSString).appendingPathComponent(fileName(step: step))
        try SafetensorsWriter.write(tensors, metadata: meta, to: path)
        return path
    }

    /// The checkpoint with the highest step in `directory`, if any.
    static func latest(in directory: String) -> String? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return nil }
        let steps = names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("step-"), name.hasSuffix(".safetensors") else { return nil }
            let digits = name.dropFirst(5).dropLast(12)
            return Int(digits).map { ($0, name) }
        }
        guard let best = steps.max(by: { $0.0 < $1.0 }) else { return nil }
        return (directory as NSString).appendingPathComponent(best.1)
    }

    /// Loads and checks a checkpoint against `layout`; nothing is returned half-loaded.
    static func load(path: String, layout: Layout) throws -> State {
        let file = try SafetensorsFile(contentsOf: path)
        guard let stepText = file.metadata["step"], let step = Int(stepText), step >= 0 else {
            throw CheckpointMismatch(path: path, problem: "metadata has no valid \"step\"")
        }
        if let hash = file.metadata["layout_hash"], hash != String(format: "%016llx", layout.hash) {
            throw CheckpointMismatch(path: path, problem: "layout hash \(hash) differs from the job's model")
        }
        var weights: [[Float]] = []
        var momenta: [[Float]] = []
        for spec in layout.tensors {
            for (prefix, name) in [("", spec.name), ("momentum/", "momentum/" + spec.name)] {
                guard let t = file[name] else {
                    throw CheckpointMismatch(path: path, problem: "tensor '\(name)' is missing")
                }
                guard t.shape == spec.shape else {
                    throw CheckpointMismatch(path: path, problem: "tensor '\(name)' has shape \(t.shape), the model needs \(spec.shape)")
                }
                if prefix.isEmpty { weights.append(t.values) } else { momenta.append(t.values) }
            }
        }
        return State(step: step, weights: weights, momenta: momenta)
    }
}

/// A readable checkpoint that does not fit the job.
struct CheckpointMismatch: Error, CustomStringConvertible {
    var path: String
    var problem: String
    var description: String { "checkpoint \(path): \(problem)" }
}
