import Foundation
import Testing
@testable import Core

@Suite struct DatasetFingerprintTests {
    /// Fashion-MNIST as Debian's dataset-fashion-mnist installs it; the CRC matches Python's
    /// `zlib.crc32(gzip.open("train-labels-idx1-ubyte.gz").read())`.
    static let fashionMNIST = DatasetFingerprint(sampleCount: 60_000, labelCRC32: 0x741A_4657)

    @Test func fashionMNISTFingerprintIsStable() throws {
        let files = try DatasetFiles()
        #expect(try DatasetFingerprint(files: files) == Self.fashionMNIST)
        #expect(try DatasetFingerprint(files: files) == Self.fashionMNIST)
        #expect(Self.fashionMNIST.description == "60000 samples, label crc32 741a4657")
    }

    @Test func fashionMNISTPlainCopyHasTheSameFingerprint() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let source = try DatasetFiles()
        let labels = try GzipReader(path: source.trainLabels).readToEnd()
        try dir.write("train-labels-idx1-ubyte", labels)
        // The images only contribute their header's count; link the compressed originals.
        for role in [DatasetFiles.Role.trainImages, .testImages, .testLabels] {
            try FileManager.default.createSymbolicLink(atPath: dir.file(role.rawValue + ".gz"), withDestinationPath: source.path(for: role))
        }
        let copy = try DatasetFiles(directory: dir.path)
        #expect(copy.trainLabels == dir.file("train-labels-idx1-ubyte"))
        #expect(try DatasetFingerprint(files: copy) == Self.fashionMNIST)
    }

    @Test func craftedGzipAndPlainCopiesAgree() throws {
        let plain = try TemporaryDirectory(), gz = try TemporaryDirectory()
        defer { plain.remove(); gz.remove() }
        try IDXFixture.writeDataset(in: plain, count: 5, gzip: false)
        try IDXFixture.writeDataset(in: gz, count: 5, gzip: true)
        let a = try DatasetFingerprint(files: DatasetFiles(directory: plain.path))
        let b = try DatasetFingerprint(files: DatasetFiles(directory: gz.path))
        #expect(a == b)
        #expect(a.sampleCount == 5)
        #expect(a.labelCRC32 == DatasetFingerprint.crc32(IDXFixture.bytes(dimensions: [5], data: [0, 1, 2, 3, 4])))
    }

    @Test func crcIsZlibs() {
        // The standard CRC-32 check value.
        #expect(DatasetFingerprint.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(DatasetFingerprint.crc32([]) == 0)
    }

    @Test func differentLabelsGiveDifferentFingerprints() throws {
        let a = try TemporaryDirectory(), b = try TemporaryDirectory()
        defer { a.remove(); b.remove() }
        try IDXFixture.writeDataset(in: a, gzip: false)
        try IDXFixture.writeDataset(in: b, gzip: false)
        try IDXFixture.write(IDXFixture.bytes(dimensions: [5], data: [0, 1, 2, 3, 5]), as: "train-labels-idx1-ubyte", in: b, gzip: false)
        let fa = try DatasetFingerprint(files: DatasetFiles(directory: a.path))
        let fb = try DatasetFingerprint(files: DatasetFiles(directory: b.path))
        #expect(fa.sampleCount == fb.sampleCount && fa.labelCRC32 != fb.labelCRC32)
    }

    @Test func countMismatchAndTruncatedLabelsAreRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try IDXFixture.writeDataset(in: dir, count: 5, labelCount: 4, gzip: false)
        #expect(throws: DatasetError.sampleCountMismatch(
            images: dir.file("train-images-idx3-ubyte"), imageCount: 5, labels: dir.file("train-labels-idx1-ubyte"), labelCount: 4)) {
            try DatasetFingerprint(files: DatasetFiles(directory: dir.path))
        }
        let labels = dir.file("train-labels-idx1-ubyte")
        try dir.write("train-labels-idx1-ubyte", Array(IDXFixture.bytes(dimensions: [5], data: [0, 1, 2, 3, 4]).dropLast(2)))
        #expect(throws: DatasetError.invalidFile(IDXError(path: labels, problem: .truncatedData(expectedBytes: 13, actualBytes: 11)))) {
            try DatasetFingerprint(files: DatasetFiles(directory: dir.path))
        }
    }
}
