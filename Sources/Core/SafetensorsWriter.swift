import Foundation
#if canImport(Glibc)
import Glibc
#endif

#if !_endian(little)
#error("safetensors stores little-endian data; tensors are written as they lie in memory")
#endif

/// Writes named Float32 tensors and string metadata as one safetensors file, atomically: a
/// reader sees the old file or the complete new one, also after a crash.
public enum SafetensorsWriter {
    /// One tensor to write, borrowed from the caller for the duration of `write`.
    public struct Tensor {
        /// Name in the file, e.g. `fc1.weight` or `momentum/fc1.weight`.
        public var name: String
        /// Dimensions, outermost first.
        public var shape: [Int]
        /// The elements, row-major; `shape`'s product of them.
        public var data: UnsafeBufferPointer<Float>

        public init(name: String, shape: [Int], data: UnsafeBufferPointer<Float>) {
            self.name = name
            self.shape = shape
            self.data = data
        }

        public init(name: String, shape: [Int], data: UnsafeMutableBufferPointer<Float>) {
            self.init(name: name, shape: shape, data: UnsafeBufferPointer(data))
        }
    }

    /// Writes `tensors` (in this order in the data section) and `metadata` to `path`: a temporary
    /// file in the same directory is written from the caller's buffers, fsynced and renamed over
    /// `path`, then the directory is fsynced. On failure `path` is untouched and the temporary
    /// file removed.
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to path: String) throws(CheckpointError) {
        func fail(_ p: CheckpointError.Problem) -> CheckpointError { CheckpointError(path: path, problem: p) }

        var entries: [SafetensorsHeader.Entry] = []
        var names: Set<String> = []
        var offset = 0
        for t in tensors {
            guard !t.name.isEmpty, t.name != "__metadata__" else {
                throw fail(.invalidTensor(name: t.name, reason: "empty and \"__metadata__\" are not tensor names"))
            }
            guard names.insert(t.name).inserted else { throw fail(.invalidTensor(name: t.name, reason: "name given twice")) }
            guard t.shape.allSatisfy({ $0 >= 0 }), t.shape.reduce(1, *) == t.data.count else {
                throw fail(.invalidTensor(name: t.name, reason: "shape \(t.shape) does not hold the buffer's \(t.data.count) elements"))
            }
            let bytes = t.data.count * MemoryLayout<Float>.size
            entries.append(.init(name: t.name, shape: t.shape, begin: offset, end: offset + bytes))
            offset += bytes
        }
        let header = SafetensorsHeader(metadata: metadata, entries: entries).encoded()

        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail(.io(operation: "create \(temporary)", reason: Self.lastError())) }
        var open = true
        do throws(CheckpointError) {
            if let p = header.withUnsafeBytes({ writeAll(fd, $0) }) { throw fail(p) }
            for t in tensors {
                if let p = writeAll(fd, UnsafeRawBufferPointer(t.data)) { throw fail(p) }
            }
            guard fsync(fd) == 0 else { throw fail(.io(operation: "fsync", reason: Self.lastError())) }
            open = false
            guard close(fd) == 0 else { throw fail(.io(operation: "close", reason: Self.lastError())) }
            guard rename(temporary, path) == 0 else {
                throw fail(.io(operation: "rename \(temporary) to \(path)", reason: Self.lastError()))
            }
        } catch {
            if open { close(fd) }
            unlink(temporary)
            throw error
        }
        // Makes the rename itself durable.
        let dfd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw fail(.io(operation: "open directory \(directory)", reason: Self.lastError())) }
        defer { close(dfd) }
        guard fsync(dfd) == 0 else { throw fail(.io(operation: "fsync directory \(directory)", reason: Self.lastError())) }
    }

    /// Writes all of `bytes`; returns the problem if that fails.
    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> CheckpointError.Problem? {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, min(bytes.count - done, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                return .io(operation: "write", reason: lastError())
            }
            done += n
        }
        return nil
    }

    static func lastError() -> String { String(cString: strerror(errno)) }
}
