import Foundation

/// Runs executables of this package from the build directory the test binary lives in.
enum BuiltBinary {
    /// The directory holding the built products (`.build/<triple>/<config>`).
    static var directory: URL {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        // The test runner sits in <dir> or inside <dir>/<name>.xctest/...
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("lars-server").path) { return url }
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    /// The result of a finished process.
    struct Finished {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `name` with `arguments` to completion (killed after `timeout` seconds).
    static func run(_ name: String, _ arguments: [String], timeout: Double = 60) throws -> Finished {
        let p = Process()
        p.executableURL = url(name)
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        // Drain both pipes while waiting so a chatty process cannot block on a full pipe.
        let outData = LockedData(), errData = LockedData()
        let group = DispatchGroup()
        for (pipe, sink) in [(out, outData), (err, errData)] {
            group.enter()
            DispatchQueue.global().async {
                sink.set(pipe.fileHandleForReading.readDataToEndOfFile())
                group.leave()
            }
        }
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        group.wait()
        return Finished(status: p.terminationStatus, stdout: outData.string, stderr: errData.string)
    }
}

/// Bytes one thread writes and another reads after a join.
final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    var string: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
}
