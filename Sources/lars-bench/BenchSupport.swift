import Dispatch

/// Timing helpers shared by the suites.
enum BenchClock {
    /// Seconds taken by `body`.
    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// Median seconds over `rounds` runs of `body`, after `warmup` untimed runs.
    static func median(rounds: Int, warmup: Int = 2, _ body: () throws -> Void) rethrows -> Double {
        for _ in 0..<warmup { try body() }
        var times: [Double] = []
        for _ in 0..<rounds { times.append(try seconds(body)) }
        times.sort()
        return times[times.count / 2]
    }
}

/// Prints one figure as `name=value`.
func report(_ name: String, _ value: Double, digits: Int = 3) {
    print("\(name)=\(formatted(value, digits: digits))")
}

func formatted(_ value: Double, digits: Int) -> String {
    var s = String(value)
    if value.isFinite {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        s = String((value * scale).rounded() / scale)
    }
    return s
}
