import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One thread that copies training samples into batch buffers at idle priority (Linux
/// `SCHED_IDLE`): it runs on a core that nothing else wants — beside the forward/backward when a
/// core is free, or while this worker waits for a slower peer or for the server — so the copy
/// leaves the step's critical path, where it used to compete with the push and the server's
/// update for the two cores.
///
/// An idle-priority thread gets almost no CPU while every core is busy (four workers on two
/// cores, say), so nobody ever waits on it for long: `wait(upTo:)` is bounded, and a caller that
/// gives up calls `abandon()` and copies the batch itself at normal priority into another
/// buffer. A job checks `shouldStop` between rows and returns early once abandoned.
final class BatchGatherer: @unchecked Sendable {
    /// A copy job; it calls the argument now and then and returns early when it says true.
    typealias Job = @Sendable (_ shouldStop: () -> Bool) -> Void

    private let condition = NSCondition()
    private var job: Job?
    private var working = false
    private var abandoned = false
    private var stopping = false

    init() {
        let ready = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            #if os(Linux)
            // Named for top and ps (Thread.name does not reach the OS here, and Glibc's Swift
            // module lacks pthread_setname_np).
            if let f = fopen("/proc/thread-self/comm", "w") {
                fputs("batch-gatherer", f)
                fclose(f)
            }
            #endif
            Self.lowerOwnPriority()
            ready.signal()
            serve()
        }
        thread.start()
        ready.wait()
    }

    /// Whether no job is queued or running (an abandoned one included).
    var isIdle: Bool {
        condition.withLock { !working }
    }

    /// Starts `work` on the gatherer thread; the gatherer must be idle.
    func submit(_ work: @escaping Job) {
        condition.lock()
        precondition(job == nil && !working, "BatchGatherer.submit while a job is in flight")
        job = work
        working = true
        abandoned = false
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until the job submitted last is done, or `timeout` has passed; true when it is done.
    func wait(upTo timeout: Duration) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while working {
            if !condition.wait(until: deadline) { return !working }
        }
        return true
    }

    /// Tells the running job to stop at its next check; returns at once. The gatherer is busy
    /// until the job has returned (`isIdle`).
    func abandon() {
        condition.withLock { abandoned = true }
    }

    /// Lets the thread end once its job, if any, is done (an unstarted job is dropped).
    func stop() {
        condition.lock()
        stopping = true
        abandoned = true
        if job != nil {
            job = nil
            working = false
        }
        condition.broadcast()
        while working { condition.wait() }
        condition.unlock()
    }

    private func serve() {
        while true {
            condition.lock()
            while job == nil && !stopping { condition.wait() }
            guard let work = job else {
                condition.unlock()
                return
            }
            job = nil
            condition.unlock()
            work { [self] in condition.withLock { abandoned } }
            condition.lock()
            working = false
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Linux's `SCHED_IDLE` policy (sched.h defines it only under _GNU_SOURCE, which Glibc's
    /// Swift module does not see).
    private static let schedIdle: Int32 = 5

    /// Puts the calling thread at idle priority, or at the lowest nice level where the system
    /// refuses `SCHED_IDLE`.
    private static func lowerOwnPriority() {
        #if os(Linux)
        var param = sched_param()
        param.sched_priority = 0
        if sched_setscheduler(0, schedIdle, &param) != 0 {
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
        }
        #endif
    }
}
