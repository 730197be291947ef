import CZlib
import Foundation

/// Crafted IDX files for tests, plain or gzip-compressed.
enum IDXFixture {
    /// An IDX header followed by `data`.
    static func bytes(type: UInt8 = 0x08, dimensions: [Int], data: [UInt8]? = nil) -> [UInt8] {
        var out: [UInt8] = [0, 0, type, UInt8(dimensions.count)]
        for d in dimensions { out += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
        return out + (data ?? [UInt8](repeating: 7, count: dimensions.reduce(1, *)))
    }

    /// `bytes` gzip-compressed through zlib.
    static func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString).gz").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        guard let f = gzopen(path, "wb") else { throw CocoaError(.fileWriteUnknown) }
        let written = bytes.withUnsafeBytes { gzwrite(f, $0.baseAddress, UInt32($0.count)) }
        guard gzclose(f) == Z_OK, written == bytes.count else { throw CocoaError(.fileWriteUnknown) }
        return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Writes `bytes` as `name` in `dir`, gzip-compressed (with `.gz` appended) when `gzip` is set.
    @discardableResult
    static func write(_ bytes: [UInt8], as name: String, in dir: TemporaryDirectory, gzip: Bool) throws -> String {
        gzip ? try dir.write(name + ".gz", Self.gzip(bytes)) : try dir.write(name, bytes)
    }

    /// A small, valid MNIST-format data set: `count` training samples of 4x3 pixels.
    static func writeDataset(in dir: TemporaryDirectory, count: Int = 5, labelCount: Int? = nil, gzip: Bool) throws {
        let labels = (0..<(labelCount ?? count)).map { UInt8($0 % 10) }
        try write(bytes(dimensions: [count, 4, 3]), as: "train-images-idx3-ubyte", in: dir, gzip: gzip)
        try write(bytes(dimensions: [labels.count], data: labels), as: "train-labels-idx1-ubyte", in: dir, gzip: gzip)
        try write(bytes(dimensions: [2, 4, 3]), as: "t10k-images-idx3-ubyte", in: dir, gzip: gzip)
        try write(bytes(dimensions: [2], data: [1, 2]), as: "t10k-labels-idx1-ubyte", in: dir, gzip: gzip)
    }
}
