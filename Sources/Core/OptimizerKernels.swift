import CPrefetch

/// The optimizer's hot loops. Each reads and writes caller-owned Float32 memory through
/// SIMD8 unaligned loads and stores, with two independent accumulators; sums of squares are
/// taken in Float over blocks of `block` elements and folded into Double, which keeps the
/// relative error near Float64's while the inner loop stays in SIMD registers.
enum OptimizerKernels {
    /// How far ahead of its loads the gradient-norm pass (its four-stream part) asks for cache
    /// lines, in bytes, one line per stream per iteration. On top of the hardware prefetcher it
    /// took a four-stream read of 102 MB from about 20 to 23 GB/s in a probe on a slower-memory
    /// VM (docs/performance.md, optimizer, session 6); 256 and 512 measured alike, 1024 and
    /// 2048 worse. The fused update does not prefetch: on a VM with 44-50 GB/s in-place
    /// bandwidth its prefetches cost 2-4% (session 13).
    static let prefetchDistance = 512
    typealias V = SIMD8<Float>
    /// Elements per Float partial sum before it is folded into Double.
    static let block = 1024
    static let stride = 2 * V.scalarCount
    static let vbytes = MemoryLayout<V>.stride

    /// Sum of x[i]^2. Reads 4 bytes per element. A result that overflowed Float on the way
    /// (elements near 1e19) comes back as +infinity; see `exactSumOfSquares`.
    ///
    /// The sum is defined block by block: each block of `block` elements is summed in Float with
    /// two accumulators (even and odd vectors), and the block sums are added in Double in block
    /// order, then the tail element by element. For speed, large tensors are read as four
    /// streams side by side (one core keeps more misses in flight: ~16 -> ~22 GB/s here), each
    /// block still summed exactly as above, so the result is bit-identical to the plain order
    /// (the server's gradient pass relies on that).
    static func sumOfSquares(_ x: UnsafeBufferPointer<Float>) -> Double {
        guard let base = x.baseAddress else { return 0 }
        let p = UnsafeRawPointer(base)
        let n = x.count
        let vecEnd = n - n % stride
        let fullBlocks = vecEnd / block
        let perStream = fullBlocks / 4
        var total: Double = 0
        var start = 0
        if perStream >= 2 {
            total = withUnsafeTemporaryAllocation(of: Double.self, capacity: 4 * perStream) { partial in
                let streamBytes = perStream * block * 4
                for j in 0..<perStream {
                    var a0 = V(), a1 = V(), b0 = V(), b1 = V(), c0 = V(), c1 = V(), d0 = V(), d1 = V()
                    var o = j * block * 4
                    let end = o + block * 4
                    while o < end {
                        let ahead = o &+ prefetchDistance
                        lars_prefetch_read(p + ahead)
                        lars_prefetch_read(p + (ahead &+ streamBytes))
                        lars_prefetch_read(p + (ahead &+ 2 &* streamBytes))
                        lars_prefetch_read(p + (ahead &+ 3 &* streamBytes))
                        let a = p.loadUnaligned(fromByteOffset: o, as: V.self)
                        let a2 = p.loadUnaligned(fromByteOffset: o &+ vbytes, as: V.self)
                        let b = p.loadUnaligned(fromByteOffset: o &+ streamBytes, as: V.self)
                        let b2 = p.loadUnaligned(fromByteOffset: o &+ streamBytes &+ vbytes, as: V.self)
                        let c = p.loadUnaligned(fromByteOffset: o &+ 2 &* streamBytes, as: V.self)
                        let c2 = p.loadUnaligned(fromByteOffset: o &+ 2 &* streamBytes &+ vbytes, as: V.self)
                        let d = p.loadUnaligned(fromByteOffset: o &+ 3 &* streamBytes, as: V.self)
                        let d2 = p.loadUnaligned(fromByteOffset: o &+ 3 &* streamBytes &+ vbytes, as: V.self)
                        a0 += a * a
                        a1 += a2 * a2
                        b0 += b * b
                        b1 += b2 * b2
                        c0 += c * c
                        c1 += c2 * c2
                        d0 += d * d
                        d1 += d2 * d2
                        o &+= 2 &* vbytes
                    }
                    partial[j] = Double((a0 + a1).sum())
                    partial[perStream + j] = Double((b0 + b1).sum())
                    partial[2 * perStream + j] = Double((c0 + c1).sum())
                    partial[3 * perStream + j] = Double((d0 + d1).sum())
                }
                var t: Double = 0
                for v in partial { t += v }
                return t
            }
            start = 4 * perStream * block
        }
        while start < vecEnd {
            let end = min(start + block, vecEnd)
            var a0 = V(), a1 = V()
            var i = start
            while i < end {
                let x0 = p.loadUnaligned(fromByteOffset: i &* 4, as: V.self)
                let x1 = p.loadUnaligned(fromByteOffset: i &* 4 &+ vbytes, as: V.self)
                a0 += x0 * x0
                a1 += x1 * x1
                i &+= stride
            }
            total += Double((a0 + a1).sum())
            start = end
        }
        for i in vecEnd..<n {
            let v = Double(base[i])
            total += v * v
        }
        return total
    }

