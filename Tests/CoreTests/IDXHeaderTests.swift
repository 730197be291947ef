import Foundation
import Testing
@testable import Core

@Suite struct IDXHeaderTests {
    static let fashion = DatasetFiles.fashionMNISTDirectory

    @Test func fashionMNISTHeaders() throws {
        // The Debian package dataset-fashion-mnist (scripts/test installs it).
        let trainImages = try IDXHeader.read(contentsOf: Self.fashion + "/train-images-idx3-ubyte.gz", as: .images)
        #expect(trainImages == IDXHeader(dataType: .uint8, dimensions: [60_000, 28, 28]))
        #expect(trainImages.sampleCount == 60_000 && trainImages.sampleShape == [28, 28])
        #expect(trainImages.headerByteCount == 16 && trainImages.dataByteCount == 47_040_000)
        let trainLabels = try IDXHeader.read(contentsOf: Self.fashion + "/train-labels-idx1-ubyte.gz", as: .labels)
        #expect(trainLabels == IDXHeader(dataType: .uint8, dimensions: [60_000]))
        let testImages = try IDXHeader.read(contentsOf: Self.fashion + "/t10k-images-idx3-ubyte.gz", as: .images)
        #expect(testImages.dimensions == [10_000, 28, 28])
        let testLabels = try IDXHeader.read(contentsOf: Self.fashion + "/t10k-labels-idx1-ubyte.gz", as: .labels)
        #expect(testLabels.dimensions == [10_000])
    }

    @Test(arguments: [false, true])
    func craftedHeaders(gzip: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let images = try IDXFixture.write(IDXFixture.bytes(dimensions: [3, 2, 4]), as: "images", in: dir, gzip: gzip)
        #expect(try IDXHeader.read(contentsOf: images, as: .images) == IDXHeader(dataType: .uint8, dimensions: [3, 2, 4]))
        let floats = try IDXFixture.write(IDXFixture.bytes(type: 0x0D, dimensions: [2, 3], data: []), as: "floats", in: dir, gzip: gzip)
        let header = try IDXHeader.read(contentsOf: floats)
        #expect(header.dataType == .float32 && header.dimensions == [2, 3] && header.dataByteCount == 24)
        // The stream stays at the first data byte for a reader of the elements.
        let reader = try IDXReader(path: images, as: .images)
        #expect(try reader.source.readToEnd() == [UInt8](repeating: 7, count: 24))
    }

    @Test(arguments: [false, true])
    func damagedHeadersAreNamed(gzip: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        func problem(_ bytes: [UInt8], as kind: IDXHeader.Kind? = nil) throws -> IDXError? {
            let path = try IDXFixture.write(bytes, as: "f-\(UUID().uuidString)", in: dir, gzip: gzip)
            do {
                _ = try IDXHeader.read(contentsOf: path, as: kind)
                return nil
            } catch {
                #expect(error.path == path)
                #expect(error.description.hasPrefix(path + ": "))
                return error
            }
        }
        let valid = IDXFixture.bytes(dimensions: [3, 2, 4])
        #expect(try problem(Array(valid.prefix(10)))?.problem == .truncatedHeader(expectedBytes: 16, actualBytes: 10))
        #expect(try problem(Array(valid.prefix(2)))?.problem == .truncatedHeader(expectedBytes: 4, actualBytes: 2))
        #expect(try problem([])?.problem == .truncatedHeader(expectedBytes: 4, actualBytes: 0))
        #expect(try problem([0x50, 0x4B, 0x03, 0x04] + valid)?.problem == .badMagic(bytes: [0x50, 0x4B, 0x03, 0x04]))
        #expect(try problem(Array("hello, world".utf8))?.problem == .badMagic(bytes: Array("hell".utf8)))
        #expect(try problem([0, 0, 0x07, 1, 0, 0, 0, 1, 0])?.problem == .unsupportedDataType(code: 7))
        // Images and labels read as each other, or with the wrong element type.
        #expect(try problem(valid, as: .labels)?.problem == .wrongDimensions(
            dataType: .uint8, dimensions: [3, 2, 4], expected: "labels: ubyte with 1 dimension [count]"))
        #expect(try problem(IDXFixture.bytes(dimensions: [3]), as: .images)?.problem == .wrongDimensions(
            dataType: .uint8, dimensions: [3], expected: "images: ubyte with 3 dimensions [count, rows, columns]"))
        #expect(try problem(IDXFixture.bytes(type: 0x0D, dimensions: [3], data: []), as: .labels) != nil)
        #expect(try problem(IDXFixture.bytes(dimensions: [3, 0, 4], data: []), as: .images) != nil)
    }

    @Test func missingAndUnreadableFiles() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(throws: IDXError(path: dir.file("nope"), problem: .missingFile)) {
            try IDXHeader.read(contentsOf: dir.file("nope"))
        }
        #expect(throws: IDXError(path: dir.path, problem: .unreadable(reason: "is a directory"))) {
            try IDXHeader.read(contentsOf: dir.path)
        }
    }

    @Test func damagedGzipStreamIsReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let gz = try IDXFixture.gzip(IDXFixture.bytes(dimensions: [4000], data: (0..<4000).map { UInt8(truncatingIfNeeded: $0 &* 31) }))
        let path = try dir.write("cut.gz", Array(gz.prefix(gz.count / 2)))
        // The header still reads; reading on hits the cut.
        let reader = try IDXReader(path: path, as: .labels)
        #expect(reader.header.sampleCount == 4000)
        #expect {
            _ = try reader.source.readToEnd()
        } throws: { error in
            guard let e = error as? IDXError, case .corrupt(let reason) = e.problem else { return false }
            return e.path == path && reason == "unexpected end of file"
        }
    }
}
