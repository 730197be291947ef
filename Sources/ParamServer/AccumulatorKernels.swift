import Wire

/// The server's hot loops over gradient data: scaling an arriving chunk by its sample count
/// into a staging buffer, adding staged chunks into the accumulator, and turning the sum into
/// the mean gradient while taking its sum of squares.
enum AccumulatorKernels {
    typealias V = SIMD8<Float>
    static let stride = 2 * V.scalarCount
    static let vbytes = MemoryLayout<V>.stride
    /// Must match `OptimizerKernels.block` so the norms agree bit for bit with the optimizer's.
    static let block = 1024

    /// dst[i] = scale * x[i] for `count` little-endian elements of `dtype` at `src` (any
    /// alignment). Reads 2–4 bytes and writes 4 per element. Returns false if any product is
    /// NaN or infinite.
    static func scale(_ src: UnsafeRawPointer, dtype: DType, count n: Int, by factor: Float, into dst: UnsafeMutablePointer<Float>) -> Bool {
        var poison: Float = 0
        switch dtype {
        case .float32:
            let out = UnsafeMutableRawPointer(dst)
            return scaledPass(src, by: factor, count: n) { o, x in
                out.storeBytes(of: x, toByteOffset: o, as: V.self)
            } one: { i, x in
                dst[i] = x
            }
        case .bfloat16:
            for i in 0..<n {
                let bits = UInt32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self))) << 16
                let x = Float(bitPattern: bits) * factor
                dst[i] = x
                poison += x * 0
            }
        case .float16:
            for i in 0..<n {
                let bits = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self))
                let x = Float(Float16(bitPattern: bits)) * factor
                dst[i] = x
                poison += x * 0
            }
        }
        return poison == 0
    }

    /// acc[i] += scale * x[i] for `count` Float32 elements at `src` (any alignment): the same
    /// operations as `scale` into a staging buffer, then `add`, so the same bits, in one pass.
    /// Reads 8 bytes, writes 4 per element. Returns false if any product is NaN or infinite.
    static func addScaled(_ src: UnsafeRawPointer, by factor: Float, into acc: UnsafeMutablePointer<Float>, count n: Int) -> Bool {
        let pa = UnsafeMutableRawPointer(acc)
        return scaledPass(src, by: factor, count: n) { o, x in
            pa.storeBytes(of: pa.loadUnaligned(fromByteOffset: o, as: V.self) + x, toByteOffset: o, as: V.self)
        } one: { i, x in
            acc[i] += x
        }
    }

    /// The pass `scale` (Float32) and `addScaled` share: factor * x for `count` Float32 elements
    /// at `src`, handed to `put` (byte offset, two vectors per iteration, in order) and then
    /// `one` (the tail, element by element); returns false if any product is NaN or infinite.
    @inline(__always)
    private static func scaledPass(
        _ src: UnsafeRawPointer, by factor: Float, count n: Int, put: (_ byteOffset: Int, V) -> Void, one: (_ index: Int, Float) -> Void
    ) -> Bool {
        let s = V(repeating: factor)
        let vecEnd = n - n % stride
        var z0 = V(), z1 = V()
        var i = 0
        while i < vecEnd {
            let o = i &* 4
            let a = src.loadUnaligned(fromByteOffset: o, as: V.self) * s
            let b = src.loadUnaligned(fromByteOffset: o &+ vbytes, as: V.self) * s
            put(o, a)
            put(o &+ vbytes, b)
            // x * 0 is 0 for finite x and NaN otherwise: one multiply-add flags the chunk.
            z0 += a * V()
            z1 += b * V()
            i &+= stride
        }
        var poison = (z0 + z1).sum()
        while i < n {
            let x = src.loadUnaligned(fromByteOffset: i &* 4, as: Float.self) * factor
            one(i, x)
            poison += x * 0
            i += 1
        }
        return poison == 0
    }

    /// acc[i] += x[i]: `addScaled` by 1 (x * 1 is x, so the same bits as a plain add). Reads 8
    /// bytes, writes 4 per element.
    static func add(_ x: UnsafePointer<Float>, into acc: UnsafeMutablePointer<Float>, count n: Int) {
        _ = addScaled(UnsafeRawPointer(x), by: 1, into: acc, count: n)
    }

    /// acc[i] = acc[i] / total, in place, returning `running` plus the sum of squares of the
    /// results, summed block by block exactly as `OptimizerKernels.sumOfSquares` does (chunks
    /// start at multiples of the block size, so passing the running total across a tensor's
    /// chunks reproduces the optimizer's own norm bit for bit). Reads and writes 4 bytes.
    static func mean(_ acc: UnsafeMutablePointer<Float>, count n: Int, total: Float, running: Double) -> Double {
        var sum = running
        meanPass(acc, count: n, total: total) { sum += $0 }
        return sum
    }

    /// The mean of a chunk whose only contribution is already in place: acc[i] = acc[i] / total,
    /// the same operations in the same order as `mean`, so the same bits. Instead of a running
    /// total it writes the terms `mean` would add, in order — one Double per block, then one per
    /// tail element — into `terms`, which must hold `termCapacity(count:)`; returns how many it
    /// wrote. Adding them one by one onto the running total at the step's close gives `mean`'s
    /// result bit for bit. (With the last contribution still to add: `finalizeScaled`.) Reads
    /// and writes 4 bytes per element.
    static func finalize(_ acc: UnsafeMutablePointer<Float>, count n: Int, total: Float, terms: UnsafeMutablePointer<Double>) -> Int {
        var written = 0
        meanPass(acc, count: n, total: total) { term in
            terms[written] = term
            written += 1
        }
        return written
    }

    /// `finalize` adding `factor * x[i]` for Float32 elements at `src` (any alignment) as it goes:
    /// the same operations as `scale` into a staging buffer, then `finalize`, so the same bits,
    /// in one pass. Returns the terms written and whether every product was finite. Reads 8
    /// bytes and writes 4 per element.
    static func finalizeScaled(
        _ acc: UnsafeMutablePointer<Float>, adding src: UnsafeRawPointer, by factor: Float, count n: Int, total: Float,
        terms: UnsafeMutablePointer<Double>
    ) -> (written: Int, finite: Bool) {
        var written = 0
        let pa = UnsafeRawPointer(acc)
        let s = V(repeating: factor)
        var z = V(), poison: Float = 0
        meanPass(
            acc, count: n, total: total,
            load: { o in
                let x = src.loadUnaligned(fromByteOffset: o, as: V.self) * s
                z += x * V()
                return pa.loadUnaligned(fromByteOffset: o, as: V.self) + x
            },
            loadOne: { i in
                let x = src.loadUnaligned(fromByteOffset: i &* 4, as: Float.self) * factor
                poison += x * 0
                return acc[i] + x
            }
        ) { term in
            terms[written] = term
            written += 1
        }
        return (written, z.sum() + poison == 0)
    }

    /// `meanPass` over the accumulator alone: acc[i] = acc[i] / total (`mean`, `finalize`).
    @inline(__always)
    private static func meanPass(_ acc: UnsafeMutablePointer<Float>, count n: Int, total: Float, term: (Double) -> Void) {
        let pa = UnsafeRawPointer(acc)
        meanPass(acc, count: n, total: total, load: { pa.loadUnaligned(fromByteOffset: $0, as: V.self) }, loadOne: { acc[$0] }, term: term)
    }

    /// The pass `mean`, `finalize` and `finalizeScaled` share: acc[i] = load(i) / total, handing
    /// `term` the parts of the results' sum of squares in the order they are summed: one Double
    /// per block of `block` elements, then one per tail element.
    @inline(__always)
    private static func meanPass(
        _ acc: UnsafeMutablePointer<Float>, count n: Int, total: Float,
        load: (_ byteOffset: Int) -> V, loadOne: (_ index: Int) -> Float, term: (Double) -> Void
    ) {
        let pa = UnsafeMutableRawPointer(acc)
        let d = V(repeating: total)
        let vecEnd = n - n % stride
        var start = 0
        while start < vecEnd {
            let end = min(start + block, vecEnd)
            var a0 = V(), a1 = V()
            var i = start
            while i < end {
                let o = i &* 4
                let x0 = load(o) / d
                let x1 = load(o &+ vbytes) / d
                pa.storeBytes(of: x0, toByteOffset: o, as: V.self)
                pa.storeBytes(of: x1, toByteOffset: o &+ vbytes, as: V.self)
                a0 += x0 * x0
                a1 += x1 * x1
                i &+= stride
            }
            term(Double((a0 + a1).sum()))
            start = end
        }
        for i in vecEnd..<n {
            let v = loadOne(i) / total
            acc[i] = v
            term(Double(v) * Double(v))
        }
    }

    /// Room `finalize` needs for a chunk of `count` elements.
    static func termCapacity(count n: Int) -> Int {
        (n + block - 1) / block + stride
    }
}
