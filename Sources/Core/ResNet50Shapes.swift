extension Layout {
    /// The 161 parameter tensors of torchvision's ResNet-50 (25,557,032 parameters), in its
    /// `named_parameters()` order. For benchmarks: a realistic mix of a few large and many small
    /// tensors.
    public static let resnet50Shapes: Layout = {
        var t: [TensorSpec] = []
        func conv(_ name: String, _ out: Int, _ inp: Int, _ k: Int) { t.append(.init(name: name + ".weight", shape: [out, inp, k, k])) }
        func norm(_ name: String, _ c: Int) {
            t.append(.init(name: name + ".weight", shape: [c]))
            t.append(.init(name: name + ".bias", shape: [c]))
        }
        conv("conv1", 64, 3, 7)
        norm("bn1", 64)
        var inplanes = 64
        for (stage, (blocks, planes)) in zip([3, 4, 6, 3], [64, 128, 256, 512]).enumerated() {
            for b in 0..<blocks {
                let p = "layer\(stage + 1).\(b)"
                conv(p + ".conv1", planes, inplanes, 1)
                norm(p + ".bn1", planes)
                conv(p + ".conv2", planes, planes, 3)
                norm(p + ".bn2", planes)
                conv(p + ".conv3", planes * 4, planes, 1)
                norm(p + ".bn3", planes * 4)
                if b == 0 {
                    conv(p + ".downsample.0", planes * 4, inplanes, 1)
                    norm(p + ".downsample.1", planes * 4)
                }
                inplanes = planes * 4
            }
        }
        t.append(.init(name: "fc.weight", shape: [1000, 2048]))
        t.append(.init(name: "fc.bias", shape: [1000]))
        return Layout(t)
    }()
}
