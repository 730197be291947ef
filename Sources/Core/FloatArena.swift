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
        let alignment = HugePages.size
        if posix_memalign(&raw, alignment, bytes) != 0 || raw == nil {
            raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        }
        HugePages.advise(start: raw!, count: bytes)
        memset(raw!, 0, bytes)
        base = raw!.bindMemory(to: Float.self, capacity: count)
        let b = base
        buffers = zip(offsets, layout.tensors).map { UnsafeMutableBufferPointer(start: b + $0, count: $1.count) }
    }

    deinit {
        free(base)
    }
}

/// Transparent huge pages for large buffers that multi-megabyte passes stream through.
public enum HugePages {
    /// Bytes per huge page.
    public static let size = 2 << 20

    /// Asks the kernel to back `[start, start + count)` with huge pages, from the first 2 MiB
    /// boundary on, when at least one huge page fits. Call before the memory is first touched.
    public static func advise(start: UnsafeMutableRawPointer, count: Int) {
        #if canImport(Glibc)
        let first = (Int(bitPattern: start) + size - 1) & ~(size - 1)
        let end = Int(bitPattern: start) + count
        guard end - first >= size else { return }
        _ = madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_HUGEPAGE)
        #endif
    }
}
