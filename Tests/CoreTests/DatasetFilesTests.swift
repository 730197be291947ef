import Foundation
import Testing
@testable import Core

@Suite struct DatasetFilesTests {
    @Test func resolvesFashionMNIST() throws {
        let files = try DatasetFiles()
        let dir = DatasetFiles.fashionMNISTDirectory
        #expect(files.trainImages == dir + "/train-images-idx3-ubyte.gz")
        #expect(files.trainLabels == dir + "/train-labels-idx1-ubyte.gz")
        #expect(files.testImages == dir + "/t10k-images-idx3-ubyte.gz")
        #expect(files.testLabels == dir + "/t10k-labels-idx1-ubyte.gz")
        #expect(try files.header(for: .testImages).dimensions == [10_000, 28, 28])
        #expect(try files.header(for: .trainLabels).sampleCount == 60_000)
    }

    @Test func acceptsPlainAndGzipNamesAndPrefersPlain() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try IDXFixture.writeDataset(in: dir, gzip: true)
        try IDXFixture.write(IDXFixture.bytes(dimensions: [2], data: [1, 2]), as: "t10k-labels-idx1-ubyte", in: dir, gzip: false)
        let files = try DatasetFiles(directory: dir.path)
        #expect(files.trainImages == dir.file("train-images-idx3-ubyte.gz"))
        #expect(files.testLabels == dir.file("t10k-labels-idx1-ubyte"))
        for role in DatasetFiles.Role.allCases { #expect(try files.header(for: role).sampleCount >= 2) }
    }

    @Test(arguments: DatasetFiles.Role.allCases)
    func missingFileIsNamed(role: DatasetFiles.Role) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try IDXFixture.writeDataset(in: dir, gzip: true)
        try FileManager.default.removeItem(atPath: dir.file(role.rawValue + ".gz"))
        #expect(throws: DatasetError.missingFile(directory: dir.path, name: role.rawValue)) {
            try DatasetFiles(directory: dir.path)
        }
        let message = DatasetError.missingFile(directory: dir.path, name: role.rawValue).description
        #expect(message.contains(role.rawValue) && message.contains(dir.path))
    }

    @Test func theInstallHintFitsTheJobsDataSet() {
        let fashion = DatasetConfig().installHint(for: "/data/here")
        #expect(fashion.contains("apt-get install dataset-fashion-mnist"))
        #expect(fashion.contains(DatasetFiles.fashionMNISTDirectory))
        let other = DatasetConfig(name: "kmnist", dir: "/srv/kmnist").installHint(for: "/data/here")
        #expect(other.contains("\"kmnist\"") && other.contains("/data/here") && other.contains("t10k-labels-idx1-ubyte"))
        #expect(!other.contains("apt-get"), "Fashion-MNIST's package is no help for another data set: \(other)")
    }

    @Test func wrongKindOfFileIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try IDXFixture.writeDataset(in: dir, gzip: false)
        // Labels where the test images belong.
        try IDXFixture.write(IDXFixture.bytes(dimensions: [2], data: [1, 2]), as: "t10k-images-idx3-ubyte", in: dir, gzip: false)
        let files = try DatasetFiles(directory: dir.path)
        #expect {
            try files.header(for: .testImages)
        } throws: { error in
            guard case .invalidFile(let e) = error as? DatasetError, case .wrongDimensions = e.problem else { return false }
            return e.path == dir.file("t10k-images-idx3-ubyte")
        }
    }
}
