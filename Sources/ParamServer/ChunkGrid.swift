import Core
import Wire

/// The fixed split of every tensor into chunks of at most `chunkElements` elements, in layout
/// order. Pushes and weights travel one grid chunk per frame, so the server can record per
/// chunk which ranks have added it.
struct ChunkGrid: Sendable {
    /// Elements per chunk (the last chunk of a tensor may be shorter). A multiple of 1024, so
    /// chunk boundaries fall on the optimizer's norm blocks.
    let chunkElements: Int
    let ranges: [ChunkRange]
    /// Index of each tensor's first chunk.
    let firstChunk: [Int]

    init(layout: WireLayout, chunkElements: Int = 1 << 20) {
        precondition(chunkElements > 0 && chunkElements % 1024 == 0, "chunk size must be a multiple of 1024 elements")
        self.chunkElements = chunkElements
        let ranges = layout.grid(chunkElements: chunkElements)
        self.ranges = ranges
        self.firstChunk = layout.tensors.indices.map { t in ranges.firstIndex { Int($0.tensor) == t }! }
    }

    var count: Int { ranges.count }

    /// The grid index of a chunk frame's range, or nil if the range is not exactly one chunk.
    func index(tensor: UInt32, offset: UInt64, count: UInt32) -> Int? {
        let t = Int(tensor)
        guard t < firstChunk.count, offset % UInt64(chunkElements) == 0 else { return nil }
        let i = firstChunk[t] + Int(offset / UInt64(chunkElements))
        guard i < ranges.count, ranges[i].tensor == tensor, ranges[i].offset == offset, ranges[i].count == count else {
            return nil
        }
        return i
    }
}
