import Core
import Wire

/// The server's chunk grid (WELCOME's `chunk_elements`): every tensor split into chunks of
/// `chunkElements` elements in layout order, the last one shorter, and one (empty) chunk for an
/// empty tensor. Each push chunk must be exactly one grid chunk, so that a resend after a
/// reconnect lines up with what the server already added.
enum PushGrid {
    static func ranges(layout: WireLayout, chunkElements: Int) -> [ChunkRange] {
        precondition(chunkElements > 0)
        var ranges: [ChunkRange] = []
        for (index, tensor) in layout.tensors.enumerated() {
            let count = tensor.spec.count
            var offset = 0
            repeat {
                let n = min(chunkElements, count - offset)
                ranges.append(ChunkRange(tensor: UInt32(index), offset: UInt64(offset), count: UInt32(n)))
                offset += n
            } while offset < count
        }
        return ranges
    }
}
