import Testing
@testable import Core

/// The real data set, as Debian's `dataset-fashion-mnist` installs it.
@Suite struct FashionMNISTTests {
    @Test func loadsBothSplitsNormalized() throws {
        let train = try FashionMNIST.load(.train)
        #expect(train.count == 60_000 && train.rows == 28 && train.columns == 28)
        #expect(train.images.count == 60_000 * 784)
        #expect(train.labels.allSatisfy { $0 < 10 })
        #expect(Array(train.labels.prefix(10)) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
        // The first training image (an ankle boot): 433 non-zero pixels summing to 76,247 of 255.
        let first = train.images[0..<784].map(Double.init)
        let raw = first.map { ($0 * 0.3530 + 0.2860) * 255 }
        #expect(abs(raw.reduce(0, +) - 76_247) < 0.05)
        #expect(abs(first.reduce(0, +) / 784 - 0.27021970) < 1e-5)
        #expect(abs(first.min()! - (-0.2860 / 0.3530)) < 1e-6)
        #expect(abs(first.max()! - (1 - 0.2860) / 0.3530) < 1e-6)
        // Over the whole training set the normalization centres and scales the pixels.
        let mean = train.images.reduce(0.0) { $0 + Double($1) } / Double(train.images.count)
        #expect(abs(mean) < 1e-3)

        let test = try FashionMNIST.load(.test)
        #expect(test.count == 10_000 && test.labels.first == 9)
        #expect(Set(test.labels) == Set(0..<10))
    }
}
