#if canImport(Glibc)
import Glibc
#endif
import Core
import NIOCore
import Wire

/// The server's weights, twice: W_t, which pulls are served from, and the set the next step's
/// optimizer writes W_{t+1} into (DESIGN.md §2: two weight buffers, never one per worker).
///
/// Each tensor is one ByteBuffer, so a published chunk is a slice of it: publishing copies
/// nothing, except chunks that start past a tensor's first 16 MiB (NIO stores a slice's start
/// in 24 bits and copies such a slice). The optimizer reads the current set and writes the
/// other. A step that closes while a slow reader still holds the other set's slices (a pull of
/// W_{t-1} not yet written out) gets a private copy of that tensor from the buffer's
/// copy-on-write, so the reader keeps its bytes; that copy costs a pass over the tensor's
/// (power-of-two) capacity, without the huge-page advice, and happens only when a reader lags.
///
/// Confined to the server's event loop, like the coordinator that owns it.
final class WeightBuffers {
    let layout: Layout
    private var sets: [[ByteBuffer]]
    /// Which set holds W_t.
    private(set) var current = 0

    /// Most elements of one tensor: a ByteBuffer holds under 4 GiB.
    static let maxTensorElements = Int(UInt32.max) / 4

    /// Zeroed storage for two copies of every tensor of `layout`.
    init(layout: Layout) throws(ConfigError) {
        if let big = layout.tensors.first(where: { $0.count > Self.maxTensorElements }) {
            throw ConfigError(key: "model", value: "tensor '\(big.name)' of \(big.count) elements",
                              allowed: "tensors of at most \(Self.maxTensorElements) elements (one buffer each)")
        }
        self.layout = layout
        let allocator = ByteBufferAllocator()
        sets = (0..<2).map { _ in
            layout.tensors.map { spec in
                var buffer = allocator.buffer(capacity: spec.count * 4)
                Self.adviseHugePages(&buffer)
                buffer.writeRepeatingByte(0, count: spec.count * 4)
                return buffer
            }
        }
    }

    /// W_t, to read (the optimizer's input, checkpoints). Taking these never copies; never write
    /// through them, since published snapshots share the bytes.
    var readable: [UnsafeBufferPointer<Float>] { pointers(set: current, writable: false).map { UnsafeBufferPointer($0) } }

    /// W_t, to overwrite before anything is published (init, resume, a worker's INIT).
    var writable: [UnsafeMutableBufferPointer<Float>] { pointers(set: current, writable: true) }

    /// The other set, for the optimizer to write W_{t+1} into. A tensor whose storage a pending
    /// send still shares is copied first (copy-on-write), so that send is not disturbed.
    var nextWritable: [UnsafeMutableBufferPointer<Float>] { pointers(set: 1 - current, writable: true) }

    /// Makes the set `nextWritable` was written into the current one.
    func swap() {
        current = 1 - current
    }

    /// W_t as the grid's chunks: slices of the tensors' buffers (zero-copy for a chunk that
    /// starts in its tensor's first 16 MiB; NIO copies a slice that starts later).
    func snapshot(step: Int, grid: ChunkGrid) -> WeightSnapshot {
        let tensors = sets[current]
        let chunks = grid.ranges.map { range in
            tensors[Int(range.tensor)].getSlice(at: Int(range.offset) * 4, length: Int(range.count) * 4)!
        }
        return WeightSnapshot(step: step, chunks: chunks, ranges: grid.ranges)
    }

    private func pointers(set s: Int, writable: Bool) -> [UnsafeMutableBufferPointer<Float>] {
        (0..<sets[s].count).map { i in
            // The pointer leaves the closure: the storage stays where it is while `sets` holds
            // the buffer and nothing mutates it. Only a writable access to the same set while a
            // snapshot shares it moves it (copy-on-write); no caller holds pointers across that.
            let raw: UnsafeMutableRawBufferPointer
            if writable {
                raw = sets[s][i].withUnsafeMutableReadableBytes { $0 }
            } else {
                raw = UnsafeMutableRawBufferPointer(mutating: sets[s][i].withUnsafeReadableBytes { $0 })
            }
            return raw.bindMemory(to: Float.self)
        }
    }

    /// Asks for huge pages on the 2 MiB-aligned part of a large buffer before it is first
    /// touched (the optimizer's passes stream through it; FloatArena does the same).
    private static func adviseHugePages(_ buffer: inout ByteBuffer) {
        #if canImport(Glibc)
        let huge = 2 << 20
        buffer.withUnsafeMutableWritableBytes { raw in
            guard let base = raw.baseAddress, raw.count >= 2 * huge else { return }
            let start = (Int(bitPattern: base) + huge - 1) & ~(huge - 1)
            let end = (Int(bitPattern: base) + raw.count) & ~(huge - 1)
            if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_HUGEPAGE) }
        }
        #endif
    }
}
