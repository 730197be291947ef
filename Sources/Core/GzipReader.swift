import CZlib
import Foundation

/// A file read through zlib's gz* functions: gzip files are decompressed, plain files pass
/// through unchanged, so callers never care which one they got.
final class GzipReader {
    /// The file, as given.
    let path: String
    private let file: gzFile

    /// Opens `path` for reading.
    init(path: String) throws(IDXError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw IDXError(path: path, problem: .missingFile)
        }
        guard !isDirectory.boolValue else { throw IDXError(path: path, problem: .unreadable(reason: "is a directory")) }
        guard let f = gzopen(path, "rb") else {
            throw IDXError(path: path, problem: .unreadable(reason: String(cString: strerror(errno))))
        }
        // Larger than zlib's 8 KiB default: whole data sets are read through this.
        gzbuffer(f, 1 << 17)
        self.path = path
        self.file = f
    }

    deinit {
        gzclose_r(file)
    }

    /// Fills `buffer` from the stream; returns the number of bytes read, less than
    /// `buffer.count` only at the end of the data.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(IDXError) -> Int {
        var done = 0
        while done < buffer.count {
            let want = min(buffer.count - done, 1 << 30)
            let got = gzread(file, buffer.baseAddress! + done, UInt32(want))
            var code: Int32 = Z_OK
            let message = gzerror(file, &code)
            // Z_BUF_ERROR: the input ended inside a gzip stream. Data up to there is still good,
            // so only a read that comes up short fails.
            if got < 0 || (code != Z_OK && code != Z_BUF_ERROR) || (code == Z_BUF_ERROR && Int(got) < want) {
                var reason = message.map { String(cString: $0) } ?? "zlib error \(code)"
                if reason.hasPrefix(path + ": ") { reason.removeFirst(path.count + 2) }
                throw IDXError(path: path, problem: .corrupt(reason: reason))
            }
            if got == 0 { break }
            done += Int(got)
        }
        return done
    }

    /// Reads up to `count` bytes, fewer only at the end of the data.
    func read(count: Int) throws(IDXError) -> [UInt8] {
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { block.deallocate() }
        let n = try read(into: block)
        return Array(block[..<n])
    }

    /// Reads everything from the current position to the end of the data.
    func readToEnd() throws(IDXError) -> [UInt8] {
        var out: [UInt8] = []
        while true {
            let block = try read(count: 1 << 16)
            out += block
            if block.count < 1 << 16 { return out }
        }
    }
}
