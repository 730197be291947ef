import Foundation

/// The elementwise and gather/scatter loops of the layers (the matrix products go to BLAS).
/// Activations are row-major: `[batch, features]` for linear layers, `[batch, channels,
/// height, width]` for convolutions, so each sample is one contiguous row.
enum LayerKernels {
    // MARK: Bias and ReLU

    /// y[r, j] = y[r, j] + bias[j], then max(0, .) when `relu`, for `rows` rows of `width`
    /// (reads and writes y once, reads bias per row from cache).
    static func addBias(_ y: UnsafeMutablePointer<Float>, rows: Int, width: Int, bias: UnsafePointer<Float>, relu: Bool) {
        let vectorEnd = width & ~7
        for r in 0..<rows {
            let row = y + r * width
            var j = 0
            while j < vectorEnd {
                var v = UnsafeRawPointer(row + j).loadUnaligned(as: SIMD8<Float>.self)
                v += UnsafeRawPointer(bias + j).loadUnaligned(as: SIMD8<Float>.self)
                if relu { v.replace(with: SIMD8(repeating: 0), where: v .< 0) }
                UnsafeMutableRawPointer(row + j).storeBytes(of: v, as: SIMD8<Float>.self)
                j += 8
            }
            while j < width {
                let v = row[j] + bias[j]
                row[j] = relu ? max(v, 0) : v
                j += 1
            }
        }
    }

    /// y[c, p] = y[c, p] + bias[c] (then ReLU) over `channels` planes of `plane` pixels: one
    /// sample of a convolution's output.
    static func addChannelBias(_ y: UnsafeMutablePointer<Float>, channels: Int, plane: Int, bias: UnsafePointer<Float>, relu: Bool) {
        for c in 0..<channels {
            let b = SIMD8<Float>(repeating: bias[c])
            let row = y + c * plane
            var p = 0
            while p + 8 <= plane {
                var v = UnsafeRawPointer(row + p).loadUnaligned(as: SIMD8<Float>.self) + b
                if relu { v.replace(with: SIMD8(repeating: 0), where: v .< 0) }
                UnsafeMutableRawPointer(row + p).storeBytes(of: v, as: SIMD8<Float>.self)
                p += 8
            }
            while p < plane {
                let v = row[p] + bias[c]
                row[p] = relu ? max(v, 0) : v
                p += 1
            }
        }
    }

