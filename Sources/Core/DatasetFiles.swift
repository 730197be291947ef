import Foundation

/// The four IDX files of an MNIST-format data set in one directory, each found under its
/// standard name, plain or gzip-compressed (the plain file wins when both exist).
public struct DatasetFiles: Sendable, Hashable {
    /// One of the four files, by its standard name without `.gz`.
    public enum Role: String, CaseIterable, Sendable {
        case trainImages = "train-images-idx3-ubyte"
        case trainLabels = "train-labels-idx1-ubyte"
        case testImages = "t10k-images-idx3-ubyte"
        case testLabels = "t10k-labels-idx1-ubyte"

        /// The header the file must have.
        public var kind: IDXHeader.Kind {
            switch self {
            case .trainImages, .testImages: .images
            case .trainLabels, .testLabels: .labels
            }
        }
    }

    /// Where Debian's `dataset-fashion-mnist` installs Fashion-MNIST (gzip files).
    public static let fashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

    /// The directory searched.
    public var directory: String
    public var trainImages: String
    public var trainLabels: String
    public var testImages: String
    public var testLabels: String

    /// Finds the four files in `directory`, or names the first one missing.
    public init(directory: String = DatasetFiles.fashionMNISTDirectory) throws(DatasetError) {
        func find(_ role: Role) throws(DatasetError) -> String {
            for candidate in [role.rawValue, role.rawValue + ".gz"] {
                let path = (directory as NSString).appendingPathComponent(candidate)
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                    return path
                }
            }
            throw .missingFile(directory: directory, name: role.rawValue)
        }
        self.directory = directory
        trainImages = try find(.trainImages)
        trainLabels = try find(.trainLabels)
        testImages = try find(.testImages)
        testLabels = try find(.testLabels)
    }

    /// The path of one file.
    public func path(for role: Role) -> String {
        switch role {
        case .trainImages: trainImages
        case .trainLabels: trainLabels
        case .testImages: testImages
        case .testLabels: testLabels
        }
    }

    /// Reads and checks the header of one file.
    public func header(for role: Role) throws(DatasetError) -> IDXHeader {
        do {
            return try IDXHeader.read(contentsOf: path(for: role), as: role.kind)
        } catch {
            throw .invalidFile(error)
        }
    }
}
