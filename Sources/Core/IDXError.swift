/// An IDX file (MNIST format, gzip or plain) that cannot be used, naming the file and the problem.
public struct IDXError: Error, Equatable, CustomStringConvertible {
    /// What is wrong with the file.
    public enum Problem: Equatable, Sendable {
        /// No file at the path.
        case missingFile
        /// The file exists but cannot be opened (permissions, a directory, ...).
        case unreadable(reason: String)
        /// The gzip stream is damaged or ends early.
        case corrupt(reason: String)
        /// The first two bytes are not zero, as every IDX file starts.
        case badMagic(bytes: [UInt8])
        /// The type byte names no IDX element type.
        case unsupportedDataType(code: UInt8)
        /// The file ends inside its header.
        case truncatedHeader(expectedBytes: Int, actualBytes: Int)
        /// The file ends before all elements the header announces.
        case truncatedData(expectedBytes: Int, actualBytes: Int)
        /// The file holds more bytes than its header announces (the whole file's sizes).
        case trailingData(expectedBytes: Int, actualBytes: Int)
        /// Type or dimensions do not fit what the file is used for.
        case wrongDimensions(dataType: IDXHeader.DataType, dimensions: [Int], expected: String)
    }

    /// The file, as given.
    public var path: String
    public var problem: Problem

    public init(path: String, problem: Problem) {
        self.path = path
        self.problem = problem
    }

    public var description: String {
        let what: String
        switch problem {
        case .missingFile:
            what = "no such file"
        case .unreadable(let reason):
            what = "cannot open: \(reason)"
        case .corrupt(let reason):
            what = "damaged gzip stream: \(reason)"
        case .badMagic(let bytes):
            let hex = bytes.map { String($0, radix: 16, uppercase: false) }.map { $0.count == 1 ? "0" + $0 : $0 }
            what = "not an IDX file: magic bytes \(hex.joined(separator: " ")), expected 00 00 <type> <dimensions>"
        case .unsupportedDataType(let code):
            what = "unknown IDX element type 0x\(String(code, radix: 16)); known: 0x08 ubyte, 0x09 byte, 0x0b short, 0x0c int, 0x0d float, 0x0e double"
        case .truncatedHeader(let expected, let actual):
            what = "truncated header: \(actual) of \(expected) bytes"
        case .truncatedData(let expected, let actual):
            what = "truncated data: \(actual) of \(expected) bytes the header announces"
        case .trailingData(let expected, let actual):
            what = "\(actual) bytes, but the header announces \(expected): not the file it claims to be"
        case .wrongDimensions(let type, let dims, let expected):
            what = "\(type) with dimensions \(dims), expected \(expected)"
        }
        return "\(path): \(what)"
    }
}
