import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The contents of a safetensors checkpoint, read whole and checked before anything is returned.
public struct SafetensorsFile: Sendable, Equatable {
    /// One Float32 tensor of the file.
    public struct Tensor: Sendable, Equatable {
        public var name: String
        /// Dimensions, outermost first.
        public var shape: [Int]
        /// The elements, row-major.
        public var values: [Float]

        public init(name: String, shape: [Int], values: [Float]) {
            self.name = name
            self.shape = shape
            self.values = values
        }
    }

    /// The `__metadata__` map (nested values are JSON-encoded strings).
    public var metadata: [String: String]
    /// Every tensor, in the order of the data section.
    public var tensors: [Tensor]

    public init(metadata: [String: String], tensors: [Tensor]) {
        self.metadata = metadata
        self.tensors = tensors
    }

    /// The tensor called `name`, if any.
    public subscript(name: String) -> Tensor? {
        tensors.first { $0.name == name }
    }

    /// Reads and validates the safetensors file at `path`: header length, JSON, every tensor's
    /// dtype, shape and byte range, and the data section's size are checked before any data is
    /// read. Throws a `CheckpointError` naming the first problem; never returns part of a file.
    public init(contentsOf path: String) throws(CheckpointError) {
        func fail(_ p: CheckpointError.Problem) -> CheckpointError { CheckpointError(path: path, problem: p) }

        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw fail(errno == ENOENT ? .missingFile : .io(operation: "open", reason: SafetensorsWriter.lastError()))
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw fail(.io(operation: "stat", reason: SafetensorsWriter.lastError())) }
        let fileSize = Int(status.st_size)

        guard fileSize >= 8 else { throw fail(.truncated(fileSize: fileSize)) }
        var prefix = [UInt8](repeating: 0, count: 8)
        if let p = prefix.withUnsafeMutableBytes({ Self.readAll(fd, into: $0, at: 0) }) { throw fail(p) }
        let headerLength = prefix.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard headerLength <= UInt64(fileSize - 8) else {
            throw fail(.headerLengthBeyondFile(headerLength: headerLength, fileSize: fileSize))
        }
        guard headerLength <= SafetensorsHeader.maxLength else {
            throw fail(.headerTooLarge(headerLength: headerLength, limit: SafetensorsHeader.maxLength))
        }
        var json = [UInt8](repeating: 0, count: Int(headerLength))
        if let p = json.withUnsafeMutableBytes({ Self.readAll(fd, into: $0, at: 8) }) { throw fail(p) }
        let dataStart = 8 + Int(headerLength)
        let header = try SafetensorsHeader.decode(json, dataSize: fileSize - dataStart, path: path)

        var tensors: [Tensor] = []
        tensors.reserveCapacity(header.entries.count)
        for e in header.entries {
            let count = (e.end - e.begin) / MemoryLayout<Float>.size
            var values = [Float](repeating: 0, count: count)
            if let p = values.withUnsafeMutableBytes({ Self.readAll(fd, into: $0, at: dataStart + e.begin) }) { throw fail(p) }
            tensors.append(Tensor(name: e.name, shape: e.shape, values: values))
        }
        self.init(metadata: header.metadata, tensors: tensors)
    }

    /// Fills `buffer` from `offset`; returns the problem if that fails.
    private static func readAll(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> CheckpointError.Problem? {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, min(buffer.count - done, 1 << 30), off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                return .io(operation: "read", reason: SafetensorsWriter.lastError())
            }
            if n == 0 { return .io(operation: "read", reason: "file shrank while being read") }
            done += n
        }
        return nil
    }
}
