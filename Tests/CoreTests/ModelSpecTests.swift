import Foundation
import Testing
@testable import Core

@Suite struct ModelSpecTests {
    @Test func mlpLayout() {
        let spec = ModelSpec.mlp
        #expect(spec.name == "mlp")
        #expect(spec.layout.tensors == [
            TensorSpec(name: "fc1.weight", shape: [512, 784]), TensorSpec(name: "fc1.bias", shape: [512]),
            TensorSpec(name: "fc2.weight", shape: [512, 512]), TensorSpec(name: "fc2.bias", shape: [512]),
            TensorSpec(name: "fc3.weight", shape: [10, 512]), TensorSpec(name: "fc3.bias", shape: [10]),
        ])
        // 784*512 + 512 + 512*512 + 512 + 512*10 + 10
        #expect(spec.layout.parameterCount == 669_706)
    }

    @Test func cnnLayout() {
        let spec = ModelSpec.cnn
        #expect(spec.layout.tensors == [
            TensorSpec(name: "conv1.weight", shape: [16, 1, 5, 5]), TensorSpec(name: "conv1.bias", shape: [16]),
            TensorSpec(name: "conv2.weight", shape: [32, 16, 5, 5]), TensorSpec(name: "conv2.bias", shape: [32]),
            TensorSpec(name: "fc1.weight", shape: [128, 1568]), TensorSpec(name: "fc1.bias", shape: [128]),
            TensorSpec(name: "fc2.weight", shape: [10, 128]), TensorSpec(name: "fc2.bias", shape: [10]),
        ])
        // conv1 400 + 16, conv2 12,800 + 32, fc1 200,704 + 128, fc2 1,280 + 10
        #expect(spec.layout.parameterCount == 215_370)
    }

    @Test func resnet50ShapesIsTheBenchmarkLayout() throws {
        let spec = try ModelSpec.named("resnet50-shapes")
        #expect(spec.layout == Layout.resnet50Shapes)
        #expect(spec.layout.tensors.count == 161)
        #expect(spec.layout.parameterCount == 25_557_032)
        #expect(spec.initializers[spec.layout.tensors.firstIndex { $0.name == "bn1.weight" }!] == .constant(1))
        #expect(spec.initializers[spec.layout.tensors.firstIndex { $0.name == "bn1.bias" }!] == .constant(0))
        #expect(spec.initializers[0] == .pyTorchDefault(fanIn: 3 * 7 * 7))
    }

    @Test(arguments: ["mlp", "cnn", "resnet50-shapes"])
    func lookupByName(name: String) throws {
        #expect(try ModelSpec.named(name).name == name)
    }

    @Test func unknownNameListsKnownModels() {
        #expect(throws: ModelSpecError.unknownModel(name: "vgg", known: ["mlp", "cnn", "resnet50-shapes"])) {
            try ModelSpec.named("vgg")
        }
        let message = ModelSpecError.unknownModel(name: "vgg", known: ModelSpec.builtInNames).description
        #expect(message.contains("\"vgg\"") && message.contains("\"mlp\", \"cnn\", \"resnet50-shapes\""))
    }

    @Test(arguments: [ModelSpec.mlp, ModelSpec.cnn])
    func initIsDeterministicAndWithinPyTorchBounds(spec: ModelSpec) {
        let a = spec.initialValues(seed: 42)
        let b = spec.initialValues(seed: 42)
        let c = spec.initialValues(seed: 43)
        #expect(a == b)
        for (i, t) in spec.layout.tensors.enumerated() {
            #expect(a[i].count == t.count)
            #expect(a[i] != c[i], "seed changes \(t.name)")
            // PyTorch: kaiming_uniform_(a: sqrt(5)) and the bias rule both give 1/sqrt(fan_in),
            // with fan_in the weight's inputs per output.
            let weightShape = spec.layout.tensors[i & ~1].shape
            let bound = Float(1 / Double(weightShape.dropFirst().reduce(1, *)).squareRoot())
            #expect(spec.initializers[i] == .uniform(bound: bound))
            let maxAbs = a[i].map(abs).max()!
            #expect(maxAbs <= bound, "\(t.name) within ±\(bound)")
            if t.count >= 500 {
                #expect(maxAbs > 0.95 * bound, "\(t.name) fills its range")
                let mean = a[i].reduce(0, +) / Float(t.count)
                #expect(abs(mean) < 0.1 * bound, "\(t.name) centred")
            }
        }
        // A weight and its bias share a bound but draw from different streams.
        #expect(Array(a[0].prefix(10)) != Array(a[1].prefix(10)))
    }

    @Test func initIntoCallerBuffersMatchesAndTensorsAreIndependent() throws {
        let spec = ModelSpec.cnn
        let expected = spec.initialValues(seed: 7)
        let arena = FloatArena(layout: spec.layout)
        try spec.initialize(seed: 7, into: arena.buffers)
        for (i, b) in arena.buffers.enumerated() { #expect(Array(b) == expected[i]) }
        // One tensor alone comes out the same as in the whole-model pass.
        var single = [Float](repeating: 0, count: spec.layout.tensors[2].count)
        try single.withUnsafeMutableBufferPointer { try spec.initialize(tensor: 2, seed: 7, into: $0) }
        #expect(single == expected[2])
    }

    @Test func constantInitAndBufferChecks() throws {
        let spec = ModelSpec.resnet50Shapes
        let bn = spec.layout.tensors.firstIndex { $0.name == "bn1.weight" }!
        var values = [Float](repeating: -5, count: 64)
        try values.withUnsafeMutableBufferPointer { try spec.initialize(tensor: bn, seed: 1, into: $0) }
        #expect(values.allSatisfy { $0 == 1 })

        var short = [Float](repeating: 0, count: 10)
        #expect(throws: ModelSpecError.bufferMismatch(model: "mlp", tensor: "fc1.bias", expected: 512, actual: 10)) {
            try short.withUnsafeMutableBufferPointer { try ModelSpec.mlp.initialize(tensor: 1, seed: 1, into: $0) }
        }
        #expect(throws: ModelSpecError.tensorCountMismatch(model: "mlp", expected: 6, actual: 0)) {
            try ModelSpec.mlp.initialize(seed: 1, into: [])
        }
    }

    @Test func tensorSeedsFollowTheDocumentedStream() {
        var g = SplitMix64(seed: 99)
        let firstThree = [g.next(), g.next(), g.next()]
        #expect((0..<3).map { ModelSpec.tensorSeed(jobSeed: 99, index: $0) } == firstThree)
    }
}