    /// Sum of x[i] * y[i]. Reads 8 bytes per element (for the `norm_of_sum` denominator).
    static func dot(_ x: UnsafeBufferPointer<Float>, _ y: UnsafeBufferPointer<Float>) -> Double {
        guard let bx = x.baseAddress, let by = y.baseAddress else { return 0 }
        let px = UnsafeRawPointer(bx), py = UnsafeRawPointer(by)
        let n = min(x.count, y.count)
        let vecEnd = n - n % stride
        var total: Double = 0
        var start = 0
        while start < vecEnd {
            let end = min(start + block, vecEnd)
            var a0 = V(), a1 = V()
            var i = start
            while i < end {
                let o = i &* 4
                a0 += px.loadUnaligned(fromByteOffset: o, as: V.self) * py.loadUnaligned(fromByteOffset: o, as: V.self)
                a1 += px.loadUnaligned(fromByteOffset: o &+ vbytes, as: V.self)
                    * py.loadUnaligned(fromByteOffset: o &+ vbytes, as: V.self)
                i &+= stride
            }
            total += Double((a0 + a1).sum())
            start = end
        }
        for i in vecEnd..<n { total += Double(bx[i]) * Double(by[i]) }
        return total
    }

    /// Sum of squares accumulated element by element in Double: the slow path taken only when
    /// the fast sum is not finite, to tell a real NaN/Inf from a Float overflow.
    static func exactSumOfSquares(_ x: UnsafeBufferPointer<Float>) -> Double {
        var total: Double = 0
        for v in x { total += Double(v) * Double(v) }
        return total
    }

    /// Index of the first NaN or infinity in x, if any. Reads 4 bytes per element.
    static func firstNonFinite(_ x: UnsafeBufferPointer<Float>) -> Int? {
        x.firstIndex { !$0.isFinite }
    }

    /// The scalars of one tensor's fused update: d = g + beta w; v' = m v + a d;
    /// w' = w - (k1 v' + k2 d).
    struct Coefficients {
        var beta: Float
        var m: Float
        var a: Float
        var k1: Float
        var k2: Float
    }

    /// One fused pass over w, g, v: reads w, g, v and writes w', v' (20 bytes per element); w'
    /// goes to `wOut`, which may be `w` itself. Returns ||w'||^2, the next step's ||w||^2, so
    /// the weights never need a norm pass of their own.
    static func fusedUpdate(
        w: UnsafePointer<Float>, wOut: UnsafeMutablePointer<Float>,
        g: UnsafePointer<Float>, v: UnsafeMutablePointer<Float>,
        count n: Int, _ c: Coefficients
    ) -> Double {
        fusedUpdate(w: w, wOut: wOut, g: g, v: v, count: n, beta: c.beta, m: c.m, a: c.a, k1: c.k1, k2: c.k2)
    }

