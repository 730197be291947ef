#if canImport(Glibc)
import Glibc
#endif

/// One large, 2 MiB-aligned Float32 allocation cut into per-tensor buffers, backed by huge
/// pages where the kernel allows (fewer TLB misses on the multi-megabyte passes of a step).
public final class FloatArena: @unchecked Sendable {
    /// Element count of the whole arena.
    public let count: Int
    /// Start of the arena.
    public let base: UnsafeMutablePointer<Float>
    /// One buffer per tensor, in layout order.
    public let buffers: [UnsafeMutableBufferPointer<Float>]

    /// Allocates zeroed storage for every tensor of `layout`, each tensor 64-byte aligned.
    public init(layout: Layout) {
        var offsets: [Int] = []
        var total = 0
        for t in layout.tensors {
            offsets.append(total)
            total += (t.count + 15) & ~15
        }
        count = max(total, 16)
        let bytes = count * MemoryLayout<Float>.stride
        var raw: UnsafeMutableRawPointer?
        let alignment = 2 << 20
        if posix_memalign(&raw, alignment, bytes) != 0 || raw == nil {
            raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        }
        #if canImport(Glibc)
        if bytes >= alignment { _ = madvise(raw, bytes, MADV_HUGEPAGE) }
        #endif
        memset(raw!, 0, bytes)
        base = raw!.bindMemory(to: Float.self, capacity: count)
        let b = base
        buffers = zip(offsets, layout.tensors).map { UnsafeMutableBufferPointer(start: b + $0, count: $1.count) }
    }

    deinit {
        free(base)
    }
}
