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
}
