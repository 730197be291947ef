import Foundation
import Testing
@testable import Core

@Suite struct LayerKernelsTests {
    /// col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)> for random x and c.
    @Test(arguments: [(1, 6, 5, 5, 2), (3, 4, 4, 3, 1), (2, 7, 7, 5, 2)])
    func col2imIsTheAdjointOfIm2col(channels: Int, height: Int, width: Int, kernel: Int, pad: Int) {
        var g = SplitMix64(seed: 11)
        let n = channels * height * width, m = channels * kernel * kernel * height * width
        let x = (0..<n).map { _ in Double(g.nextFloat(in: -1...1)) }.map(Float.init)
        let c = (0..<m).map { _ in g.nextFloat(in: -1...1) }
        var col = [Float](repeating: .nan, count: m), back = [Float](repeating: .nan, count: n)
        LayerKernels.im2col(x, channels: channels, height: height, width: width, kernel: kernel, pad: pad, into: &col)
        LayerKernels.col2im(c, channels: channels, height: height, width: width, kernel: kernel, pad: pad, into: &back)
        let lhs = zip(col, c).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let rhs = zip(x, back).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(lhs - rhs) < 1e-4)
        // The centre tap's row is the image itself.
        let centre = (pad * kernel + pad) * height * width
        #expect(Array(col[centre..<(centre + height * width)]) == Array(x[0..<(height * width)]))
    }

    @Test func maxPoolRoutesTheGradientToTheMax() {
        let x: [Float] = [1, 5, 2, 0,
                          3, 4, 8, 8,
                          -1, -2, 0, 0,
                          -3, -4, 0, 7]
        var y = [Float](repeating: 0, count: 4), arg = [Int32](repeating: 0, count: 4)
        LayerKernels.maxPool2(x, planes: 1, height: 4, width: 4, into: &y, argmax: &arg)
        #expect(y == [5, 8, -1, 7])
        #expect(arg == [1, 6, 8, 15])
        var dx = [Float](repeating: .nan, count: 16)
        LayerKernels.maxPool2Backward([1, 2, 3, 4], argmax: arg, planes: 1, height: 4, width: 4, into: &dx)
        #expect(dx == [0, 1, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 4])
    }

    @Test func softmaxCrossEntropyIsStableForHugeLogits() {
        let logits: [Float] = [1000, 0, -1000, 1e30, 1e30, 0]
        var grad = [Float](repeating: 0, count: 6)
        let (loss, correct) = LayerKernels.softmaxCrossEntropy(logits: logits, labels: [0, 1], rows: 2, classes: 3, gradient: &grad, scale: 0.5)
        #expect(abs(loss - log(2.0)) < 1e-9)
        #expect(correct == 1)
        #expect(grad == [0, 0, 0, 0.25, -0.25, 0])
    }
}
