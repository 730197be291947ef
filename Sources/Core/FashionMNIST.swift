/// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): 60,000 training and 10,000 test images of
/// 28 x 28 grey pixels in 10 classes, in MNIST's IDX format. Debian's `dataset-fashion-mnist`
/// installs it in `DatasetFiles.fashionMNISTDirectory`.
public enum FashionMNIST {
    /// Number of classes.
    public static let classCount = 10
    /// Training-set pixel mean and standard deviation (of x / 255).
    public static let normalization = ImageDataset.Normalization.fashionMNIST

    /// Loads one split from `directory` (default: where Debian installs it), normalized.
    /// Any MNIST-format set in another directory loads the same way.
    public static func load(
        _ split: ImageDataset.Split, directory: String = DatasetFiles.fashionMNISTDirectory
    ) throws(DatasetError) -> ImageDataset {
        try ImageDataset.load(split, from: DatasetFiles(directory: directory), normalization: normalization, classCount: classCount)
    }
}
