import Core

/// The data a worker trains and evaluates on: the training and test splits of an MNIST-format
/// set, checked against the fingerprint the server expects.
struct TrainingData {
    let train: ImageDataset
    let test: ImageDataset

    /// Why the data cannot be used; the message names the file and how to get the right one.
    struct Unusable: Error, CustomStringConvertible {
        var description: String
    }

    /// Loads both splits from `directory`; with `expected`, the training labels must match it.
    /// `dataset` (the job's; Fashion-MNIST when the job has none) says how to get the right data.
    static func load(directory: String, expected: DatasetFingerprint?, dataset: DatasetConfig?) throws(Unusable) -> TrainingData {
        let installHint = (dataset ?? DatasetConfig()).installHint(for: directory)
        let files: DatasetFiles
        do {
            files = try DatasetFiles(directory: directory)
        } catch {
            throw Unusable(description: "\(error); \(installHint)")
        }
        if let expected {
            let found: DatasetFingerprint
            do {
                found = try DatasetFingerprint(files: files)
            } catch {
                throw Unusable(description: "\(error); \(installHint)")
            }
            guard found == expected else {
                throw Unusable(description: "\(files.trainLabels) is not the job's data set: found \(found), "
                    + "the server expects \(expected); \(installHint), or pass --data-dir")
            }
        }
        do throws(DatasetError) {
            let train = try ImageDataset.load(.train, from: files, normalization: FashionMNIST.normalization)
            let test = try ImageDataset.load(.test, from: files, normalization: FashionMNIST.normalization)
            guard test.rows == train.rows, test.columns == train.columns else {
                throw DatasetError.imageSizeMismatch(
                    train: files.trainImages, trainSize: [train.rows, train.columns],
                    test: files.testImages, testSize: [test.rows, test.columns])
            }
            return TrainingData(train: train, test: test)
        } catch {
            throw Unusable(description: "\(error); \(installHint)")
        }
    }
}
