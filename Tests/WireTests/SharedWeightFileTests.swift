import Foundation
import Testing

@testable import Wire

/// The shared weight file: what a worker copies out is what the server wrote, the two slots
/// alternate so the previous step stays readable, a reader that lost the race knows it, and a
/// file that is not the one WELCOME described is refused.
@Suite struct SharedWeightFileTests {
    /// Tensors of 3, 1 and 1000 elements (layout order), filled from `seed`.
    static func tensors(seed: Float) -> [[Float]] {
        [3, 1, 1000].map { n in (0..<n).map { seed + Float($0) * 0.25 } }
    }

    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "lars-shm-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func publish(_ file: SharedWeightFile, step: UInt64, _ values: [[Float]]) -> UInt32 {
        var copies = values
        return withPointers(&copies) { file.publish(step: step, tensors: $0.map { UnsafeBufferPointer($0) }) }
    }

    /// Calls `body` with buffers holding `arrays`, then copies the buffers back into `arrays`.
    func withPointers<R>(_ arrays: inout [[Float]], _ body: ([UnsafeMutableBufferPointer<Float>]) -> R) -> R {
        let buffers = arrays.map { a in
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: a.count)
            _ = b.initialize(from: a)
            return b
        }
        defer { buffers.forEach { $0.deallocate() } }
        let result = body(buffers)
        arrays = buffers.map(Array.init)
        return result
    }

    func read(_ file: SharedWeightFile, step: UInt64, slot: UInt32) -> [[Float]]? {
        var out: [[Float]] = [3, 1, 1000].map { Array(repeating: -1, count: $0) }
        let ok = withPointers(&out) { file.read(step: step, slot: slot, into: $0) }
        return ok ? out : nil
    }

    @Test func aWorkerReadsWhatTheServerWroteAndTheSlotsAlternate() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try SharedWeightFile.create(elements: 1004, directory: dir)
        let worker = try SharedWeightFile.open(path: server.path, nonce: server.nonce, elements: 1004)
        #expect((server.path as NSString).lastPathComponent.hasPrefix("lars-ps-\(getpid())-"))

        let w0 = Self.tensors(seed: 1), w1 = Self.tensors(seed: -7), w2 = Self.tensors(seed: 0.5)
        let s0 = publish(server, step: 10, w0)
        let s1 = publish(server, step: 11, w1)
        #expect(s0 != s1)
        #expect(read(worker, step: 10, slot: s0) == w0, "step 10 stays readable after step 11 is written")
        #expect(read(worker, step: 11, slot: s1) == w1)
        // Step 12 goes where step 10 was: a reader that wanted 10 learns that the slot moved on.
        let s2 = publish(server, step: 12, w2)
        #expect(s2 == s0)
        #expect(read(worker, step: 10, slot: s0) == nil)
        #expect(read(worker, step: 12, slot: s2) == w2)
        // A slot that does not exist, or tensors that do not add up to the file's size.
        #expect(read(worker, step: 12, slot: 2) == nil)
        var short: [[Float]] = [[0, 0, 0]]
        #expect(withPointers(&short) { worker.read(step: 12, slot: s2, into: $0) } == false)
    }

    @Test func aFileThatIsNotTheOneDescribedIsRefused() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try SharedWeightFile.create(elements: 1004, directory: dir)
        let wrongNonce = #expect(throws: SharedWeightError.self) {
            try SharedWeightFile.open(path: server.path, nonce: server.nonce &+ 1, elements: 1004)
        }
        #expect(wrongNonce?.reason.contains("nonce") == true)
        let wrongSize = #expect(throws: SharedWeightError.self) {
            try SharedWeightFile.open(path: server.path, nonce: server.nonce, elements: 5000)
        }
        #expect(wrongSize?.reason.contains("expected") == true)
        let missing = #expect(throws: SharedWeightError.self) {
            try SharedWeightFile.open(path: dir + "/lars-ps-1-none", nonce: 1, elements: 4)
        }
        #expect(missing?.description.contains("lars-ps-1-none") == true)
    }

    @Test func theServerRemovesItsFileAndFilesOfServersThatAreGone() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A pid far above any pid_max the kernel allows: no such process.
        let stale = dir + "/lars-ps-2147483000-abc"
        let mine = dir + "/lars-ps-\(getpid())-def"
        let other = dir + "/unrelated-file"
        for path in [stale, mine, other] { FileManager.default.createFile(atPath: path, contents: Data([1])) }
        var server: SharedWeightFile? = try SharedWeightFile.create(elements: 4, directory: dir)
        let path = try #require(server?.path)
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(FileManager.default.fileExists(atPath: mine))
        #expect(FileManager.default.fileExists(atPath: other))
        #expect(FileManager.default.fileExists(atPath: path))
        server = nil
        #expect(!FileManager.default.fileExists(atPath: path), "the owner's file goes with it")
    }
}
