/// The built-in models of DESIGN.md §2, with PyTorch's tensor names, shapes and default init.
extension ModelSpec {
    /// `mlp`: 784-512-512-10 with ReLU (669,706 parameters).
    public static let mlp: ModelSpec = {
        var b = Builder()
        b.linear("fc1", in: 784, out: 512)
        b.linear("fc2", in: 512, out: 512)
        b.linear("fc3", in: 512, out: 10)
        return b.spec(name: "mlp")
    }()

    /// `cnn`: conv 5x5 1->16 (pad 2), ReLU, max-pool 2, conv 5x5 16->32 (pad 2), ReLU, max-pool 2,
    /// fc 1568->128, ReLU, fc 128->10 (215,370 parameters).
    public static let cnn: ModelSpec = {
        var b = Builder()
        b.conv("conv1", in: 1, out: 16, kernel: 5)
        b.conv("conv2", in: 16, out: 32, kernel: 5)
        b.linear("fc1", in: 32 * 7 * 7, out: 128)
        b.linear("fc2", in: 128, out: 10)
        return b.spec(name: "cnn")
    }()

    /// `resnet50-shapes`: torchvision ResNet-50's 161 tensors, for benchmarks. Convolutions and
    /// the classifier get PyTorch's default uniform init, batch-norm scales 1 and shifts 0.
    public static let resnet50Shapes: ModelSpec = {
        let layout = Layout.resnet50Shapes
        let inits: [TensorInit] = layout.tensors.map { t in
            if t.rank >= 2 { return .pyTorchDefault(fanIn: t.shape.dropFirst().reduce(1, *)) }
            if t.name == "fc.bias" { return .pyTorchDefault(fanIn: 2048) }
            return .constant(t.name.hasSuffix(".weight") ? 1 : 0)
        }
        return ModelSpec(name: "resnet50-shapes", layout: layout, initializers: inits)
    }()

    private struct Builder {
        var tensors: [TensorSpec] = []
        var inits: [TensorInit] = []

        mutating func linear(_ name: String, in fanIn: Int, out: Int) {
            add(name, weight: [out, fanIn], bias: out, fanIn: fanIn)
        }

        mutating func conv(_ name: String, in channels: Int, out: Int, kernel: Int) {
            add(name, weight: [out, channels, kernel, kernel], bias: out, fanIn: channels * kernel * kernel)
        }

        private mutating func add(_ name: String, weight: [Int], bias: Int, fanIn: Int) {
            tensors.append(TensorSpec(name: name + ".weight", shape: weight))
            tensors.append(TensorSpec(name: name + ".bias", shape: [bias]))
            inits += [.pyTorchDefault(fanIn: fanIn), .pyTorchDefault(fanIn: fanIn)]
        }

        func spec(name: String) -> ModelSpec {
            ModelSpec(name: name, layout: Layout(tensors), initializers: inits)
        }
    }
}
