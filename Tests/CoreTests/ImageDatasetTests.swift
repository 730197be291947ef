import CPrefetch
import Foundation
import Testing
@testable import Core

@Suite struct ImageDatasetTests {
    /// A data set directory of `count` training images of 4 x 3 pixels; pixel p of sample s is
    /// (s * 12 + p) mod 256.
    static func write(in dir: TemporaryDirectory, count: Int = 5, labels: [UInt8]? = nil, gzip: Bool) throws {
        let pixels = (0..<(count * 12)).map { UInt8($0 % 256) }
        try IDXFixture.write(IDXFixture.bytes(dimensions: [count, 4, 3], data: pixels), as: "train-images-idx3-ubyte", in: dir, gzip: gzip)
        let l = labels ?? (0..<count).map { UInt8($0 % 10) }
        try IDXFixture.write(IDXFixture.bytes(dimensions: [l.count], data: l), as: "train-labels-idx1-ubyte", in: dir, gzip: gzip)
        try IDXFixture.write(IDXFixture.bytes(dimensions: [2, 4, 3]), as: "t10k-images-idx3-ubyte", in: dir, gzip: gzip)
        try IDXFixture.write(IDXFixture.bytes(dimensions: [2], data: [1, 2]), as: "t10k-labels-idx1-ubyte", in: dir, gzip: gzip)
    }

    @Test(arguments: [false, true])
    func loadsAnyMNISTFormatSet(gzip: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try Self.write(in: dir, gzip: gzip)
        let identity = ImageDataset.Normalization(mean: 0, std: 1)
        let set = try ImageDataset.load(.train, from: DatasetFiles(directory: dir.path), normalization: identity)
        #expect(set.count == 5 && set.rows == 4 && set.columns == 3)
        #expect(set.labels == [0, 1, 2, 3, 4])
        #expect(set.images == (0..<60).map { Float($0) / 255 })
        let test = try ImageDataset.load(.test, from: DatasetFiles(directory: dir.path))
        #expect(test.count == 2 && test.images[0] == (7 / 255 - 0.2860) / 0.3530)
    }

    /// A copy of the real test images cut short (plain and gzip) gives an error naming the file.
    @Test(arguments: [false, true])
    func truncatedCopyOfTheRealDataIsNamed(gzip: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let real = try DatasetFiles()
        for role in DatasetFiles.Role.allCases where role != .testImages {
            try FileManager.default.copyItem(atPath: real.path(for: role), toPath: dir.file(role.rawValue + ".gz"))
        }
        let bytes = try GzipReader(path: real.testImages).readToEnd()
        #expect(bytes.count == 16 + 10_000 * 784)
        let cut = Array(bytes.prefix(16 + 5_000 * 784 + 100))
        let name = "t10k-images-idx3-ubyte"
        let path = try IDXFixture.write(cut, as: name, in: dir, gzip: gzip)
        let files = try DatasetFiles(directory: dir.path)
        #expect {
            try ImageDataset.load(.test, from: files)
        } throws: { error in
            guard case .invalidFile(let e) = error as? DatasetError, e.path == path else { return false }
            if gzip { return e.description.contains(path) }
            return e.problem == .truncatedData(expectedBytes: bytes.count, actualBytes: cut.count)
        }
        #expect(try ImageDataset.load(.train, from: files).count == 60_000)
    }

    @Test func fileLongerThanItsHeaderIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try Self.write(in: dir, gzip: false)
        try IDXFixture.write(IDXFixture.bytes(dimensions: [2], data: [1, 2, 3]), as: "t10k-labels-idx1-ubyte", in: dir, gzip: false)
        let path = dir.file("t10k-labels-idx1-ubyte")
        #expect(throws: DatasetError.invalidFile(IDXError(path: path, problem: .trailingData(expectedBytes: 10, actualBytes: 11)))) {
            try ImageDataset.load(.test, from: DatasetFiles(directory: dir.path))
        }
    }

    @Test func mismatchedCountsAndBadLabelsAreNamed() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try Self.write(in: dir, labels: [0, 1, 2, 3], gzip: false)
        let files = try DatasetFiles(directory: dir.path)
        #expect(throws: DatasetError.sampleCountMismatch(images: files.trainImages, imageCount: 5, labels: files.trainLabels, labelCount: 4)) {
            try ImageDataset.load(.train, from: files)
        }
        try Self.write(in: dir, labels: [0, 1, 12, 3, 4], gzip: false)
        let error = DatasetError.labelOutOfRange(file: files.trainLabels, index: 2, label: 12, classes: 10)
        #expect(throws: error) { try ImageDataset.load(.train, from: files) }
        #expect(error.description.contains(files.trainLabels))
    }

    @Test func syntheticSetIsSeededAndBalancedEnough() {
        let a = ImageDataset.synthetic(count: 500, seed: 4), b = ImageDataset.synthetic(count: 500, seed: 4)
        #expect(a.images == b.images && a.labels == b.labels)
        #expect(ImageDataset.synthetic(count: 500, seed: 5).labels != a.labels)
        #expect(a.images.count == 500 * 784 && Set(a.labels) == Set(0..<10))
    }

    @Test(arguments: [false, true])
    func gatherCopiesTheChosenSamples(streaming: Bool) {
        let set = ImageDataset.synthetic(count: 20, seed: 1, rows: 2, columns: 2)
        var images = [Float](repeating: -9, count: 3 * 4)
        var labels = [UInt8](repeating: 99, count: 3)
        images.withUnsafeMutableBufferPointer { x in
            labels.withUnsafeMutableBufferPointer { y in set.gather([7, 2, 19], images: x, labels: y, streaming: streaming) }
        }
        #expect(labels == [set.labels[7], set.labels[2], set.labels[19]])
        #expect(images == Array(set.images[28..<32] + set.images[8..<12] + set.images[76..<80]))
    }

    /// The streaming copy under the gather: every start alignment of the destination, lengths
    /// around its 16-byte alignment and 64-byte steps, and the bytes around the target untouched.
    @Test func streamingCopyCopiesExactlyTheBytesAsked() {
        var source = [UInt8](repeating: 0, count: 400)
        var g = SplitMix64(seed: 9)
        for i in source.indices { source[i] = UInt8(truncatingIfNeeded: g.next()) }
        var failures: [String] = []
        for offset in 0..<16 {
            for length in [0, 1, 15, 16, 17, 63, 64, 65, 100, 127, 128, 129, 200, 333] {
                var target = [UInt8](repeating: 0xAB, count: 400 + 32)
                target.withUnsafeMutableBytes { t in
                    source.withUnsafeBytes { s in
                        lars_stream_copy(t.baseAddress! + offset, s.baseAddress! + 3, UInt(length))
                    }
                }
                lars_store_fence()
                let copied = Array(target[offset..<(offset + length)]) == Array(source[3..<(3 + length)])
                let around = target[..<offset].allSatisfy { $0 == 0xAB } && target[(offset + length)...].allSatisfy { $0 == 0xAB }
                if !copied || !around { failures.append("offset \(offset) length \(length)") }
            }
        }
        #expect(failures.isEmpty, "wrong copies: \(failures)")
    }
}
