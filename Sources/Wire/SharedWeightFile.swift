import CSharedMemory
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a shared weight file could not be made or used. The session goes on over TCP.
public struct SharedWeightError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var reason: String

    public var description: String { "shared weight file \(path): \(reason)" }
}

/// The weights of the latest steps in a file in shared memory (`/dev/shm`), for workers on the
/// server's own host: a pull is answered with the slot that holds the step (WEIGHTS_SHARED, a
/// few bytes) instead of the weights themselves over loopback TCP (docs/wire-protocol.md §8, "Shared weights").
///
/// The file holds a header and two slots; each slot holds every tensor of the layout, in
/// layout order, as little-endian float32. The server writes the newest step into the slot
/// that does not hold the one before, so a reader of the previous step is never disturbed by
/// the next one. A slot's sequence counter is odd while it is written and even when it is
/// stable (a sequence lock): a reader copies the slot, then checks that the counter did not
/// move and that the slot still holds the step it wanted. A reader that loses that race (the
/// server moved on two steps while it copied) pulls over TCP instead.
///
/// Every write of a slot also counts up a 32-bit word and wakes the threads that sleep on it (a
/// Linux futex): a worker whose pull is outstanding can wait on the file itself and copy the
/// step the moment it is written, without waiting for the server's answer to reach it through
/// the event loops of both processes (`awaitStep`).
///
/// Header (little-endian, 4096 bytes): magic `LARSSHW1` at 0, nonce at 8 (the server's random
/// number, also in WELCOME's job JSON, so a worker never reads another server's file), element
/// count at 16, slot count at 24, the 32-bit count of slot writes at 32; slot k's sequence
/// counter at 64 + 64k and its step at 72 + 64k. Slot k's data starts at 4096 + k x (element count x 4, rounded up to 4096).
public final class SharedWeightFile: @unchecked Sendable {
    public let path: String
    public let nonce: UInt64
    /// Float32 elements per slot: every tensor of the layout.
    public let elements: Int
    private let base: UnsafeMutableRawPointer
    private let length: Int
    private let slotBytes: Int
    /// The writer's descriptor, open for the file's life: for a named file with an exclusive
    /// `flock`, the mark of a live server that `removeStale` looks for; for a sealed file
    /// (``createSealed(elements:)``) the descriptor its `/proc` path names. -1 for a reader.
    private let lockDescriptor: Int32
    /// Whether the writer owns a name in a directory (`create`), which goes with it.
    private let isNamed: Bool
    /// Whether this is the side that made the file and writes it.
    private var isWriter: Bool { lockDescriptor >= 0 }
    /// The slot the next publish writes (the writer only).
    private var nextSlot = 0

    static let magic: UInt64 = 0x3157_4853_5352_414C  // "LARSSHW1", little-endian
    static let headerBytes = 4096
    static let slotCount = 2
    /// The step a slot holds before anything was written to it.
    static let emptyStep = UInt64.max
    /// The prefix of every shared weight file's name.
    public static let namePrefix = "lars-ps-"

    private init(
        path: String, nonce: UInt64, elements: Int, base: UnsafeMutableRawPointer, length: Int, lockDescriptor: Int32 = -1,
        isNamed: Bool = true
    ) {
        self.path = path
        self.nonce = nonce
        self.elements = elements
        self.base = base
        self.length = length
        self.slotBytes = Self.slotBytes(elements: elements)
        self.lockDescriptor = lockDescriptor
        self.isNamed = isNamed
    }

    deinit {
        munmap(base, length)
        if isWriter {
            if isNamed { unlink(path) }
            close(lockDescriptor)
        }
    }

    /// Most elements a file may hold: its size must fit in an `Int` with room to spare.
    static let maxElements = Int.max / 16

    /// Refuses an element count whose file size would not fit.
    private static func checkElements(_ elements: Int, path: String) throws(SharedWeightError) {
        guard elements > 0, elements <= maxElements else {
            throw SharedWeightError(path: path, reason: "\(elements) elements: expected 1...\(maxElements)")
        }
    }

