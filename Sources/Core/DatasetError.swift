/// A data set that cannot be used: a file missing, damaged, or disagreeing with another.
public enum DatasetError: Error, Equatable, CustomStringConvertible {
    /// Neither `name` nor `name.gz` exists in `directory`.
    case missingFile(directory: String, name: String)
    /// A file exists but is not a usable IDX file.
    case invalidFile(IDXError)
    /// The training images and labels announce different sample counts.
    case sampleCountMismatch(images: String, imageCount: Int, labels: String, labelCount: Int)
    /// A label is not a class index (`0..<classes`).
    case labelOutOfRange(file: String, index: Int, label: UInt8, classes: Int)
    /// The test images are not the size of the training images.
    case imageSizeMismatch(train: String, trainSize: [Int], test: String, testSize: [Int])

    public var description: String {
        switch self {
        case .missingFile(let directory, let name):
            return "data set file missing: neither \(name) nor \(name).gz in \(directory)"
        case .invalidFile(let error):
            return error.description
        case .sampleCountMismatch(let images, let imageCount, let labels, let labelCount):
            return "\(images) holds \(imageCount) images but \(labels) holds \(labelCount) labels"
        case .labelOutOfRange(let file, let index, let label, let classes):
            return "\(file): label \(label) of sample \(index) is not a class index (0..<\(classes))"
        case .imageSizeMismatch(let train, let trainSize, let test, let testSize):
            func size(_ dims: [Int]) -> String { dims.map(String.init).joined(separator: "x") }
            return "\(test) holds images of \(size(testSize)) pixels but \(train) holds \(size(trainSize)); "
                + "the two splits of a data set must have one image size"
        }
    }
}
