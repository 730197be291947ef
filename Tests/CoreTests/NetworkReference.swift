import Foundation

/// A Float64 forward pass of the built-in `mlp` and `cnn`, written out as plain loops
/// (direct convolution, no im2col, no BLAS): the independent reference the gradient checks
/// differentiate by central differences.
struct NetworkReference {
    let model: String
    /// Weights in layout order, PyTorch layouts.
    var weights: [[Double]]

    /// Mean softmax cross-entropy over the samples (rows of 784 pixels).
    func loss(images: [Double], labels: [UInt8]) -> Double {
        var total = 0.0
        for s in labels.indices {
            let x = Array(images[(s * 784)..<((s + 1) * 784)])
            let z = logits(x)
            let m = z.max()!
            total += log(z.reduce(0) { $0 + exp($1 - m) }) - (z[Int(labels[s])] - m)
        }
        return total / Double(labels.count)
    }

    func logits(_ x: [Double]) -> [Double] {
        switch model {
        case "mlp":
            let h1 = linear(x, 0, relu: true), h2 = linear(h1, 2, relu: true)
            return linear(h2, 4, relu: false)
        default:
            let c1 = pool(conv(x, 0, inC: 1, outC: 16, size: 28), channels: 16, size: 28)
            let c2 = pool(conv(c1, 2, inC: 16, outC: 32, size: 14), channels: 32, size: 14)
            return linear(linear(c2, 4, relu: true), 6, relu: false)
        }
    }

    private func linear(_ x: [Double], _ t: Int, relu: Bool) -> [Double] {
        let w = weights[t], b = weights[t + 1]
        return (0..<b.count).map { o in
            var s = b[o]
            for i in x.indices { s += w[o * x.count + i] * x[i] }
            return relu ? max(s, 0) : s
        }
    }

    /// 5x5, padding 2, stride 1, then ReLU.
    private func conv(_ x: [Double], _ t: Int, inC: Int, outC: Int, size n: Int) -> [Double] {
        let w = weights[t], b = weights[t + 1]
        var y = [Double](repeating: 0, count: outC * n * n)
        for o in 0..<outC {
            for oy in 0..<n {
                for ox in 0..<n {
                    var s = b[o]
                    for c in 0..<inC {
                        for i in 0..<5 {
                            let iy = oy + i - 2
                            if iy < 0 || iy >= n { continue }
                            for j in 0..<5 {
                                let ix = ox + j - 2
                                if ix < 0 || ix >= n { continue }
                                s += w[((o * inC + c) * 5 + i) * 5 + j] * x[(c * n + iy) * n + ix]
                            }
                        }
                    }
                    y[(o * n + oy) * n + ox] = max(s, 0)
                }
            }
        }
        return y
    }

    private func pool(_ x: [Double], channels: Int, size n: Int) -> [Double] {
        let h = n / 2
        var y = [Double](repeating: 0, count: channels * h * h)
        for c in 0..<channels {
            for oy in 0..<h {
                for ox in 0..<h {
                    let p = (c * n + 2 * oy) * n + 2 * ox
                    y[(c * h + oy) * h + ox] = max(max(x[p], x[p + 1]), max(x[p + n], x[p + n + 1]))
                }
            }
        }
        return y
    }
}
