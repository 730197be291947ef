import Testing
@testable import Core

@Suite("Layouts and the thread partition")
struct LayoutTests {
    @Test func resnet50Shapes() {
        let layout = Layout.resnet50Shapes
        #expect(layout.tensors.count == 161)
        #expect(layout.parameterCount == 25_557_032)
        #expect(Set(layout.tensors.map(\.name)).count == 161)
        #expect(layout.tensors.first?.name == "conv1.weight")
        #expect(layout.tensors.last == TensorSpec(name: "fc.bias", shape: [1000]))
    }

    /// Every tensor lands in exactly one part, and the parts are balanced by size to within the
    /// largest tensor.
    @Test(arguments: [1, 2, 3])
    func partitionCoversEveryTensorOnce(threads: Int) throws {
        let layout = Layout.resnet50Shapes
        let optimizer = try LARSOptimizer(config: OptimizerConfig(), layout: layout, threads: threads)
        #expect(optimizer.partition.count == threads)
        #expect(optimizer.partition.flatMap { $0 }.sorted() == Array(layout.tensors.indices))
        let loads = optimizer.partition.map { $0.reduce(0) { $0 + layout.tensors[$1].count } }
        let largest = layout.tensors.map(\.count).max()!
        #expect(loads.max()! - loads.min()! <= largest)
    }

    @Test func fewerTensorsThanThreads() throws {
        let layout = Layout([TensorSpec(name: "w", shape: [3])])
        let optimizer = try LARSOptimizer(config: OptimizerConfig(), layout: layout, threads: 2)
        #expect(optimizer.partition == [[0]])
    }
}
