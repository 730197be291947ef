/// The header of an IDX file (the MNIST format): element type and dimensions, outermost
/// (the sample count) first. Integers in the file are big-endian.
public struct IDXHeader: Sendable, Hashable {
    /// Element type, by its IDX code.
    public enum DataType: UInt8, Sendable, CustomStringConvertible {
        case uint8 = 0x08
        case int8 = 0x09
        case int16 = 0x0B
        case int32 = 0x0C
        case float32 = 0x0D
        case float64 = 0x0E

        /// Bytes per element.
        public var byteWidth: Int {
            switch self {
            case .uint8, .int8: 1
            case .int16: 2
            case .int32, .float32: 4
            case .float64: 8
            }
        }

        public var description: String {
            switch self {
            case .uint8: "ubyte"
            case .int8: "byte"
            case .int16: "short"
            case .int32: "int"
            case .float32: "float"
            case .float64: "double"
            }
        }
    }

    /// What a file of a data set holds, and so which header it must have.
    public enum Kind: Sendable, Hashable {
        /// `[count, rows, columns]` unsigned bytes.
        case images
        /// `[count]` unsigned bytes.
        case labels
    }

    public var dataType: DataType
    /// Sizes, outermost first: `[count, rows, columns]` for images, `[count]` for labels.
    public var dimensions: [Int]

    public init(dataType: DataType, dimensions: [Int]) {
        self.dataType = dataType
        self.dimensions = dimensions
    }

    /// Number of samples (the outermost dimension).
    public var sampleCount: Int { dimensions.first ?? 0 }
    /// Shape of one sample, e.g. `[28, 28]` for an image, `[]` for a label.
    public var sampleShape: [Int] { Array(dimensions.dropFirst()) }
    /// Size of the header in bytes; the data starts right after it.
    public var headerByteCount: Int { 4 + 4 * dimensions.count }
    /// Size of the data the header announces, in bytes (nil if it overflows `Int`).
    public var dataByteCount: Int? {
        var total = dataType.byteWidth
        for d in dimensions {
            let (p, overflow) = total.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            total = p
        }
        return total
    }

    /// Parses the first 4 bytes: two zero bytes, the type code and the number of dimensions.
    /// Returns the type and the number of dimensions.
    static func parseMagic(_ bytes: some Collection<UInt8>, path: String) throws(IDXError) -> (DataType, Int) {
        let b = Array(bytes.prefix(4))
        guard b.count == 4 else {
            throw IDXError(path: path, problem: .truncatedHeader(expectedBytes: 4, actualBytes: b.count))
        }
        guard b[0] == 0, b[1] == 0 else { throw IDXError(path: path, problem: .badMagic(bytes: b)) }
        guard let type = DataType(rawValue: b[2]) else {
            throw IDXError(path: path, problem: .unsupportedDataType(code: b[2]))
        }
        return (type, Int(b[3]))
    }

    /// Parses a whole header from the start of `bytes` (which may hold more after it).
    static func parse(_ bytes: [UInt8], path: String) throws(IDXError) -> IDXHeader {
        let (type, rank) = try parseMagic(bytes, path: path)
        let size = 4 + 4 * rank
        guard bytes.count >= size else {
            throw IDXError(path: path, problem: .truncatedHeader(expectedBytes: size, actualBytes: bytes.count))
        }
        let dims = (0..<rank).map { i in
            bytes[(4 + 4 * i)..<(8 + 4 * i)].reduce(0) { $0 << 8 | Int($1) }
        }
        return IDXHeader(dataType: type, dimensions: dims)
    }

    /// Checks that the header fits `kind`: unsigned bytes, three dimensions with non-zero rows
    /// and columns for images, one dimension for labels.
    public func validate(as kind: Kind, path: String) throws(IDXError) {
        let ok: Bool
        let expected: String
        switch kind {
        case .images:
            ok = dataType == .uint8 && dimensions.count == 3 && dimensions[1] > 0 && dimensions[2] > 0
            expected = "images: ubyte with 3 dimensions [count, rows, columns]"
        case .labels:
            ok = dataType == .uint8 && dimensions.count == 1
            expected = "labels: ubyte with 1 dimension [count]"
        }
        guard ok else {
            throw IDXError(path: path, problem: .wrongDimensions(dataType: dataType, dimensions: dimensions, expected: expected))
        }
    }

    /// Reads and returns the header of the IDX file at `path` (gzip or plain), checked against
    /// `kind` when given.
    public static func read(contentsOf path: String, as kind: Kind? = nil) throws(IDXError) -> IDXHeader {
        try IDXReader(path: path, as: kind).header
    }
}
