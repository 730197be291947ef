import COpenBLAS

/// OpenBLAS, as the layers use it: row-major single-precision GEMM and the library's thread
/// count. OpenBLAS threads spin while waiting, so processes sharing cores (a server and its
/// workers on one machine) each want one thread (NOTES-measured.md, SGEMM).
public enum BLAS {
    /// Sets the number of threads OpenBLAS uses for every later call in this process.
    public static func setThreads(_ count: Int) {
        openblas_set_num_threads(Int32(max(1, count)))
    }

    /// The number of threads OpenBLAS currently uses.
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// C = alpha * op(A) * op(B) + beta * C, all row-major: op(A) is m x k, op(B) is k x n,
    /// C is m x n with leading dimension n. `transA` means A is stored k x m (and likewise B).
    @inlinable
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        beta: Float = 0, c: UnsafeMutablePointer<Float>
    ) {
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha,
            a, Int32(transA ? m : k), b, Int32(transB ? k : n), beta, c, Int32(n))
    }
}
