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

    /// `awaitStep` sleeps on the file until the server writes the step asked for (here from
    /// another thread, 50 ms on), then copies it; it copies nothing when its claim is refused,
    /// returns when told to give up while the step is not there, and does the caller's work
    /// while it waits.
    @Test func aWaitingWorkerCopiesTheStepWhenItIsWritten() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try SharedWeightFile.create(elements: 1004, directory: dir)
        let worker = try SharedWeightFile.open(path: server.path, nonce: server.nonce, elements: 1004)
        _ = publish(server, step: 4, Self.tensors(seed: 2))
        let w5 = Self.tensors(seed: 9)
        let writer = Thread { [self] in
            usleep(50_000)
            _ = publish(server, step: 5, w5)
        }
        writer.start()
        var out: [[Float]] = [3, 1, 1000].map { Array(repeating: -1, count: $0) }
        let outcome = withPointers(&out) { worker.awaitStep(5, into: $0, claim: { true }, giveUp: { false }) }
        #expect(outcome == .copied(step: 5))
        #expect(out == w5)

        // A later step than the one asked for is taken as well; a refused claim writes nothing.
        var untouched: [[Float]] = [3, 1, 1000].map { Array(repeating: -1, count: $0) }
        let refused = withPointers(&untouched) { worker.awaitStep(4, into: $0, claim: { false }, giveUp: { false }) }
        #expect(refused == .notClaimed)
        #expect(untouched.allSatisfy { $0.allSatisfy { $0 == -1 } })

        var asks = 0
        let given = withPointers(&untouched) { worker.awaitStep(6, into: $0, claim: { true }, giveUp: { asks += 1; return asks > 2 }) }
        #expect(given == .gaveUp(claimed: false))
        #expect(asks == 3)

        // While the step is not there, the caller's own work runs (three pieces here) before
        // any sleep; the step still comes back when it is written.
        var pieces = 0
        let w6 = Self.tensors(seed: 4)
        let second = Thread { [self] in
            usleep(50_000)
            _ = publish(server, step: 6, w6)
        }
        second.start()
        let worked = withPointers(&out) {
            worker.awaitStep(6, into: $0, claim: { true }, giveUp: { false }, work: { pieces += 1; return pieces < 3 })
        }
        #expect(worked == .copied(step: 6))
        #expect(out == w6)
        #expect(pieces >= 3)
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

    /// A writer that computes a step straight into a slot (`beginWrite`): while it writes, the
    /// slot's old step is no longer readable and is not the newest; `finishWrite` publishes the
    /// values and the step together; `abandonWrite` leaves the slot without a step, and the
    /// next write goes to it again.
    @Test func aStepWrittenInPlaceIsReadOnlyOnceFinished() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try SharedWeightFile.create(elements: 1004, directory: dir)
        let worker = try SharedWeightFile.open(path: server.path, nonce: server.nonce, elements: 1004)
        let w1 = Self.tensors(seed: 1), w2 = Self.tensors(seed: 2), w3 = Self.tensors(seed: 3)
        let s1 = publish(server, step: 1, w1)
        let s2 = publish(server, step: 2, w2)

        let write = server.beginWrite(counts: [3, 1, 1000])
        #expect(write.slot == s1, "the write goes where the older step is")
        #expect(read(worker, step: 1, slot: s1) == nil, "a slot under way was read")
        #expect(worker.newestStep()?.step == 2)
        for (k, t) in write.tensors.enumerated() { _ = t.update(fromContentsOf: w3[k]) }
        #expect(read(worker, step: 1, slot: s1) == nil)
        #expect(server.finishWrite(step: 3) == s1)
        #expect(read(worker, step: 3, slot: s1) == w3)
        #expect(worker.newestStep()?.step == 3)
        #expect(read(worker, step: 2, slot: s2) == w2, "the other slot is untouched")

        let abandoned = server.beginWrite(counts: [3, 1, 1000])
        #expect(abandoned.slot == s2)
        abandoned.tensors[2][0] = -99
        server.abandonWrite()
        #expect(read(worker, step: 2, slot: s2) == nil, "an abandoned slot still claims its step")
        #expect(worker.newestStep()?.step == 3)
        #expect(publish(server, step: 4, w1) == s2, "the next write did not reuse the abandoned slot")
        #expect(read(worker, step: 4, slot: s2) == w1)
    }

    /// A worker's gradient file (`createSealed`) is a memfd whose size no one can change: the
    /// server, which maps it, can rely on that (`open(sealed: true)`), and refuses a file that
    /// could be cut short under its mapping. The sealed file reads like any other.
    @Test func aSealedFileCannotBeCutShortAndOnlySuchFilesOpenAsSealed() throws {
        let sealed = try SharedWeightFile.createSealed(elements: 1004)
        #expect(sealed.path.hasPrefix("/proc/\(getpid())/fd/"))
        let shrunk = truncate(sealed.path, 4096), shrinkError = errno
        #expect(shrunk == -1 && shrinkError == EPERM, "a sealed file was cut short")
        let grown = truncate(sealed.path, 1 << 24), growError = errno
        #expect(grown == -1 && growError == EPERM, "a sealed file grew")
        let mapped = try SharedWeightFile.open(path: sealed.path, nonce: sealed.nonce, elements: 1004, sealed: true)
        let values = Self.tensors(seed: 3)
        for (k, t) in sealed.tensors(inSlot: 0, counts: [3, 1, 1000]).enumerated() { _ = t.update(fromContentsOf: values[k]) }
        #expect(mapped.tensors(inSlot: 0, counts: [3, 1, 1000]).map { Array($0) } == values)
        sealed.remove()   // no name: nothing to remove, and the file stays usable
        #expect(FileManager.default.fileExists(atPath: sealed.path))

        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let named = try SharedWeightFile.create(elements: 1004, directory: dir)
        let unsealed = #expect(throws: SharedWeightError.self) {
            try SharedWeightFile.open(path: named.path, nonce: named.nonce, elements: 1004, sealed: true)
        }
        #expect(unsealed?.reason.contains("not sealed against shrinking") == true)
    }

    @Test func theServerRemovesItsFileAndFilesNoLiveServerHolds() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A live server's file (locked while it exists), one left by a crash (nobody holds its
        // lock), and a file that is not ours.
        let live = try SharedWeightFile.create(elements: 4, directory: dir)
        let stale = dir + "/lars-ps-\(getpid())-abc"
        let other = dir + "/unrelated-file"
        for path in [stale, other] { FileManager.default.createFile(atPath: path, contents: Data([1])) }
        var server: SharedWeightFile? = try SharedWeightFile.create(elements: 4, directory: dir)
        let path = try #require(server?.path)
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(FileManager.default.fileExists(atPath: live.path))
        #expect(FileManager.default.fileExists(atPath: other))
        #expect(FileManager.default.fileExists(atPath: path))
        server = nil
        #expect(!FileManager.default.fileExists(atPath: path), "the owner's file goes with it")
        #expect(FileManager.default.fileExists(atPath: live.path))
    }

    /// A writer publishing step after step while a reader copies: every copy the reader accepts
    /// holds one step's values throughout, and it is the step it asked for.
    @Test func aCopyThatRacesTheWriterIsNeverAccepted() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let elements = 1 << 18
        let server = try SharedWeightFile.create(elements: elements, directory: dir)
        let worker = try SharedWeightFile.open(path: server.path, nonce: server.nonce, elements: elements)
        let published = Published()
        let writer = Thread {
            let source = UnsafeMutableBufferPointer<Float>.allocate(capacity: elements)
            defer { source.deallocate() }
            for step in 1...4000 {
                source.update(repeating: Float(step))
                let slot = server.publish(step: UInt64(step), tensors: [UnsafeBufferPointer(source)])
                published.set(step: step, slot: slot)
            }
            published.finish()
        }
        writer.start()
        let target = UnsafeMutableBufferPointer<Float>.allocate(capacity: elements)
        defer { target.deallocate() }
        var accepted = 0, refused = 0
        while let (step, slot) = published.latest() {
            if worker.read(step: UInt64(step), slot: slot, into: [target]) {
                accepted += 1
                let whole = target.allSatisfy { $0 == Float(step) }
                #expect(whole, "an accepted copy of step \(step) holds other values")
                if !whole { break }
            } else {
                refused += 1
            }
        }
        print("shared weight race: \(accepted) copies accepted, \(refused) refused")
        // Once the writer has stopped, the last step reads whole.
        let last = try #require(published.last)
        #expect(worker.read(step: UInt64(last.step), slot: last.slot, into: [target]))
        #expect(target.allSatisfy { $0 == Float(last.step) })
    }
}

/// The writer's latest step and slot, for the race test's reader.
private final class Published: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (step: Int, slot: UInt32)?
    private var done = false

    func set(step: Int, slot: UInt32) { lock.withLock { value = (step, slot) } }
    var last: (step: Int, slot: UInt32)? { lock.withLock { value } }
    func finish() { lock.withLock { done = true } }

    /// The latest publish, nil once the writer is done.
    func latest() -> (Int, UInt32)? {
        lock.withLock { done ? nil : value ?? (0, 0) }
    }
}