    static func slotBytes(elements: Int) -> Int { (elements * 4 + 4095) / 4096 * 4096 }
    static func fileBytes(elements: Int) -> Int { headerBytes + slotCount * slotBytes(elements: elements) }

    // MARK: The server's side

    /// Makes a new file for `elements` float32 values per slot in `directory`, named after this
    /// process and a random nonce, readable and writable by its owner only, with all its space
    /// reserved (a full or small `/dev/shm`, such as a container's 64 MB default, is an error
    /// here, not a SIGBUS at the first write). Files in `directory` that no live server holds
    /// (left by a crash) are removed first.
    public static func create(elements: Int, directory: String = "/dev/shm") throws(SharedWeightError) -> SharedWeightFile {
        removeStale(in: directory)
        let nonce = UInt64.random(in: 1...UInt64.max)
        let path = (directory as NSString).appendingPathComponent(
            "\(namePrefix)\(getpid())-\(String(nonce, radix: 16))")
        try checkElements(elements, path: path)
        let fd = openDescriptor(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SharedWeightError(path: path, reason: "cannot create it: \(errnoText())") }
        func fail(_ reason: String) -> SharedWeightError {
            unlink(path)
            close(fd)
            return SharedWeightError(path: path, reason: reason)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { throw fail("cannot lock it: \(errnoText())") }
        let length = fileBytes(elements: elements)
        let reserved = posix_fallocate(fd, 0, off_t(length))
        guard reserved == 0 else {
            throw fail("cannot reserve \(length) bytes in \(directory): \(String(cString: strerror(reserved)))")
        }
        guard let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw fail("cannot map it: \(errnoText())")
        }
        return SharedWeightFile(
            path: path, nonce: nonce, elements: elements, base: base, length: length, lockDescriptor: fd
        ).withHeader()
    }

