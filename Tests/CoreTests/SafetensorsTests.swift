import Foundation
import Testing
@testable import Core

@Suite struct SafetensorsTests {
    /// Weights and momentum for the mlp, plus awkward values that must survive bit for bit.
    static func sampleTensors() -> [(name: String, shape: [Int], values: [Float])] {
        let spec = ModelSpec.mlp
        let weights = spec.initialValues(seed: 3)
        var out = zip(spec.layout.tensors, weights).map { ($0.name, $0.shape, $1) }
        out += zip(spec.layout.tensors, weights).map { ("momentum/" + $0.name, $0.shape, $1.map { $0 * 0.5 }) }
        out.append(("odd", [2, 4], [-0.0, .infinity, -.infinity, .nan, Float(bitPattern: 0x7FC0_1234),
                                    .leastNonzeroMagnitude, .greatestFiniteMagnitude, 1]))
        out.append(("scalar", [], [42]))
        out.append(("empty", [0, 3], []))
        return out
    }

    static let metadata = [
        "step": "1234",
        "job": #"{"name":"mlp-lars","batch":8192,"model":"mlp"}"#,
        "note": "quotes \" backslash \\ newline \n tab \t bell \u{07} ünïcødé ✓",
    ]

    /// Writes `tensors` to `path`, borrowing their storage.
    static func write(_ tensors: [(name: String, shape: [Int], values: [Float])], metadata: [String: String], to path: String) throws {
        func go(_ i: Int, _ views: [SafetensorsWriter.Tensor]) throws {
            guard i < tensors.count else { return try SafetensorsWriter.write(views, metadata: metadata, to: path) }
            try tensors[i].values.withUnsafeBufferPointer {
                try go(i + 1, views + [SafetensorsWriter.Tensor(name: tensors[i].name, shape: tensors[i].shape, data: $0)])
            }
        }
        try go(0, [])
    }

