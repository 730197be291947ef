import NIOCore

extension Message {
    /// Decodes the payload of a control frame whose header `frame` has already been checked.
    ///
    /// Every field is bounds-checked and every byte of `payload` must be used; this is the one
    /// decoding path both ``FrameParser`` and ``FrameDecoder`` go through.
    public static func decode(frame: FrameHeader, payload: ByteBuffer, limits: WireLimits) throws(WireError) -> Message {
        var r = PayloadReader(payload, limits: limits)
        let message: Message
        switch frame.type {
        case .hello:
            let version = try r.integer("HELLO version", as: UInt16.self)
            let flags = try r.integer("HELLO flags", as: UInt8.self)
            guard flags & ~1 == 0 else {
                throw .malformed(field: "HELLO flags", value: "\(flags)", expected: "0 or 1 (bit 0: layout hash present)")
            }
            try r.reserved("HELLO reserved", as: UInt8.self)
            let rank = try r.integer("HELLO wanted rank", as: UInt32.self)
            let hash = try r.integer("HELLO layout hash", as: UInt64.self)
            if flags & 1 == 0, hash != 0 {
                throw .malformed(field: "HELLO layout hash", value: "\(hash)", expected: "0 when flag bit 0 is clear")
            }
            let token = try r.string16("HELLO token", limit: limits.maxTokenBytes)
            let name = try r.string16("HELLO worker name", limit: limits.maxNameBytes)
            message = .hello(Hello(
                version: version, wantedRank: rank == Hello.anyRank ? nil : rank,
                layoutHash: flags & 1 == 1 ? hash : nil, token: token, workerName: name))
        case .welcome:
            let rank = try r.integer("WELCOME rank", as: UInt32.self)
            let world = try r.integer("WELCOME world size", as: UInt32.self)
            guard rank < world else {
                throw .malformed(field: "WELCOME rank", value: "\(rank)", expected: "less than the world size \(world)")
            }
            let step = try r.integer("WELCOME current step", as: UInt64.self)
            let job = try r.string32("WELCOME job", limit: limits.maxControlPayload)
            let layout = try WireLayout.read(from: &r)
            message = .welcome(Welcome(rank: rank, worldSize: world, currentStep: step, job: job, layout: layout))
        case .initLayout:
            let chunkCount = try r.integer("INIT chunk count", as: UInt32.self)
            let layout = try WireLayout.read(from: &r)
            message = .initLayout(layout: layout, chunkCount: chunkCount)
        case .pull:
            message = .pull(step: frame.id)
        case .weights:
            message = .weights(step: frame.id, chunkCount: try r.integer("WEIGHTS chunk count", as: UInt32.self))
        case .pullShared:
            message = .pullShared(step: frame.id)
        case .weightsShared:
            message = .weightsShared(step: frame.id, slot: try r.integer("WEIGHTS_SHARED slot", as: UInt32.self))
        case .sharedGradients:
            let nonce = try r.integer("SHARED_GRADIENTS nonce", as: UInt64.self)
            let elements = try r.integer("SHARED_GRADIENTS elements", as: UInt64.self)
            let path = try r.string16("SHARED_GRADIENTS path", limit: limits.maxMessageBytes)
            message = .sharedGradients(nonce: nonce, elements: elements, path: path)
        case .sharedGradientsAnswer:
            let raw = try r.integer("SHARED_GRADIENTS_ANSWER accepted", as: UInt8.self)
            guard raw <= 1 else {
                throw .malformed(field: "SHARED_GRADIENTS_ANSWER accepted", value: "\(raw)", expected: "0 or 1")
            }
            message = .sharedGradientsAnswer(accepted: raw == 1)
        case .pushShared:
            let tensor = try r.integer("PUSH_SHARED tensor", as: UInt32.self)
            let offset = try r.integer("PUSH_SHARED offset", as: UInt64.self)
            let count = try r.integer("PUSH_SHARED count", as: UInt32.self)
            message = .pushShared(step: frame.id, tensor: tensor, offset: offset, count: count)
        case .pushBegin:
            message = .pushBegin(step: frame.id, sampleCount: try r.integer("PUSH_BEGIN sample count", as: UInt32.self))
        case .pushEnd:
            message = .pushEnd(step: frame.id, loss: try r.double("PUSH_END loss"))
        case .stepClosed:
            message = .stepClosed(step: frame.id, currentStep: try r.integer("STEP_CLOSED current step", as: UInt64.self))
        case .evalRequest:
            message = .evalRequest(step: frame.id)
        case .eval:
            let loss = try r.double("EVAL test loss")
            let accuracy = try r.double("EVAL accuracy")
            let samples = try r.integer("EVAL sample count", as: UInt32.self)
            message = .eval(step: frame.id, testLoss: loss, accuracy: accuracy, sampleCount: samples)
        case .heartbeat:
            message = .heartbeat(sequence: frame.id)
        case .error:
            let code = ErrorCode(rawValue: try r.integer("ERROR code", as: UInt16.self))
            let text = try r.string16("ERROR message", limit: limits.maxMessageBytes)
            message = .error(code: code, message: text, requestID: frame.id)
        case .bye:
            let raw = try r.integer("BYE reason", as: UInt8.self)
            guard let reason = ByeReason(rawValue: raw) else {
                throw .malformed(field: "BYE reason", value: "\(raw)", expected: "1 (done), 2 (diverged) or 3 (shutdown)")
            }
            message = .bye(reason: reason, detail: try r.string16("BYE detail", limit: limits.maxMessageBytes))
        case .initChunk, .weightsChunk, .pushChunk:
            throw .unexpectedMessage(frame.type, state: "as a control frame")
        }
        try r.finish(frame.type, payloadLength: Int(frame.length))
        return message
    }

