import NIOCore
import Testing
import Wire

@testable import Core
@testable import ParamServer

/// The server's two weight sets: pulls are served slices of W_t without a copy, the optimizer
/// writes W_{t+1} into the other set, and a reader still holding an older snapshot keeps its
/// bytes when that set is written again.
@Suite struct WeightBuffersTests {
    /// Two tensors, the first over two grid chunks of 1,024 elements (1,024 + 476).
    let layout = Layout([
        TensorSpec(name: "w", shape: [1500]),
        TensorSpec(name: "b", shape: [7]),
    ])

    func floats(_ buffer: ByteBuffer) -> [Float] {
        buffer.withUnsafeReadableBytes { Array($0.bindMemory(to: Float.self)) }
    }

    @Test func snapshotChunksAreTheCurrentWeights() throws {
        let weights = try WeightBuffers(layout: layout)
        let grid = ChunkGrid(layout: WireLayout(layout), chunkElements: 1024)
        for (t, buffer) in weights.writable.enumerated() {
            for i in buffer.indices { buffer[i] = Float(t * 10_000 + i) }
        }
        let snapshot = weights.snapshot(step: 3, grid: grid)
        #expect(snapshot.step == 3)
        #expect(snapshot.chunks.count == 3)
        #expect(floats(snapshot.chunks[0]) == (0..<1024).map(Float.init))
        #expect(floats(snapshot.chunks[1]) == (1024..<1500).map(Float.init))
        #expect(floats(snapshot.chunks[2]) == (0..<7).map { Float(10_000 + $0) })
        #expect(snapshot.totalBytes == (1500 + 7) * 4)
        // Zero-copy: the chunk's bytes are the weights' bytes.
        let chunkStart = snapshot.chunks[0].withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
        #expect(chunkStart == UnsafeRawPointer(weights.readable[0].baseAddress))
    }

    @Test func writingTheNextSetLeavesAHeldSnapshotAlone() throws {
        let weights = try WeightBuffers(layout: layout)
        let grid = ChunkGrid(layout: WireLayout(layout), chunkElements: 1024)
        for buffer in weights.writable { buffer.update(repeating: 1) }
        // A slow reader holds W_0 (set 0) ...
        let held = weights.snapshot(step: 0, grid: grid)
        // ... while step 0 writes W_1 into set 1 and step 1 writes W_2 into set 0 again.
        for buffer in weights.nextWritable { buffer.update(repeating: 2) }
        weights.swap()
        #expect(floats(weights.snapshot(step: 1, grid: grid).chunks[2]) == Array(repeating: 2, count: 7))
        let next = weights.nextWritable
        for buffer in next { buffer.update(repeating: 3) }
        weights.swap()
        // The reader still has its ones; the current set has the threes.
        for chunk in held.chunks { #expect(floats(chunk).allSatisfy { $0 == 1 }) }
        #expect(weights.readable.allSatisfy { $0.allSatisfy { $0 == 3 } })
        #expect(weights.snapshot(step: 2, grid: grid).chunks.allSatisfy { floats($0).allSatisfy { $0 == 3 } })
    }

    @Test func aTensorTooLargeForOneBufferIsAConfigError() {
        let huge = Layout([TensorSpec(name: "embedding", shape: [1 << 20, 1 << 10])])
        #expect(throws: ConfigError.self) { try WeightBuffers(layout: huge) }
    }
}
