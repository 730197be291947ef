import Foundation
import NIOCore
import NIOHTTP1

/// Answers one connection's requests for ``HTTPServer``, one response per request, after the
/// request's end (its body, if any, is ignored).
final class HTTPRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let telemetry: ServerTelemetry
    private var request: HTTPRequestHead?

    init(telemetry: ServerTelemetry) {
        self.telemetry = telemetry
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let known = ["/metrics", "/status", "/healthz"]
        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        var body = context.channel.allocator.buffer(capacity: 0)

        if !known.contains(path) {
            status = .notFound
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            body.writeString("not found: \(path)\n")
        } else if head.method != .GET && head.method != .HEAD {
            status = .methodNotAllowed
            headers.add(name: "Allow", value: "GET, HEAD")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            body.writeString("method not allowed: \(head.method.rawValue)\n")
        } else {
            status = .ok
            switch path {
            case "/metrics":
                headers.add(name: "Content-Type", value: ServerTelemetry.metricsContentType)
                body.writeString(telemetry.renderMetrics())
            case "/status":
                headers.add(name: "Content-Type", value: "application/json")
                body.writeBytes(telemetry.renderStatus())
            default:
                headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
                body.writeString("ok\n")
            }
        }
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Cache-Control", value: "no-store")
        let keepAlive = head.isKeepAlive
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
        }

        var response = HTTPResponseHead(version: head.version, status: status, headers: headers)
        if head.version.major == 1 && head.version.minor == 0 && keepAlive {
            response.headers.add(name: "Connection", value: "keep-alive")
        }
        context.write(wrapOutboundOut(.head(response)), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        if !keepAlive {
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
