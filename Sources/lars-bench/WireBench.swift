import ArgumentParser
import Core
import NIOCore
import Wire

/// `lars-bench wire`: a ResNet-50-sized float32 tensor (102 MB), held as one ByteBuffer per
/// chunk, is encoded as WEIGHTS_CHUNK frames (headers plus zero-copy slices) and parsed from
/// 4 MiB reads into tensor memory, against a plain memcpy of the same bytes in the same run.
struct WireBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wire",
        abstract: "Chunk-frame encode + streaming parse into tensor memory vs. memcpy.")

    @Option(help: "Timed rounds per figure (the median is printed).")
    var rounds = 11

    @Option(help: "Elements of the float32 tensor (default: the ResNet-50 parameter count).")
    var elements = 25_557_032

    @Option(help: "Chunk size in bytes.")
    var chunkBytes = 4 << 20

    @Option(help: "Receive read size in bytes.")
    var readBytes = 4 << 20

    func run() throws {
        let allocator = ByteBufferAllocator()
        let layout = WireLayout([WireTensor(spec: TensorSpec(name: "w", shape: [elements]), adapt: true)])
        let ranges = layout.chunks(chunkBytes: chunkBytes)
        let dataBytes = elements * 4

        // The weights as the server keeps them: one buffer per chunk, each under the 16 MiB a
        // slice can address without copying.
        var rng = SplitMix64(seed: 7)
        let chunks: [ByteBuffer] = ranges.map { range in
            var buffer = allocator.buffer(capacity: Int(range.count) * 4)
            for _ in 0..<range.count { buffer.writeInteger(rng.nextFloat(in: -1...1).bitPattern, endianness: .little) }
            return buffer
        }
        let tensor = UnsafeMutableBufferPointer<Float>.allocate(capacity: elements)
        defer { tensor.deallocate() }
        tensor.initialize(repeating: 0)

        let encoder = FrameEncoder()
        /// Headers plus slices of the chunk buffers: what a handler hands to `channel.write`.
        func encode() throws -> [ByteBuffer] {
            var pieces: [ByteBuffer] = []
            pieces.reserveCapacity(2 * chunks.count)
            for (range, chunk) in zip(ranges, chunks) {
                var header = allocator.buffer(capacity: ChunkHeader.frameOverhead)
                try encoder.encodeChunkHeader(ChunkHeader(kind: .weights, step: 1, range: range), into: &header)
                pieces.append(header)
                pieces.append(chunk.getSlice(at: chunk.readerIndex, length: chunk.readableBytes) ?? chunk)
            }
            return pieces
        }

        // What the socket would hand the receiver: the byte stream cut into fixed-size reads,
        // which split frames (and now and then a header) anywhere. Building them stands in for
        // the kernel's copy and is not timed.
        var stream = allocator.buffer(capacity: dataBytes + ranges.count * ChunkHeader.frameOverhead)
        for var piece in try encode() { stream.writeBuffer(&piece) }
        var reads: [ByteBuffer] = []
        while let read = stream.readSlice(length: min(readBytes, stream.readableBytes)), read.readableBytes > 0 {
            var copy = allocator.buffer(capacity: read.readableBytes)
            copy.writeImmutableBuffer(read)
            reads.append(copy)
        }

        let base = UnsafeMutableRawPointer(tensor.baseAddress!)
        var parser = FrameParser(layout: layout)
        func parseAll() throws {
            var sink = TensorSink(base: base)
            for read in reads {
                var read = read
                try parser.parse(&read, into: &sink)
            }
            try parser.finish()
        }
        func memcpyAll() {
            for (range, chunk) in zip(ranges, chunks) {
                chunk.withUnsafeReadableBytes { raw in
                    (base + Int(range.offset) * 4).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
                }
            }
        }

        // Correctness once: the parsed tensor equals the source.
        tensor.update(repeating: 0)
        try parseAll()
        var mismatches = 0
        for (range, chunk) in zip(ranges, chunks) {
            chunk.withUnsafeReadableBytes { raw in
                let parsed = UnsafeRawBufferPointer(start: base + Int(range.offset) * 4, count: raw.count)
                if !raw.elementsEqual(parsed) { mismatches += 1 }
            }
        }
        guard mismatches == 0 else { throw ValidationError("parsed tensor differs from the source in \(mismatches) chunks") }

        // Interleave the two so both see the same machine state; medians over the rounds.
        var wireTimes: [Double] = [], encodeTimes: [Double] = [], memcpyTimes: [Double] = []
        for round in -2..<rounds {
            let tm = BenchClock.seconds { memcpyAll() }
            var pieces: [ByteBuffer] = []
            let te = try BenchClock.seconds { pieces = try encode() }
            let tp = try BenchClock.seconds { try parseAll() }
            precondition(pieces.count == 2 * ranges.count)
            if round >= 0 {
                memcpyTimes.append(tm)
                encodeTimes.append(te)
                wireTimes.append(te + tp)
            }
        }
        let median = { (xs: [Double]) in xs.sorted()[xs.count / 2] }
        let wire = median(wireTimes), copy = median(memcpyTimes)
        print("wire_bytes=\(dataBytes)")
        print("wire_chunks=\(ranges.count)")
        print("wire_reads=\(reads.count)")
        report("wire_encode_ms", median(encodeTimes) * 1e3)
        report("wire_ms", wire * 1e3)
        report("memcpy_ms", copy * 1e3)
        report("wire_gbs", Double(dataBytes) / wire / 1e9)
        report("memcpy_gbs", Double(dataBytes) / copy / 1e9)
        report("wire_ratio_to_memcpy", copy / wire)
    }
}

/// Copies chunk data straight from the receive buffer into one float32 tensor.
private struct TensorSink: FrameSink {
    let base: UnsafeMutableRawPointer

    mutating func receive(_ message: Message) throws(WireError) {}

    mutating func chunkData(_ bytes: UnsafeRawBufferPointer, header: ChunkHeader, firstElement: Int) throws(WireError) {
        guard let source = bytes.baseAddress else { return }
        (base + firstElement * 4).copyMemory(from: source, byteCount: bytes.count)
    }
}