    /// dy[i] = 0 where y[i] <= 0, over `count` elements: the ReLU backward step taken from the
    /// ReLU's own output (y > 0 exactly where its input was), so the input need not be kept.
    static func reluMask(_ dy: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>, count: Int) {
        var i = 0
        while i + 8 <= count {
            var g = UnsafeRawPointer(dy + i).loadUnaligned(as: SIMD8<Float>.self)
            let v = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            g.replace(with: SIMD8(repeating: 0), where: v .<= 0)
            UnsafeMutableRawPointer(dy + i).storeBytes(of: g, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count {
            if y[i] <= 0 { dy[i] = 0 }
            i += 1
        }
    }

    /// db[j] = sum over rows of dy[r, j] (or db[j] += that sum when `accumulate`): a linear
    /// layer's bias gradient.
    static func columnSums(
        _ dy: UnsafePointer<Float>, rows: Int, width: Int, into db: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        if !accumulate { db.update(repeating: 0, count: width) }
        let vectorEnd = width & ~7
        for r in 0..<rows {
            let row = dy + r * width
            var j = 0
            while j < vectorEnd {
                let s = UnsafeRawPointer(db + j).loadUnaligned(as: SIMD8<Float>.self)
                    + UnsafeRawPointer(row + j).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(db + j).storeBytes(of: s, as: SIMD8<Float>.self)
                j += 8
            }
            while j < width {
                db[j] += row[j]
                j += 1
            }
        }
    }

    /// db[c] += sum of plane c of dy, over `channels` planes of `plane` pixels (one sample of
    /// a convolution's output gradient).
    static func accumulatePlaneSums(_ dy: UnsafePointer<Float>, channels: Int, plane: Int, into db: UnsafeMutablePointer<Float>) {
        for c in 0..<channels {
            let row = dy + c * plane
            var acc = SIMD8<Float>(repeating: 0)
            var p = 0
            while p + 8 <= plane {
                acc += UnsafeRawPointer(row + p).loadUnaligned(as: SIMD8<Float>.self)
                p += 8
            }
            var s = acc.sum()
            while p < plane {
                s += row[p]
                p += 1
            }
            db[c] += s
        }
    }

    // MARK: Softmax cross-entropy

    /// Softmax cross-entropy over `rows` rows of `classes` logits with the labels given.
    /// Returns the summed loss (each row's logsumexp minus its label's logit, shifted by the
    /// row max for stability, in Double) and the count of rows whose largest logit (first on
    /// ties) is the label. When `gradient` is given, writes (softmax - onehot) * scale there
    /// (reads the logits once more; `gradient` may alias `logits`).
    static func softmaxCrossEntropy(
        logits: UnsafePointer<Float>, labels: UnsafePointer<UInt8>, rows: Int, classes: Int,
        gradient: UnsafeMutablePointer<Float>?, scale: Float
    ) -> (loss: Double, correct: Int) {
        var loss = 0.0
        var correct = 0
        for r in 0..<rows {
            let z = logits + r * classes
            var best = 0
            for j in 1..<classes where z[j] > z[best] { best = j }
            let label = Int(labels[r])
            if best == label { correct += 1 }
            let m = z[best]
            var sum = 0.0
            for j in 0..<classes { sum += exp(Double(z[j] - m)) }
            loss += log(sum) - Double(z[label] - m)
            if let gradient {
                let g = gradient + r * classes
                let inverse = 1 / sum
                for j in 0..<classes {
                    let p = Float(exp(Double(z[j] - m)) * inverse)
                    g[j] = (p - (j == label ? 1 : 0)) * scale
                }
            }
        }
        return (loss, correct)
    }

    // MARK: Convolution (stride 1, zero padding) and 2x2 max-pooling

    /// Unfolds one sample x[channels, height, width] into col[channels * k * k, height * width]
    /// (stride 1, `pad` zeros each side, output the input's size): row (c, i, j) holds the input
    /// pixel under kernel tap (i, j) for every output pixel. Writes every element of col.
    static func im2col(
        _ x: UnsafePointer<Float>, channels: Int, height: Int, width: Int, kernel k: Int, pad: Int,
        into col: UnsafeMutablePointer<Float>
    ) {
        let plane = height * width
        var row = col
        for c in 0..<channels {
            let xc = x + c * plane
            for i in 0..<k {
                for j in 0..<k {
                    let dx = j - pad
                    // Output columns whose input column ox + dx lies inside the image.
                    let lo = max(0, -dx), hi = min(width, width - dx)
                    for oy in 0..<height {
                        let out = row + oy * width
                        let iy = oy + i - pad
                        if iy < 0 || iy >= height || lo >= hi {
                            out.update(repeating: 0, count: width)
                            continue
                        }
                        let src = xc + iy * width + dx
                        if lo > 0 { out.update(repeating: 0, count: lo) }
                        (out + lo).update(from: src + lo, count: hi - lo)
                        if hi < width { (out + hi).update(repeating: 0, count: width - hi) }
                    }
                    row += plane
                }
            }
        }
    }

    /// The adjoint of `im2col`: dx[channels, height, width] = sum of every col entry that was
    /// copied from that pixel (overwrites dx; padding entries are dropped).
    static func col2im(
        _ col: UnsafePointer<Float>, channels: Int, height: Int, width: Int, kernel k: Int, pad: Int,
        into dx: UnsafeMutablePointer<Float>
    ) {
        let plane = height * width
        dx.update(repeating: 0, count: channels * plane)
        var row = col
        for c in 0..<channels {
            let xc = dx + c * plane
            for i in 0..<k {
                for j in 0..<k {
                    let dxOff = j - pad
                    let lo = max(0, -dxOff), hi = min(width, width - dxOff)
                    if lo < hi {
                        for oy in 0..<height {
                            let iy = oy + i - pad
                            if iy < 0 || iy >= height { continue }
                            let src = row + oy * width
                            let dst = xc + iy * width + dxOff
                            for ox in lo..<hi { dst[ox] += src[ox] }
                        }
                    }
                    row += plane
                }
            }
        }
    }

    /// 2x2 max-pooling with stride 2 over `planes` planes of height x width (both even):
    /// y gets each window's max, `argmax` the offset of that input pixel within its plane
    /// (first on ties), for the backward scatter.
    static func maxPool2(
        _ x: UnsafePointer<Float>, planes: Int, height: Int, width: Int,
        into y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>
    ) {
        let oh = height / 2, ow = width / 2
        for p in 0..<planes {
            let xp = x + p * height * width
            let yp = y + p * oh * ow, ap = argmax + p * oh * ow
            for oy in 0..<oh {
                for ox in 0..<ow {
                    // Values held in registers and selects rather than branches: which pixel
                    // wins is data-dependent and mispredicts half the time.
                    let first = (2 * oy) * width + 2 * ox
                    let a = xp[first], b = xp[first + 1], c = xp[first + width], d = xp[first + width + 1]
                    let top = b > a ? b : a, topIndex = b > a ? first + 1 : first
                    let bottom = d > c ? d : c, bottomIndex = d > c ? first + width + 1 : first + width
                    let lower = bottom > top
                    yp[oy * ow + ox] = lower ? bottom : top
                    ap[oy * ow + ox] = Int32(lower ? bottomIndex : topIndex)
                }
            }
        }
    }

    /// The backward of `maxPool2`: dx gets each dy at its window's argmax, zero elsewhere
    /// (overwrites dx, `planes` planes of height x width).
    static func maxPool2Backward(
        _ dy: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, planes: Int, height: Int, width: Int,
        into dx: UnsafeMutablePointer<Float>
    ) {
        let plane = height * width, outPlane = (height / 2) * (width / 2)
        dx.update(repeating: 0, count: planes * plane)
        for p in 0..<planes {
            let dxp = dx + p * plane, dyp = dy + p * outPlane, ap = argmax + p * outPlane
            for o in 0..<outPlane { dxp[Int(ap[o])] = dyp[o] }
        }
    }
}