    @Test func roundTripIsBitIdentical() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("ckpt.safetensors")
        let tensors = Self.sampleTensors()
        try Self.write(tensors, metadata: Self.metadata, to: path)
        let file = try SafetensorsFile(contentsOf: path)
        #expect(file.metadata == Self.metadata)
        #expect(file.tensors.map(\.name) == tensors.map(\.name))
        for t in tensors {
            let read = try #require(file[t.name])
            #expect(read.shape == t.shape)
            #expect(read.values.map(\.bitPattern) == t.values.map(\.bitPattern), "\(t.name)")
        }
        // Only the checkpoint remains: the temporary file was renamed over it.
        #expect(try dir.contents() == ["ckpt.safetensors"])
    }

    @Test func fromAnArena() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let spec = ModelSpec.cnn
        let arena = FloatArena(layout: spec.layout)
        try spec.initialize(seed: 11, into: arena.buffers)
        let views = zip(spec.layout.tensors, arena.buffers).map { SafetensorsWriter.Tensor(name: $0.name, shape: $0.shape, data: $1) }
        try SafetensorsWriter.write(views, metadata: ["layout_hash": String(spec.layout.hash)], to: dir.file("a.safetensors"))
        let file = try SafetensorsFile(contentsOf: dir.file("a.safetensors"))
        #expect(file.tensors.map(\.values) == spec.initialValues(seed: 11))
        #expect(file.metadata["layout_hash"] == String(spec.layout.hash))
    }

    @Test func bytesFollowTheFormat() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("f.safetensors")
        try Self.write([("b", [3], [1, 2, 3]), ("a", [1, 2], [4, 5])], metadata: ["k": "v"], to: path)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let n = bytes.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
        #expect(n % 8 == 0)
        #expect(bytes.count == 8 + n + 20)
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        #expect(header == #"{"__metadata__":{"k":"v"},"b":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"#
            + #""a":{"dtype":"F32","shape":[1,2],"data_offsets":[12,20]}}"# + String(repeating: " ", count: n - header.trimmingCharacters(in: .whitespaces).count))
        let floats = stride(from: 8 + n, to: bytes.count, by: 4).map { i in
            Float(bitPattern: bytes[i..<(i + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) })
        }
        #expect(floats == [1, 2, 3, 4, 5])
    }

    @Test func overwritesAtomicallyAndRefusesBadInput() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("c.safetensors")
        try Self.write([("w", [2], [1, 2])], metadata: [:], to: path)
        try Self.write([("w", [3], [3, 4, 5])], metadata: ["step": "2"], to: path)
        #expect(try SafetensorsFile(contentsOf: path) == SafetensorsFile(metadata: ["step": "2"], tensors: [.init(name: "w", shape: [3], values: [3, 4, 5])]))

        func problem(_ tensors: [(name: String, shape: [Int], values: [Float])]) -> CheckpointError.Problem? {
            do {
                try Self.write(tensors, metadata: [:], to: path)
                return nil
            } catch {
                return (error as? CheckpointError)?.problem
            }
        }
        if case .invalidTensor("w", _) = problem([("w", [2], [1, 2]), ("w", [1], [3])]) {} else { Issue.record("duplicate name") }
        if case .invalidTensor("x", _) = problem([("x", [2, 2], [1, 2])]) {} else { Issue.record("shape mismatch") }
        if case .invalidTensor("__metadata__", _) = problem([("__metadata__", [1], [1])]) {} else { Issue.record("reserved name") }
        // The earlier checkpoint is untouched and no temporary file is left behind.
        #expect(try SafetensorsFile(contentsOf: path)["w"]?.values == [3, 4, 5])
        #expect(try dir.contents() == ["c.safetensors"])
        #expect(throws: CheckpointError.self) {
            try SafetensorsWriter.write([], to: dir.file("no-such-dir/x.safetensors"))
        }
    }

    // MARK: - Corrupt files

    /// A file with `header` as its JSON (padded) and `data` bytes after it.
    static func crafted(_ header: String, data: Int, lengthField: UInt64? = nil) -> [UInt8] {
        var json = Array(header.utf8)
        json += [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8)
        let n = lengthField ?? UInt64(json.count)
        return (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * $0)) } + json + [UInt8](repeating: 0, count: data)
    }

    static func tensor(_ name: String, _ shape: [Int], _ begin: Int, _ end: Int, dtype: String = "F32") -> String {
        #""\#(name)":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":[\#(begin),\#(end)]}"#
    }

    static func valid() -> [UInt8] { crafted("{" + tensor("a", [2], 0, 8) + "," + tensor("b", [1], 8, 12) + "}", data: 12) }

    static let corruptions: [(String, [UInt8], CheckpointError.Problem)] = [
        ("empty file", [], .truncated(fileSize: 0)),
        ("cut inside the length", Array(valid().prefix(5)), .truncated(fileSize: 5)),
        ("cut inside the header", Array(valid().prefix(30)), .headerLengthBeyondFile(headerLength: UInt64(valid().count - 20), fileSize: 30)),
        ("cut inside the data", Array(valid().dropLast(2)), .offsetsOutOfRange(tensor: "b", begin: 8, end: 12, dataSize: 10)),
        ("huge length", crafted("{}", data: 0, lengthField: 1 << 62), .headerLengthBeyondFile(headerLength: 1 << 62, fileSize: 16)),
        ("trailing bytes", valid() + [0, 0, 0, 0], .uncoveredData(begin: 12, end: 16)),
        ("gap", crafted("{" + tensor("a", [1], 0, 4) + "," + tensor("b", [1], 8, 12) + "}", data: 12), .uncoveredData(begin: 4, end: 8)),
        ("hole at start", crafted("{" + tensor("a", [1], 4, 8) + "}", data: 8), .uncoveredData(begin: 0, end: 4)),
        ("overlap", crafted("{" + tensor("a", [2], 0, 8) + "," + tensor("b", [2], 4, 12) + "}", data: 12), .overlapping(tensor: "b", other: "a")),
        ("out of range", crafted("{" + tensor("a", [2], 0, 8) + "}", data: 4), .offsetsOutOfRange(tensor: "a", begin: 0, end: 8, dataSize: 4)),
        ("dtype F16", crafted("{" + tensor("a", [2], 0, 4, dtype: "F16") + "}", data: 4), .unsupportedDType(tensor: "a", dtype: "F16")),
        ("shape vs offsets", crafted("{" + tensor("a", [3], 0, 8) + "}", data: 8), .sizeMismatch(tensor: "a", shape: [3], byteCount: 8)),
    ]

    @Test(arguments: corruptions.indices)
    func corruptFilesAreRefused(index: Int) throws {
        let (name, bytes, expected) = Self.corruptions[index]
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.write("bad.safetensors", bytes)
        #expect(throws: CheckpointError(path: path, problem: expected), "\(name)") {
            try SafetensorsFile(contentsOf: path)
        }
    }

    static let badHeaders: [String] = [
        "{not json",
        "[1, 2]",
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
        #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#,
        #"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#,
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,true]}}"#,
        #"{"a":{"shape":[2],"data_offsets":[0,8]}}"#,
        #"{"a":[1]}"#,
        #"{"__metadata__":{"step":5},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        #"{"__metadata__":"x","a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
    ]

    @Test(arguments: badHeaders)
    func malformedHeadersAreRefused(header: String) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.write("bad.safetensors", Self.crafted(header, data: 8))
        #expect {
            try SafetensorsFile(contentsOf: path)
        } throws: { error in
            guard let e = error as? CheckpointError, e.path == path, case .badHeader = e.problem else { return false }
            return e.description.hasPrefix("checkpoint \(path): bad safetensors header")
        }
    }

    @Test func missingFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(throws: CheckpointError(path: dir.file("none"), problem: .missingFile)) {
            try SafetensorsFile(contentsOf: dir.file("none"))
        }
    }

    // MARK: - Python interoperability

    static let python: (usable: Bool, why: String) = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import numpy, safetensors.numpy"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do {
            try p.run()
            p.waitUntilExit()
        } catch {
            return (false, "python3 not found")
        }
        return (p.terminationStatus == 0, "python3 with numpy and safetensors needed (pip install safetensors)")
    }()

    static func runPython(_ script: String, _ arguments: [String]) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script] + arguments
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "python3 exited with \(p.terminationStatus)")
        return data
    }

    struct PythonView: Decodable {
        var metadata: [String: String]
        var tensors: [String: PythonTensor]
    }

    struct PythonTensor: Decodable {
        var dtype: String
        var shape: [Int]
        var bits: [UInt32]
    }

    @Test(.enabled(if: python.usable, "\(python.why)"))
    func pythonSafetensorsReadsOurFilesAndWeReadItsFiles() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let ours = dir.file("ours.safetensors"), theirs = dir.file("theirs.safetensors")
        let tensors = Self.sampleTensors()
        try Self.write(tensors, metadata: Self.metadata, to: ours)

        let script = """
        import json, sys
        import numpy as np
        from safetensors import safe_open
        from safetensors.numpy import load_file, save_file
        tensors = load_file(sys.argv[1])
        with safe_open(sys.argv[1], "np") as f:
            metadata = f.metadata()
        print(json.dumps({"metadata": metadata, "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape),
            "bits": v.reshape(-1).view(np.uint32).tolist()} for k, v in tensors.items()}}))
        save_file({"x": np.arange(6, dtype=np.float32).reshape(2, 3) / 7, "m/x": np.full((4,), -1.5, np.float32)},
                  sys.argv[2], metadata={"step": "9", "cfg": json.dumps({"eta": 0.001})})
        """
        let view = try JSONDecoder().decode(PythonView.self, from: Self.runPython(script, [ours, theirs]))
        #expect(view.metadata == Self.metadata)
        #expect(Set(view.tensors.keys) == Set(tensors.map(\.name)))
        for t in tensors {
            let p = try #require(view.tensors[t.name])
            #expect(p.dtype == "float32" && p.shape == t.shape, "\(t.name)")
            #expect(p.bits == t.values.map(\.bitPattern), "\(t.name)")
        }

        let file = try SafetensorsFile(contentsOf: theirs)
        #expect(file.metadata == ["step": "9", "cfg": #"{"eta": 0.001}"#])
        #expect(file["x"] == .init(name: "x", shape: [2, 3], values: (0..<6).map { Float($0) / 7 }))
        #expect(file["m/x"] == .init(name: "m/x", shape: [4], values: [-1.5, -1.5, -1.5, -1.5]))
    }
}
