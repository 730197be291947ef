import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One thread that copies training samples into batch buffers at idle priority (Linux
/// `SCHED_IDLE`): it runs on a core that nothing else wants — beside the forward/backward when a
/// core is free, or while this worker waits for a slower peer or for the server — so the copy
/// leaves the step's critical path, where it used to compete with the push and the server's
/// update for the two cores. Work is handed over one job at a time; `wait()` blocks until the
/// job is done (blocking frees this worker's core, so the idle thread then gets it).
final class BatchGatherer: @unchecked Sendable {
    private let condition = NSCondition()
    private var job: (@Sendable () -> Void)?
    private var working = false
    private var stopping = false

    /// Whether the thread runs at idle priority (false where the system refused; it then runs
    /// at the lowest nice level, or as a normal thread).
    private(set) var idlePriority = false

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
            idlePriority = Self.lowerOwnPriority()
            ready.signal()
            serve()
        }
        thread.start()
        ready.wait()
    }

    /// Starts `work` on the gatherer thread. The previous job must be finished (`wait()`).
    func submit(_ work: @escaping @Sendable () -> Void) {
        condition.lock()
        precondition(job == nil && !working, "BatchGatherer.submit while a job is in flight")
        job = work
        working = true
        condition.broadcast()
        condition.unlock()
    }

    /// Blocks until the job submitted last is done.
    func wait() {
        condition.lock()
        while working { condition.wait() }
        condition.unlock()
    }

    /// Lets the thread end once its job, if any, is done.
    func stop() {
        condition.lock()
        stopping = true
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
            work()
            condition.lock()
            working = false
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Linux's `SCHED_IDLE` policy (sched.h defines it only under _GNU_SOURCE, which Glibc's
    /// Swift module does not see).
    private static let schedIdle: Int32 = 5

    /// Puts the calling thread at idle priority; true when `SCHED_IDLE` took.
    private static func lowerOwnPriority() -> Bool {
        #if os(Linux)
        var param = sched_param()
        param.sched_priority = 0
        if sched_setscheduler(0, schedIdle, &param) == 0 { return true }
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
        #endif
        return false
    }
}
