/// A checkpoint that cannot be written or read, naming the file and the problem. A file that
/// fails any check is refused as a whole: nothing of it is loaded.
public struct CheckpointError: Error, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Problem: Equatable, Sendable {
        /// No file at the path.
        case missingFile
        /// A system call failed.
        case io(operation: String, reason: String)
        /// The file is shorter than the 8-byte header length that starts every safetensors file.
        case truncated(fileSize: Int)
        /// The header length points past the end of the file.
        case headerLengthBeyondFile(headerLength: UInt64, fileSize: Int)
        /// The header is larger than any sane checkpoint needs (the Rust library's limit).
        case headerTooLarge(headerLength: UInt64, limit: Int)
        /// The header is not the JSON object the format prescribes.
        case badHeader(reason: String)
        /// A tensor's dtype is not `F32`, the only element type checkpoints hold.
        case unsupportedDType(tensor: String, dtype: String)
        /// A tensor's shape does not give the byte count its offsets span.
        case sizeMismatch(tensor: String, shape: [Int], byteCount: Int)
        /// A tensor's offsets point outside the data section.
        case offsetsOutOfRange(tensor: String, begin: Int, end: Int, dataSize: Int)
        /// Two tensors share bytes.
        case overlapping(tensor: String, other: String)
        /// Bytes of the data section belong to no tensor.
        case uncoveredData(begin: Int, end: Int)
        /// A tensor given to the writer is unusable (name, shape or buffer).
        case invalidTensor(name: String, reason: String)
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
        case .io(let operation, let reason):
            what = "\(operation) failed: \(reason)"
        case .truncated(let size):
            what = "truncated: \(size) bytes, not even the 8-byte header length"
        case .headerLengthBeyondFile(let length, let size):
            what = "header length \(length) reaches past the end of the \(size)-byte file (truncated?)"
        case .headerTooLarge(let length, let limit):
            what = "header length \(length) exceeds the limit of \(limit) bytes"
        case .badHeader(let reason):
            what = "bad safetensors header: \(reason)"
        case .unsupportedDType(let tensor, let dtype):
            what = "tensor '\(tensor)' has dtype \"\(dtype)\"; only \"F32\" is supported"
        case .sizeMismatch(let tensor, let shape, let bytes):
            what = "tensor '\(tensor)' has shape \(shape) but its offsets span \(bytes) bytes"
        case .offsetsOutOfRange(let tensor, let begin, let end, let size):
            what = "tensor '\(tensor)' has data_offsets [\(begin), \(end)] outside the \(size)-byte data section"
        case .overlapping(let tensor, let other):
            what = "tensors '\(other)' and '\(tensor)' overlap"
        case .uncoveredData(let begin, let end):
            what = "data bytes \(begin)..<\(end) belong to no tensor"
        case .invalidTensor(let name, let reason):
            what = "cannot write tensor '\(name)': \(reason)"
        }
        return "checkpoint \(path): \(what)"
    }
}
