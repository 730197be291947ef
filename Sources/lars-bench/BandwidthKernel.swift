/// The reference loop for the memory bound: b[i] += s * c[i], SIMD16 like the optimizer's kernels,
/// so the two differ only in what they compute. Reads b and c, writes b: 12 bytes per element.
enum BandwidthKernel {
    static func axpyInPlace(_ b: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>, count n: Int, scale: Float) {
        typealias V = SIMD16<Float>
        let pb = UnsafeMutableRawPointer(b), pc = UnsafeRawPointer(c)
        let s = V(repeating: scale)
        let step = 2 * V.scalarCount, vb = MemoryLayout<V>.stride
        let vecEnd = n - n % step
        var i = 0
        while i < vecEnd {
            let o0 = i &* 4, o1 = o0 &+ vb
            let r0 = pb.loadUnaligned(fromByteOffset: o0, as: V.self) + s * pc.loadUnaligned(fromByteOffset: o0, as: V.self)
            let r1 = pb.loadUnaligned(fromByteOffset: o1, as: V.self) + s * pc.loadUnaligned(fromByteOffset: o1, as: V.self)
            pb.storeBytes(of: r0, toByteOffset: o0, as: V.self)
            pb.storeBytes(of: r1, toByteOffset: o1, as: V.self)
            i &+= step
        }
        while i < n {
            b[i] += scale * c[i]
            i += 1
        }
    }
}
