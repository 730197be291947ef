import Core
import Foundation
import Wire

/// The parts of answering HELLO that do not depend on whether the model is known yet: the
/// token check and the WELCOME a rank gets. Used by the coordinator and, before a worker's
/// INIT, by the job host.
enum Handshake {
    /// A refusal when the server has a token and HELLO's differs (counted as `auth`).
    static func refusal(for hello: Hello, token: String?, telemetry: ServerTelemetry) -> WireError.Refusal? {
        guard let token, token != hello.token else { return nil }
        telemetry.rejected(.auth)
        return .init(code: .authFailed, message: "auth token does not match the server's --auth-token-file")
    }

    /// WELCOME for `rank`: the job description plus the rank's own fields.
    static func welcome(
        job: JobConfig, description: [String: Any], rank: Int, step: Int, layout: WireLayout,
        extra: [String: Any] = [:]
    ) -> Welcome {
        var d = description.merging(extra) { $1 }
        d["rank"] = rank
        d["share"] = job.share(ofRank: rank)
        d["current_step"] = step
        let json = (try? JSONSerialization.data(withJSONObject: d, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Welcome(
            rank: UInt32(rank), worldSize: UInt32(job.workers), currentStep: UInt64(step),
            job: String(decoding: json, as: UTF8.self), layout: layout)
    }
}
