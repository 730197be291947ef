import Foundation
import Testing

@testable import Client

/// The `--stats-file` line: every field there, and the forward/backward's CPU time beside its
/// wall time (their difference is the time other threads had the training thread's core).
struct StepTimingsTests {
    @Test func aStatsLineCarriesEveryField() throws {
        var t = StepTimings()
        t.step = 7
        t.samples = 4096
        t.start = 1_795_000_000.25
        t.pull = 0.002
        t.gather = 0.0005
        t.compute = 0.19
        t.computeCPU = 0.18
        t.push = 0.001
        let line = t.jsonLine
        #expect(line.hasSuffix("\n"))
        let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(o["step"] as? Int == 7 && o["samples"] as? Int == 4096)
        let seconds = ["start": 1_795_000_000.25, "pull_s": 0.002, "gather_s": 0.0005, "compute_s": 0.19,
                       "compute_cpu_s": 0.18, "push_s": 0.001, "wall_s": 0.193]
        for (key, value) in seconds {
            let found = try #require(o[key] as? Double, "\(key) missing")
            #expect(abs(found - value) < 1e-6, "\(key): \(found), expected \(value)")
        }
    }

    @Test func threadCPUTimeCountsWorkAndNotSleep() {
        let a = StepTimings.threadCPUSeconds()
        usleep(200_000)
        let b = StepTimings.threadCPUSeconds()
        #expect(b - a < 0.05, "a 200 ms sleep counted \(b - a) s of CPU")
        // Spinning adds CPU time (however busy the machine, within 20 s), never more than the
        // wall time it took.
        let started = Date()
        var x = 0.0
        while StepTimings.threadCPUSeconds() - b < 0.05 && Date().timeIntervalSince(started) < 20 {
            for i in 0..<1000 { x += Double(i) }
        }
        let spent = StepTimings.threadCPUSeconds() - b
        #expect(x > 0)
        #expect(spent >= 0.05, "20 s of spinning counted \(spent) s of CPU")
        #expect(spent <= Date().timeIntervalSince(started) + 0.01)
    }
}
