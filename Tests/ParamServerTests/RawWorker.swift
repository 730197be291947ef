import Foundation
import NIOCore
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// A worker that speaks the protocol by hand over a blocking socket, so tests can send what a
/// well-behaved client never would: half a push, garbage, wrong lengths, or nothing at all.
final class RawWorker {
    let fd: Int32
    let encoder = FrameEncoder()

    /// Connects to the server on `port`. `receiveBuffer` (bytes) sets SO_RCVBUF before the
    /// connection is made, so a worker that stops reading stalls the server's writes early.
    init(port: Int, receiveBuffer: Int? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer.map(Int32.init) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else { throw POSIXError(.ECONNREFUSED) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    private var closed = false

    deinit { close() }

    /// Closes the socket once: a second close could hit a descriptor number the process has
    /// since reused (another test's server socket).
    func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(fd)
    }

    func send(bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    func send(_ message: Message) throws {
        var b = try encoder.encode(message)
        send(bytes: b.readBytes(length: b.readableBytes) ?? [])
    }

    /// A PUSH_CHUNK of `values` at `offset` in `tensor`.
    func sendChunk(step: Int, tensor: Int, offset: Int, values: [Float], dtype: DType = .float32, countOverride: Int? = nil) throws {
        let header = ChunkHeader(
            kind: .push, step: UInt64(step), tensor: UInt32(tensor), offset: UInt64(offset),
            count: UInt32(countOverride ?? values.count), dtype: dtype)
        var b = ByteBufferAllocator().buffer(capacity: 64 + values.count * 4)
        try encoder.encodeChunkHeader(header, into: &b)
        for v in values { b.writeInteger(v.bitPattern, endianness: .little) }
        send(bytes: b.readBytes(length: b.readableBytes) ?? [])
    }

    /// Reads frames until one satisfies `match` (control frames only; chunk data is skipped).
    /// Returns nil on end of stream or timeout.
    func receive(until match: (Message) -> Bool) -> Message? {
        var parser = FrameParser()
        var buffer = ByteBufferAllocator().buffer(capacity: 1 << 16)
        var found: Message?
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while found == nil {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            buffer.writeBytes(chunk[0..<n])
            do {
                try parser.parse(&buffer) { event in
                    if case .message(let m) = event, found == nil, match(m) { found = m }
                }
            } catch {
                return nil
            }
            buffer.discardReadBytes()
        }
        return found
    }

    /// Sends a chunk frame of `kind` (INIT_CHUNK or PUSH_CHUNK) with float32 `values`.
    func sendChunk(kind: ChunkKind, step: Int, tensor: Int, offset: Int, values: [Float]) throws {
        let header = ChunkHeader(kind: kind, step: UInt64(step), tensor: UInt32(tensor), offset: UInt64(offset), count: UInt32(values.count))
        var b = ByteBufferAllocator().buffer(capacity: 64 + values.count * 4)
        try encoder.encodeChunkHeader(header, into: &b)
        for v in values { b.writeInteger(v.bitPattern, endianness: .little) }
        send(bytes: b.readBytes(length: b.readableBytes) ?? [])
    }

    /// Reads one WEIGHTS answer whole: its step and the float32 values per tensor (sized by
    /// `counts`). Nil on end of stream or a parse error.
    func receiveWeights(counts: [Int]) -> (step: Int, values: [[Float]])? {
        receiveWeights(counts: counts, answers: 1)?.first
    }

    /// Reads `answers` WEIGHTS answers in a row from one stream (bytes of the next answer may
    /// arrive in the same read as the end of the last). Nil on end of stream or a parse error.
    func receiveWeights(counts: [Int], answers: Int) -> [(step: Int, values: [[Float]])]? {
        var parser = FrameParser()
        var buffer = ByteBufferAllocator().buffer(capacity: 1 << 16)
        var done: [(step: Int, values: [[Float]])] = []
        var values = counts.map { [Float](repeating: .nan, count: $0) }
        var step = -1
        var left = -1
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while done.count < answers {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            buffer.writeBytes(chunk[0..<n])
            do {
                try parser.parse(&buffer) { event in
                    switch event {
                    case .message(.weights(let s, let count)):
                        step = Int(s)
                        left = Int(count)
                        values = counts.map { [Float](repeating: .nan, count: $0) }
                    case .chunkData(let h, let first, let bytes):
                        for k in 0..<(bytes.count / 4) {
                            values[Int(h.tensor)][first + k] = Float(bitPattern: bytes.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))
                        }
                    case .chunkEnd:
                        left -= 1
                        if left == 0 { done.append((step, values)) }
                    default:
                        break
                    }
                }
            } catch {
                return nil
            }
            buffer.discardReadBytes()
        }
        return Array(done.prefix(answers))
    }

    /// True once the server has closed the connection (reads hit end of stream).
    func waitForClose() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}
