/// The tolerances the reference tests hold Core to (issue 2; DESIGN.md §3), and the error
/// measures they apply to. The reference is Float64 with w and v rounded to Float32 after every
/// step; Core runs in Float32 with Float64 norms, so the two drift apart by a few Float32 ulps.
enum Tolerance {
    /// Every element of w within 1e-6 x max|w_ref| (the largest weight of the layout at that
    /// step, DESIGN.md §3), for runs of up to 20 steps.
    ///
    /// The scale is the layout's, not each tensor's: for a one-element tensor a per-tensor scale
    /// is a per-element relative bound, which Float32 arithmetic cannot meet where the terms of
    /// v = m v + a d or w - v cancel (a bit-exact Float32 emulation of the kernel in numpy is
    /// off by up to 1.2e-5 of |v| there, exactly as Core is).
    static let weights = 1e-6
    /// Every element of v within 1e-6 x max|v_ref| of the layout at that step.
    static let momenta = 1e-6
    /// Schedule rates, relative.
    static let rate = 1e-12
    /// Reported trust ratios and effective rates, relative.
    static let trustRatio = 1e-5

    /// Per tensor, max |actual - expected| divided by the largest |expected| of all tensors:
    /// 0 when both are all zero, infinity when only `expected` is, or when `actual` holds a NaN.
    static func errorsRelativeToMax(_ actual: [UnsafeMutableBufferPointer<Float>], _ expected: [[Float]]) -> [Double] {
        precondition(actual.count == expected.count)
        let scale = expected.joined().reduce(0.0) { Swift.max($0, abs(Double($1))) }
        return zip(actual, expected).map { a, e in
            precondition(a.count == e.count)
            var diff = 0.0
            for (x, y) in zip(a, e) {
                diff = Swift.max(diff, abs(Double(x) - Double(y)))
                if x.isNaN { diff = .infinity }
            }
            if scale == 0 { return diff == 0 ? 0 : .infinity }
            return diff / scale
        }
    }

    /// |actual - expected| / |expected|; 0 when both are 0.
    static func relative(_ actual: Double, _ expected: Double) -> Double {
        if actual == expected { return 0 }
        return abs(actual - expected) / abs(expected)
    }
}