    /// Makes a new nameless file for `elements` float32 values per slot: a memfd with all its
    /// space reserved and sealed so that its size never changes, which no process can cut short.
    /// Its `path` is `/proc/<this process>/fd/<descriptor>`, valid while the file lives; other
    /// processes of the same user in the same PID namespace can open it there. A worker computes
    /// its gradients into one (``ClientSession/shareGradients(_:)``): the server maps it and
    /// reads pushes straight from it, safe from SIGBUS because it cannot shrink (see
    /// ``open(path:nonce:elements:sealed:)``). Nothing is left behind when the process ends.
    public static func createSealed(elements: Int) throws(SharedWeightError) -> SharedWeightFile {
        let nonce = UInt64.random(in: 1...UInt64.max)
        try checkElements(elements, path: "memfd")
        let length = fileBytes(elements: elements)
        let fd = lars_memfd_create_sealed("\(namePrefix)gradients", Int64(length))
        guard fd >= 0 else {
            throw SharedWeightError(path: "memfd", reason: "cannot make a sealed file of \(length) bytes: \(errnoText())")
        }
        let path = "/proc/\(getpid())/fd/\(fd)"
        guard let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            let reason = "cannot map it: \(errnoText())"
            close(fd)
            throw SharedWeightError(path: path, reason: reason)
        }
        return SharedWeightFile(
            path: path, nonce: nonce, elements: elements, base: base, length: length, lockDescriptor: fd, isNamed: false
        ).withHeader()
    }

    /// Writes a new file's header, the magic last: a reader that sees it sees the rest.
    private func withHeader() -> SharedWeightFile {
        word(at: 8).pointee = nonce
        word(at: 16).pointee = UInt64(elements)
        word(at: 24).pointee = UInt64(Self.slotCount)
        for k in 0..<Self.slotCount {
            stepWord(ofSlot: k).pointee = Self.emptyStep
        }
        lars_store_release(word(at: 0), Self.magic)
        return self
    }

    /// Writes the weights of `step` (every tensor of the layout, in order) into the slot that
    /// does not hold the previous step, and returns that slot.
    public func publish(step: UInt64, tensors: [UnsafeBufferPointer<Float>]) -> UInt32 {
        precondition(tensors.reduce(0) { $0 + $1.count } == elements, "publish of tensors that do not fill a slot")
        let slot = beginWrite(counts: tensors.map(\.count))
        for (destination, source) in zip(slot.tensors, tensors) where source.count > 0 {
            destination.baseAddress!.update(from: source.baseAddress!, count: source.count)
        }
        return finishWrite(step: step)
    }

    /// A slot being written: `beginWrite` marks it so that no reader takes it, and the writer
    /// fills `tensors` in place, then calls `finishWrite` (or `abandonWrite`).
    public struct SlotWrite {
        public let slot: UInt32
        /// The slot as one buffer per tensor, in layout order.
        public let tensors: [UnsafeMutableBufferPointer<Float>]
    }

    /// The slot under way, between `beginWrite` and `finishWrite` or `abandonWrite`.
    private var writing: (slot: Int, before: UInt64)?

    /// Starts writing the next step into the slot that does not hold the newest one, for a
    /// writer that computes the values straight into it (the server's update writes W_{t+1}
    /// there, so that waiting workers are woken without a copy first). Readers of that slot's
    /// old step see it change and fall back, as with `publish`.
    public func beginWrite(counts: [Int]) -> SlotWrite {
        precondition(isWriter, "a write to a shared weight file opened for reading")
        precondition(writing == nil, "beginWrite while another write is under way")
        precondition(counts.reduce(0, +) == elements, "a write of tensors that do not fill a slot")
        let slot = nextSlot
        nextSlot = (nextSlot + 1) % Self.slotCount
        let sequence = sequenceWord(ofSlot: slot)
        let before = lars_load_relaxed(sequence)
        lars_store_relaxed(sequence, before | 1)
        lars_fence_release()
        writing = (slot, before)
        return SlotWrite(slot: UInt32(slot), tensors: tensors(inSlot: slot, counts: counts))
    }

    /// Publishes the slot `beginWrite` gave out as holding `step`, wakes every thread waiting on
    /// the file, and returns the slot.
    @discardableResult
    public func finishWrite(step: UInt64) -> UInt32 {
        guard let (slot, before) = writing else { preconditionFailure("finishWrite without beginWrite") }
        writing = nil
        lars_store_relaxed(stepWord(ofSlot: slot), step)
        lars_store_release(sequenceWord(ofSlot: slot), (before | 1) + 1)
        lars_increment_release32(writes)
        lars_futex_wake_all(writes)
        return UInt32(slot)
    }

    /// Gives up the write `beginWrite` started: the slot then holds no step (its old one may be
    /// partly overwritten), and the next write goes to it again.
    public func abandonWrite() {
        guard let (slot, before) = writing else { return }
        writing = nil
        lars_store_relaxed(stepWord(ofSlot: slot), Self.emptyStep)
        lars_store_release(sequenceWord(ofSlot: slot), (before | 1) + 1)
        nextSlot = slot
    }

    /// Removes the file's name; mappings (the server's, the workers') stay valid until unmapped.
    /// Nothing for a sealed file, which has no name.
    public func remove() {
        if isNamed { unlink(path) }
    }

    /// Removes files `create` made in `directory` that no live server holds: a server keeps an
    /// exclusive `flock` on its file while it runs, so a file this process can open and lock is
    /// stale. (A process id would not do: servers in other PID namespaces can share /dev/shm.)
    /// Files of other users cannot be opened and stay.
    static func removeStale(in directory: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasPrefix(namePrefix) {
            let path = (directory as NSString).appendingPathComponent(name)
            let fd = openDescriptor(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0)
            guard fd >= 0 else { continue }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { unlink(path) }
            close(fd)
        }
    }

    // MARK: A worker's side

    /// Maps the file at `path` for reading and checks that it is the one the server described:
    /// the magic, `nonce` and `elements` must match. With `sealed`, the file must also be sealed
    /// against shrinking (``createSealed(elements:)``), so that reading the mapping can never
    /// fault with SIGBUS whatever its maker does: how the server maps a worker's gradient file.
    public static func open(path: String, nonce: UInt64, elements: Int, sealed: Bool = false) throws(SharedWeightError) -> SharedWeightFile {
        try checkElements(elements, path: path)
        let fd = openDescriptor(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw SharedWeightError(path: path, reason: "cannot open it: \(errnoText())") }
        defer { close(fd) }
        guard !sealed || lars_is_sealed_against_shrinking(fd) != 0 else {
            throw SharedWeightError(path: path, reason: "not sealed against shrinking (a memfd with F_SEAL_SHRINK expected): it could be cut short under a mapping")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SharedWeightError(path: path, reason: "cannot stat it: \(errnoText())") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw SharedWeightError(path: path, reason: "not a regular file") }
        let length = fileBytes(elements: elements)
        guard Int(info.st_size) == length else {
            throw SharedWeightError(path: path, reason: "\(info.st_size) bytes, expected \(length) for \(elements) elements")
        }
        guard let base = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw SharedWeightError(path: path, reason: "cannot map it: \(errnoText())")
        }
        let file = SharedWeightFile(path: path, nonce: nonce, elements: elements, base: base, length: length)
        guard lars_load_acquire(file.word(at: 0)) == magic else {
            throw SharedWeightError(path: path, reason: "not a shared weight file (wrong magic)")
        }
        let found = (file.word(at: 8).pointee, file.word(at: 16).pointee, file.word(at: 24).pointee)
        guard found == (nonce, UInt64(elements), UInt64(slotCount)) else {
            throw SharedWeightError(
                path: path,
                reason: "nonce/elements/slots \(found.0)/\(found.1)/\(found.2), expected \(nonce)/\(elements)/\(slotCount)")
        }
        return file
    }

    /// Copies the weights of `step` from `slot` into `tensors` (every tensor of the layout, in
    /// order). False when the slot no longer holds `step` or was being written during the copy:
    /// the tensors then hold garbage and the caller pulls over TCP.
    public func read(step: UInt64, slot: UInt32, into tensors: [UnsafeMutableBufferPointer<Float>]) -> Bool {
        guard Int(slot) < Self.slotCount, tensors.reduce(0, { $0 + $1.count }) == elements else { return false }
        let k = Int(slot)
        let sequence = sequenceWord(ofSlot: k)
        let before = lars_load_acquire(sequence)
        guard before & 1 == 0, lars_load_relaxed(stepWord(ofSlot: k)) == step else { return false }
        var source = UnsafeRawPointer(data(ofSlot: k))
        for tensor in tensors {
            if let destination = tensor.baseAddress, tensor.count > 0 {
                UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: tensor.count * 4)
            }
            source += tensor.count * 4
        }
        lars_fence_acquire()
        return lars_load_relaxed(sequence) == before
    }

    /// What ``awaitStep(_:into:claim:giveUp:work:)`` or ``awaitSlot(_:claim:giveUp:work:)`` did.
    public enum AwaitOutcome: Equatable, Sendable {
        /// The weights of this step (the one waited for or a later one) are in the tensors.
        case copied(step: UInt64)
        /// (`awaitSlot`) This slot holds this step (the one waited for or a later one).
        case inSlot(step: UInt64, slot: UInt32)
        /// `claim` said no: someone else fills the tensors. Nothing was written.
        case notClaimed
        /// `giveUp` said yes first. `claimed`: the tensors were claimed and may hold garbage.
        case gaveUp(claimed: Bool)
    }

    /// Waits until a slot holds step `target` or a later one, then asks `claim` (once) whether
    /// this thread may write `tensors` and copies the newest such step into them. Between
    /// looks it calls `work` (a small piece of the caller's own work; it returns false when
    /// none is left), and when there is none it sleeps on the file's write counter, at most
    /// 5 ms at a time, and asks `giveUp`. A copy that races a newer write is made again from
    /// the newer step.
    public func awaitStep(
        _ target: UInt64, into tensors: [UnsafeMutableBufferPointer<Float>], claim: () -> Bool, giveUp: () -> Bool,
        work: () -> Bool = { false }
    ) -> AwaitOutcome {
        // Tensors that cannot hold a slot would fail every copy.
        guard tensors.reduce(0, { $0 + $1.count }) == elements else { return .gaveUp(claimed: false) }
        var claimed = false
        while true {
            let outcome = awaitSlot(target, claim: { claimed || claim() }, giveUp: giveUp, work: work)
            guard case .inSlot(let step, let slot) = outcome else {
                // After a copy that raced a newer write, the tensors are claimed (and hold garbage).
                if claimed, case .gaveUp = outcome { return .gaveUp(claimed: true) }
                return outcome
            }
            claimed = true
            if read(step: step, slot: slot, into: tensors) { return .copied(step: step) }
        }
    }

    /// Like ``awaitStep(_:into:claim:giveUp:work:)``, but copies nothing: returns the slot that
    /// holds step `target` or a later one (`inSlot`), for a reader that reads the weights in
    /// place. They stay there until the server writes that slot again, two steps on; a reader
    /// that may still need them then must copy them first (``read(step:slot:into:)``, which
    /// says whether they were still there).
    public func awaitSlot(
        _ target: UInt64, claim: () -> Bool, giveUp: () -> Bool, work: () -> Bool = { false }
    ) -> AwaitOutcome {
        var claimed = false
        while true {
            let seen = lars_load_acquire32(writes)
            if let newest = newestStep(), newest.step >= target {
                if !claimed {
                    guard claim() else { return .notClaimed }
                    claimed = true
                }
                return .inSlot(step: newest.step, slot: newest.slot)
            }
            if giveUp() { return .gaveUp(claimed: claimed) }
            if work() { continue }
            lars_futex_wait(writes, seen, 5_000_000)
        }
    }

    /// The newest step a slot holds, and that slot (none before the first write).
    func newestStep() -> (step: UInt64, slot: UInt32)? {
        var best: (step: UInt64, slot: UInt32)?
        for k in 0..<Self.slotCount {
            let sequence = lars_load_acquire(sequenceWord(ofSlot: k))
            let step = lars_load_relaxed(stepWord(ofSlot: k))
            // The counter again after the step: unchanged, the step and the data written before
            // that counter value go together (a reader may use the slot in place).
            lars_fence_acquire()
            guard sequence & 1 == 0, lars_load_relaxed(sequenceWord(ofSlot: k)) == sequence,
                  step != Self.emptyStep, step >= best?.step ?? 0 else { continue }
            best = (step, UInt32(k))
        }
        return best
    }

    /// The byte offset in the file of each tensor in slot `k`, for tensors of `counts`
    /// elements in layout order.
    private func tensorOffsets(inSlot k: Int, counts: [Int]) -> [Int] {
        precondition(k >= 0 && k < Self.slotCount, "slot \(k) of \(Self.slotCount)")
        var at = Self.headerBytes + k * slotBytes
        return counts.map { n in
            defer { at += n * 4 }
            return at
        }
    }

    /// Slot `k` as one buffer per tensor of `counts` elements, in layout order. Writable only
    /// through a file this process made (`create`, `createSealed`).
    public func tensors(inSlot k: Int, counts: [Int]) -> [UnsafeMutableBufferPointer<Float>] {
        zip(tensorOffsets(inSlot: k, counts: counts), counts).map { offset, n in
            UnsafeMutableBufferPointer(start: (base + offset).assumingMemoryBound(to: Float.self), count: n)
        }
    }

    /// The count of slot writes, the futex word.
    private var writes: UnsafeMutablePointer<UInt32> { (base + 32).assumingMemoryBound(to: UInt32.self) }

    private func word(at offset: Int) -> UnsafeMutablePointer<UInt64> {
        (base + offset).assumingMemoryBound(to: UInt64.self)
    }

    /// Slot `k`'s sequence counter (odd while written), its step, and its first data byte.
    private func sequenceWord(ofSlot k: Int) -> UnsafeMutablePointer<UInt64> { word(at: 64 + 64 * k) }
    private func stepWord(ofSlot k: Int) -> UnsafeMutablePointer<UInt64> { word(at: 72 + 64 * k) }
    private func data(ofSlot k: Int) -> UnsafeMutableRawPointer { base + Self.headerBytes + k * slotBytes }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}

/// open(2), outside the type whose own `open` would shadow it.
private func openDescriptor(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 {
    open(path, flags, mode)
}
