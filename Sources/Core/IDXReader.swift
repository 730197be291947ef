/// An IDX file opened for reading (gzip or plain): the header is read and checked on opening,
/// and the stream stays positioned at the first data byte for a reader of the elements.
public final class IDXReader {
    /// The file, as given.
    public let path: String
    /// The file's header.
    public let header: IDXHeader
    /// The stream, positioned right after the header.
    let source: GzipReader

    /// Opens `path` and reads its header, checked against `kind` when given.
    public init(path: String, as kind: IDXHeader.Kind? = nil) throws(IDXError) {
        let source = try GzipReader(path: path)
        let magic = try source.read(count: 4)
        let (_, rank) = try IDXHeader.parseMagic(magic, path: path)
        let header = try IDXHeader.parse(magic + source.read(count: 4 * rank), path: path)
        if let kind { try header.validate(as: kind, path: path) }
        self.path = path
        self.header = header
        self.source = source
    }

    /// Reads every element the header announces (unsigned bytes), and checks that the file
    /// ends right there: a short file is `truncatedData`, a longer one `trailingData`.
    public func readBytes() throws(IDXError) -> [UInt8] {
        guard let expected = header.dataByteCount else {
            throw IDXError(path: path, problem: .wrongDimensions(
                dataType: header.dataType, dimensions: header.dimensions, expected: "a size that fits in memory"))
        }
        var got = 0
        var failure: IDXError?
        let bytes = [UInt8](unsafeUninitializedCapacity: expected) { buffer, count in
            do throws(IDXError) {
                got = try source.read(into: UnsafeMutableRawBufferPointer(buffer))
            } catch {
                failure = error
            }
            count = got
        }
        if let failure { throw failure }
        guard got == expected else {
            throw IDXError(path: path, problem: .truncatedData(
                expectedBytes: header.headerByteCount + expected, actualBytes: header.headerByteCount + got))
        }
        let extra = try source.readToEnd().count
        guard extra == 0 else {
            throw IDXError(path: path, problem: .trailingData(
                expectedBytes: header.headerByteCount + expected, actualBytes: header.headerByteCount + expected + extra))
        }
        return bytes
    }
}
