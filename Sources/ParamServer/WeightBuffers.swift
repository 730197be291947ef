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
    private var sets: [[ByteBuffer]]
    /// Which set holds W_t.
    private var current = 0

    /// Most elements of one tensor: a ByteBuffer holds under 4 GiB.
    static let maxTensorElements = Int(UInt32.max) / 4

    /// The first tensor of `layout` too large for one buffer, if any.
    static func oversizedTensor(in layout: Layout) -> TensorSpec? {
        layout.tensors.first { $0.count > maxTensorElements }
    }

    /// Zeroed storage for two copies of every tensor of `layout`.
    init(layout: Layout) throws(ConfigError) {
        if let big = Self.oversizedTensor(in: layout) {
            throw ConfigError(key: "model", value: "tensor '\(big.name)' of \(big.count) elements",
                              allowed: "tensors of at most \(Self.maxTensorElements) elements (one buffer each)")
        }
        let allocator = ByteBufferAllocator()
        sets = (0..<2).map { _ in
            layout.tensors.map { spec in
                var buffer = allocator.buffer(capacity: spec.count * 4)
                // Huge pages before the first touch: the optimizer's passes stream through it.
                buffer.withUnsafeMutableWritableBytes { raw in
                    if let base = raw.baseAddress { HugePages.advise(start: base, count: raw.count) }
                }
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
}