    // The scalars arrive as separate arguments: passed as one struct they reach LLVM packed in a
    // vector register, and the SLP vectorizer then mixes lanes of unrelated products (3x slower).
    static func fusedUpdate(
        w: UnsafePointer<Float>, wOut: UnsafeMutablePointer<Float>,
        g: UnsafePointer<Float>, v: UnsafeMutablePointer<Float>,
        count n: Int, beta sb: Float, m sm: Float, a sa: Float, k1 sk1: Float, k2 sk2: Float
    ) -> Double {
        // Without nesterov k2 is 0: the loop that leaves the k2 term out keeps every constant in
        // a register (baseline x86-64 has 16 SSE registers; the full form spills two per
        // iteration) and runs 5-10% faster here. For finite d, k1 v' + 0 d equals k1 v' (up to
        // the sign of a zero), so both loops give the same weights.
        if sk2 == 0 {
            return fusedUpdateWithoutK2(w: w, wOut: wOut, g: g, v: v, count: n, beta: sb, m: sm, a: sa, k1: sk1)
        }
        return fusedUpdateWithK2(w: w, wOut: wOut, g: g, v: v, count: n, beta: sb, m: sm, a: sa, k1: sk1, k2: sk2)
    }

    @inline(never)
    static func fusedUpdateWithoutK2(
        w: UnsafePointer<Float>, wOut: UnsafeMutablePointer<Float>,
        g: UnsafePointer<Float>, v: UnsafeMutablePointer<Float>,
        count n: Int, beta: Float, m: Float, a: Float, k1: Float
    ) -> Double {
        fusedLoop(w: w, wOut: wOut, g: g, v: v, count: n, beta: beta, m: m, a: a, k1: k1, k2: 0, withK2: false)
    }

    @inline(never)
    static func fusedUpdateWithK2(
        w: UnsafePointer<Float>, wOut: UnsafeMutablePointer<Float>,
        g: UnsafePointer<Float>, v: UnsafeMutablePointer<Float>,
        count n: Int, beta: Float, m: Float, a: Float, k1: Float, k2: Float
    ) -> Double {
        fusedLoop(w: w, wOut: wOut, g: g, v: v, count: n, beta: beta, m: m, a: a, k1: k1, k2: k2, withK2: true)
    }

    /// The fused pass; `withK2` is a constant at both call sites, so each gets its own loop.
    @inline(__always)
    private static func fusedLoop(
        w: UnsafePointer<Float>, wOut: UnsafeMutablePointer<Float>,
        g: UnsafePointer<Float>, v: UnsafeMutablePointer<Float>,
        count n: Int, beta sb: Float, m sm: Float, a sa: Float, k1 sk1: Float, k2 sk2: Float, withK2: Bool
    ) -> Double {
        let pw = UnsafeRawPointer(w), pg = UnsafeRawPointer(g)
        let pv = UnsafeMutableRawPointer(v), po = UnsafeMutableRawPointer(wOut)
        let beta = V(repeating: sb), m = V(repeating: sm), a = V(repeating: sa)
        let k1 = V(repeating: sk1), k2 = V(repeating: sk2)
        @inline(__always) func update(_ o: Int) -> V {
            let w0 = pw.loadUnaligned(fromByteOffset: o, as: V.self)
            let d = pg.loadUnaligned(fromByteOffset: o, as: V.self) + beta * w0
            let nv = m * pv.loadUnaligned(fromByteOffset: o, as: V.self) + a * d
            let nw = withK2 ? w0 - (k1 * nv + k2 * d) : w0 - k1 * nv
            pv.storeBytes(of: nv, toByteOffset: o, as: V.self)
            po.storeBytes(of: nw, toByteOffset: o, as: V.self)
            return nw * nw
        }
        let vecEnd = n - n % stride
        var total: Double = 0
        var start = 0
        while start < vecEnd {
            let end = min(start + block, vecEnd)
            var s0 = V(), s1 = V()
            var i = start
            while i < end {
                let o = i &* 4
                s0 += update(o)
                s1 += update(o &+ vbytes)
                i &+= stride
            }
            total += Double((s0 + s1).sum())
            start = end
        }
        for i in vecEnd..<n {
            let d = g[i] + sb * w[i]
            let nv = sm * v[i] + sa * d
            let nw = withK2 ? w[i] - (sk1 * nv + sk2 * d) : w[i] - sk1 * nv
            v[i] = nv
            wOut[i] = nw
            total += Double(nw) * Double(nw)
        }
        return total
    }
}
