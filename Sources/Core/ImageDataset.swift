import CPrefetch
/// Labelled images in memory, ready for a network: `count` rows of `rows x columns` Float32
/// pixels (row-major `[count, rows * columns]`, already normalized) and one class index each.
public struct ImageDataset: Sendable {
    /// Which half of an MNIST-format data set.
    public enum Split: String, Sendable, CaseIterable {
        case train, test

        var imagesRole: DatasetFiles.Role { self == .train ? .trainImages : .testImages }
        var labelsRole: DatasetFiles.Role { self == .train ? .trainLabels : .testLabels }
    }

    /// Pixel normalization: x -> (x / 255 - mean) / std.
    public struct Normalization: Sendable, Hashable {
        public var mean: Float
        public var std: Float

        public init(mean: Float, std: Float) {
            self.mean = mean
            self.std = std
        }

        /// Fashion-MNIST's training-set mean and standard deviation.
        public static let fashionMNIST = Normalization(mean: 0.2860, std: 0.3530)

        /// The normalized value of every byte value.
        func table() -> [Float] {
            (0..<256).map { (Float($0) / 255 - mean) / std }
        }
    }

    /// Pixels, `count x featureCount`, row-major.
    public var images: [Float]
    /// Class indices, each below `classCount`.
    public var labels: [UInt8]
    public var rows: Int
    public var columns: Int
    public var classCount: Int

    /// Wraps ready arrays; `images` must hold `labels.count x rows x columns` floats.
    public init(images: [Float], labels: [UInt8], rows: Int, columns: Int, classCount: Int = 10) {
        precondition(images.count == labels.count * rows * columns, "one image per label")
        self.images = images
        self.labels = labels
        self.rows = rows
        self.columns = columns
        self.classCount = classCount
    }

    /// Number of samples.
    public var count: Int { labels.count }
    /// Floats per image.
    public var featureCount: Int { rows * columns }

    /// Loads one split of the MNIST-format data set in `files`, checking both files' headers,
    /// their lengths, that they agree on the sample count and that every label is below
    /// `classCount`.
    public static func load(
        _ split: Split, from files: DatasetFiles, normalization: Normalization = .fashionMNIST, classCount: Int = 10
    ) throws(DatasetError) -> ImageDataset {
        let imagesPath = files.path(for: split.imagesRole), labelsPath = files.path(for: split.labelsRole)
        let imageReader: IDXReader, labelReader: IDXReader
        do throws(IDXError) {
            imageReader = try IDXReader(path: imagesPath, as: .images)
            labelReader = try IDXReader(path: labelsPath, as: .labels)
        } catch {
            throw .invalidFile(error)
        }
        guard imageReader.header.sampleCount == labelReader.header.sampleCount else {
            throw .sampleCountMismatch(
                images: imagesPath, imageCount: imageReader.header.sampleCount,
                labels: labelsPath, labelCount: labelReader.header.sampleCount)
        }
        let pixels: [UInt8], labels: [UInt8]
        do throws(IDXError) {
            labels = try labelReader.readBytes()
            pixels = try imageReader.readBytes()
        } catch {
            throw .invalidFile(error)
        }
        if let bad = labels.firstIndex(where: { Int($0) >= classCount }) {
            throw .labelOutOfRange(file: labelsPath, index: bad, label: labels[bad], classes: classCount)
        }
        let table = normalization.table()
        let images = [Float](unsafeUninitializedCapacity: pixels.count) { out, n in
            table.withUnsafeBufferPointer { t in
                pixels.withUnsafeBufferPointer { p in
                    for i in 0..<p.count { out[i] = t[Int(p[i])] }
                }
            }
            n = pixels.count
        }
        let dims = imageReader.header.dimensions
        return ImageDataset(images: images, labels: labels, rows: dims[1], columns: dims[2], classCount: classCount)
    }

    /// A seeded, learnable stand-in for tests: each class has a prototype image (uniform in
    /// [-1, 1] per pixel) and a sample is its class's prototype plus uniform noise in
    /// [-noise, noise]; labels are drawn uniformly. The same arguments give the same set.
    public static func synthetic(
        count: Int, seed: UInt64, rows: Int = 28, columns: Int = 28, classCount: Int = 10, noise: Float = 1
    ) -> ImageDataset {
        var g = SplitMix64(seed: seed)
        let features = rows * columns
        let prototypes = (0..<(classCount * features)).map { _ in g.nextFloat(in: -1...1) }
        var labels: [UInt8] = []
        var images: [Float] = []
        labels.reserveCapacity(count)
        images.reserveCapacity(count * features)
        for _ in 0..<count {
            let c = Int(g.next() % UInt64(classCount))
            labels.append(UInt8(c))
            for j in 0..<features { images.append(prototypes[c * features + j] + g.nextFloat(in: -noise...noise)) }
        }
        return ImageDataset(images: images, labels: labels, rows: rows, columns: columns, classCount: classCount)
    }

    /// Copies the samples at `indices`, in order, into the front of `images` and `labels`
    /// (a worker's batch, e.g. from `BatchPlan.slice`), one row copy per sample. With
    /// `streaming`, the rows are written with non-temporal stores, for a batch read a
    /// forward/backward later, by which time it would have left the caches anyway: streaming it
    /// neither reads the lines first nor evicts the working set of the thread computing (a
    /// two-worker job's non-peer overhead share 0.0107 -> 0.0083, five alternating pairs,
    /// docs/performance.md, worker, session 12). Asks `shouldStop` every 64 rows and returns
    /// early, the batch left partial, when it says true (a copy on another thread that its
    /// owner gave up on).
    public func gather(
        _ indices: some Collection<Int>, images: UnsafeMutableBufferPointer<Float>, labels: UnsafeMutableBufferPointer<UInt8>,
        streaming: Bool = false, until shouldStop: () -> Bool = { false }
    ) {
        precondition(images.count >= indices.count * featureCount && labels.count >= indices.count, "batch buffers too small")
        let f = featureCount
        self.images.withUnsafeBufferPointer { src in
            self.labels.withUnsafeBufferPointer { y in
                // The fence makes streamed rows visible before whatever the caller does next (a
                // gatherer thread publishes the rows it copied with an atomic store).
                defer { if streaming { lars_store_fence() } }
                for (k, i) in indices.enumerated() {
                    if k % 64 == 0 && shouldStop() { return }
                    if streaming {
                        lars_stream_copy(images.baseAddress! + k * f, src.baseAddress! + i * f, UInt(f * 4))
                    } else {
                        (images.baseAddress! + k * f).update(from: src.baseAddress! + i * f, count: f)
                    }
                    labels[k] = y[i]
                }
            }
        }
    }
}
