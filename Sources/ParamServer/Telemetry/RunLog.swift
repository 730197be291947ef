import Foundation
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The run log: one JSON object per line, appended per closed step, per evaluation and per
/// change of the job's state, for plotting after (or during) a run.
///
/// Every line goes to the file with one `write(2)` as soon as it is made, so a crash loses at
/// most the line being written. A failure to open or write is logged (once, and again when
/// writing works again), never thrown: losing the log must not stop training.
public final class RunLog: Sendable {
    /// Where the lines go.
    public let path: String
    private let logger: Logger
    private let file = NIOLockedValueBox(File())

    private struct File {
        var descriptor: Int32 = -1
        var failing = false
    }

    /// Opens (creating it and its directory if needed) the file at `path` for appending.
    /// Nothing fails here: an unusable path is logged and every later line is retried.
    public init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
        file.withLockedValue { file in
            openFile(&file)
        }
    }

    deinit {
        file.withLockedValue { file in
            if file.descriptor >= 0 { _ = close(file.descriptor) }
            file.descriptor = -1
        }
    }

    /// Appends a `step` line: step, epoch, rate, loss, skipped, duration, and per layer
    /// name, weight_norm, gradient_norm, trust_ratio (`layers` is null for a skipped step).
    public func appendStep(
        step: Int, epoch: Double, rate: Double, loss: Double?, skipped: Bool, duration: Double,
        layerNames: [String], layers: [LayerFigures]?, time: Date = Date()
    ) {
        let layerValues: TelemetryJSON =
            layers.map { figures in
                .array(
                    zip(layerNames, figures).map { name, figure in
                        .object([
                            ("name", .string(name)),
                            ("weight_norm", .number(figure.weightNorm)),
                            ("gradient_norm", .number(figure.gradientNorm)),
                            ("trust_ratio", .number(figure.trustRatio)),
                        ])
                    })
            } ?? .null
        append(
            .object([
                ("type", .string("step")),
                ("time", .number(time.timeIntervalSince1970)),
                ("step", .int(step)),
                ("epoch", .number(epoch)),
                ("rate", .number(rate)),
                ("loss", .optional(loss)),
                ("skipped", .bool(skipped)),
                ("duration", .number(duration)),
                ("layers", layerValues),
            ]))
    }

    /// Appends an `eval` line: step, epoch, test_loss, accuracy.
    public func appendEval(step: Int, epoch: Double, testLoss: Double, accuracy: Double, time: Date = Date()) {
        append(
            .object([
                ("type", .string("eval")),
                ("time", .number(time.timeIntervalSince1970)),
                ("step", .int(step)),
                ("epoch", .number(epoch)),
                ("test_loss", .number(testLoss)),
                ("accuracy", .number(accuracy)),
            ]))
    }

    /// Appends a `state` line (the job started training, finished, diverged, was shut down).
    public func appendState(_ state: RunState, step: Int?, detail: String?, time: Date = Date()) {
        append(
            .object([
                ("type", .string("state")),
                ("time", .number(time.timeIntervalSince1970)),
                ("state", .string(state.rawValue)),
                ("step", .optional(step)),
                ("detail", .optional(detail)),
            ]))
    }

    private func append(_ line: TelemetryJSON) {
        var text = line.text
        text += "\n"
        file.withLockedValue { file in
            if file.descriptor < 0 {
                openFile(&file)
                guard file.descriptor >= 0 else { return }
            }
            var bytes = Array(text.utf8)[...]
            while !bytes.isEmpty {
                let written = bytes.withUnsafeBytes { write(file.descriptor, $0.baseAddress, $0.count) }
                if written < 0 {
                    if errno == EINTR { continue }
                    fail(&file, "cannot write to the run log", errno: errno)
                    return
                }
                bytes = bytes.dropFirst(written)
            }
            if file.failing {
                file.failing = false
                logger.info("run log writable again", metadata: ["path": "\(path)"])
            }
        }
    }

    private func openFile(_ file: inout File) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                fail(&file, "cannot create the run log's directory: \(error.localizedDescription)", errno: nil)
                return
            }
        }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if descriptor < 0 {
            fail(&file, "cannot open the run log", errno: errno)
            return
        }
        file.descriptor = descriptor
    }

    private func fail(_ file: inout File, _ message: String, errno code: Int32?) {
        if file.descriptor >= 0 {
            _ = close(file.descriptor)
            file.descriptor = -1
        }
        guard !file.failing else { return }
        file.failing = true
        var metadata: Logger.Metadata = ["path": "\(path)"]
        if let code { metadata["error"] = "\(String(cString: strerror(code)))" }
        logger.error("\(message); training goes on without it", metadata: metadata)
    }
}
