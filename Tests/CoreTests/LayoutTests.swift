import Testing
@testable import Core

@Suite("Layouts and the order threads claim tensors in")
struct LayoutTests {
    @Test func resnet50Shapes() {
        let layout = Layout.resnet50Shapes
        #expect(layout.tensors.count == 161)
        #expect(layout.parameterCount == 25_557_032)
        #expect(Set(layout.tensors.map(\.name)).count == 161)
        #expect(layout.tensors.first?.name == "conv1.weight")
        #expect(layout.tensors.last == TensorSpec(name: "fc.bias", shape: [1000]))
    }

    /// The threads claim every tensor exactly once, largest first (ties in layout order), and
    /// the gradient pass claims them in the reverse order.
    @Test(arguments: [1, 2, 3])
    func claimOrderCoversEveryTensorOnceLargestFirst(threads: Int) throws {
        let layout = Layout.resnet50Shapes
        let optimizer = try LARSOptimizer(config: OptimizerConfig(), layout: layout, threads: threads)
        #expect(optimizer.threads == threads)
        #expect(optimizer.claimOrder.sorted() == Array(layout.tensors.indices))
        let sizes = optimizer.claimOrder.map { layout.tensors[$0].count }
        #expect(sizes == sizes.sorted(by: >))
        let order = optimizer.claimOrder
        for (a, b) in zip(order, order.dropFirst()) where layout.tensors[a].count == layout.tensors[b].count {
            #expect(a < b, "tensors \(a) and \(b) have equal sizes and keep layout order")
        }
        #expect(optimizer.gradientPassOrder == optimizer.claimOrder.reversed())
    }

    @Test func fewerTensorsThanThreads() throws {
        let layout = Layout([TensorSpec(name: "w", shape: [3])])
        let optimizer = try LARSOptimizer(config: OptimizerConfig(), layout: layout, threads: 2)
        #expect(optimizer.threads == 1)
        #expect(optimizer.claimOrder == [0])
    }
}
