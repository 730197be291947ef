import CZlib

/// What a server and its workers compare to know they train on the same data: the training
/// sample count and the CRC-32 (zlib's) of the decompressed training-label file, header included.
/// The same for the gzip and the plain copy of a file.
public struct DatasetFingerprint: Sendable, Hashable, Codable, CustomStringConvertible {
    public var sampleCount: Int
    public var labelCRC32: UInt32

    public init(sampleCount: Int, labelCRC32: UInt32) {
        self.sampleCount = sampleCount
        self.labelCRC32 = labelCRC32
    }

    /// Computes the fingerprint of `files`, reading the training labels whole (one byte per
    /// sample) and the training images' header, which must agree on the sample count.
    public init(files: DatasetFiles) throws(DatasetError) {
        let path = files.trainLabels
        let bytes: [UInt8]
        let labels: IDXHeader
        do throws(IDXError) {
            bytes = try GzipReader(path: path).readToEnd()
            labels = try IDXHeader.parse(bytes, path: path)
            try labels.validate(as: .labels, path: path)
            let expected = labels.headerByteCount + labels.sampleCount
            guard bytes.count >= expected else {
                throw IDXError(path: path, problem: .truncatedData(expectedBytes: expected, actualBytes: bytes.count))
            }
        } catch {
            throw .invalidFile(error)
        }
        let images = try files.header(for: .trainImages)
        guard images.sampleCount == labels.sampleCount else {
            throw .sampleCountMismatch(
                images: files.trainImages, imageCount: images.sampleCount, labels: path, labelCount: labels.sampleCount)
        }
        self.init(sampleCount: labels.sampleCount, labelCRC32: Self.crc32(bytes))
    }

    /// zlib's CRC-32 of `bytes`.
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { b in
            var crc = CZlib.crc32(0, nil, 0)
            var offset = 0
            while offset < b.count {
                let n = min(b.count - offset, 1 << 30)
                crc = CZlib.crc32(crc, b.baseAddress! + offset, UInt32(n))
                offset += n
            }
            return UInt32(crc)
        }
    }

    public var description: String {
        let hex = String(labelCRC32, radix: 16)
        return "\(sampleCount) samples, label crc32 \(String(repeating: "0", count: 8 - hex.count) + hex)"
    }
}