    /// Appends this message's payload (without the frame header).
    func writePayload(to buffer: inout ByteBuffer, limits: WireLimits) throws(WireError) {
        switch self {
        case .hello(let hello):
            buffer.writeInteger(hello.version, endianness: .little)
            buffer.writeInteger(UInt8(hello.layoutHash == nil ? 0 : 1))
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(hello.wantedRank ?? Hello.anyRank, endianness: .little)
            buffer.writeInteger(hello.layoutHash ?? 0, endianness: .little)
            try buffer.writeString16(hello.token, field: "HELLO token", limit: limits.maxTokenBytes)
            try buffer.writeString16(hello.workerName, field: "HELLO worker name", limit: limits.maxNameBytes)
        case .welcome(let welcome):
            guard welcome.rank < welcome.worldSize else {
                throw .malformed(field: "WELCOME rank", value: "\(welcome.rank)", expected: "less than the world size \(welcome.worldSize)")
            }
            buffer.writeInteger(welcome.rank, endianness: .little)
            buffer.writeInteger(welcome.worldSize, endianness: .little)
            buffer.writeInteger(welcome.currentStep, endianness: .little)
            try buffer.writeString32(welcome.job, field: "WELCOME job", limit: limits.maxControlPayload)
            try welcome.layout.write(to: &buffer, limits: limits)
        case .initLayout(let layout, let chunkCount):
            buffer.writeInteger(chunkCount, endianness: .little)
            try layout.write(to: &buffer, limits: limits)
        case .pull, .pullShared, .evalRequest, .heartbeat:
            break
        case .weights(_, let chunkCount):
            buffer.writeInteger(chunkCount, endianness: .little)
        case .weightsShared(_, let slot):
            buffer.writeInteger(slot, endianness: .little)
        case .sharedGradients(let nonce, let elements, let path):
            buffer.writeInteger(nonce, endianness: .little)
            buffer.writeInteger(elements, endianness: .little)
            try buffer.writeString16(path, field: "SHARED_GRADIENTS path", limit: limits.maxMessageBytes)
        case .sharedGradientsAnswer(let accepted):
            buffer.writeInteger(UInt8(accepted ? 1 : 0))
        case .pushShared(_, let tensor, let offset, let count):
            buffer.writeInteger(tensor, endianness: .little)
            buffer.writeInteger(offset, endianness: .little)
            buffer.writeInteger(count, endianness: .little)
        case .pushBegin(_, let sampleCount):
            buffer.writeInteger(sampleCount, endianness: .little)
        case .pushEnd(_, let loss):
            buffer.writeInteger(loss.bitPattern, endianness: .little)
        case .stepClosed(_, let currentStep):
            buffer.writeInteger(currentStep, endianness: .little)
        case .eval(_, let testLoss, let accuracy, let sampleCount):
            buffer.writeInteger(testLoss.bitPattern, endianness: .little)
            buffer.writeInteger(accuracy.bitPattern, endianness: .little)
            buffer.writeInteger(sampleCount, endianness: .little)
        case .error(let code, let message, _):
            buffer.writeInteger(code.rawValue, endianness: .little)
            try buffer.writeString16(message, field: "ERROR message", limit: limits.maxMessageBytes)
        case .bye(let reason, let detail):
            buffer.writeInteger(reason.rawValue)
            try buffer.writeString16(detail, field: "BYE detail", limit: limits.maxMessageBytes)
        }
    }
}

extension Hello {
    /// The wanted-rank value that means "any rank".
    public static let anyRank = UInt32.max
}
