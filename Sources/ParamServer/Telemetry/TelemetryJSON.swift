/// A JSON value written by hand, so that telemetry controls what `JSONEncoder` does not:
/// keys keep their order, a missing value is written `null` (never omitted), and a
/// non-finite number becomes `null` instead of an encoding error.
enum TelemetryJSON: Sendable {
    case null
    case bool(Bool)
    case int(Int)
    /// Written `null` when not finite: JSON has no NaN or Inf.
    case number(Double)
    case string(String)
    case array([TelemetryJSON])
    case object([(String, TelemetryJSON)])
    /// Text already known to be one valid JSON value (the job config), inserted verbatim.
    case verbatim(String)

    /// A number, or `null` when it is absent (a non-finite one is written `null` too).
    static func optional(_ value: Double?) -> TelemetryJSON {
        value.map(TelemetryJSON.number) ?? .null
    }

    /// A string, or `null` when it is absent.
    static func optional(_ value: String?) -> TelemetryJSON {
        value.map(TelemetryJSON.string) ?? .null
    }

    /// An integer, or `null` when it is absent.
    static func optional(_ value: Int?) -> TelemetryJSON {
        value.map(TelemetryJSON.int) ?? .null
    }

    /// The compact serialization (no insignificant whitespace, no newline).
    var text: String {
        var out = ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        switch self {
        case .null:
            out += "null"
        case .bool(let value):
            out += value ? "true" : "false"
        case .int(let value):
            out += String(value)
        case .number(let value):
            if value.isFinite {
                // Swift's shortest round-trip form ("0.1", "1e-05", "2.0") is valid JSON.
                out += value.description
            } else {
                out += "null"
            }
        case .string(let value):
            Self.writeString(value, into: &out)
        case .array(let values):
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += "," }
                value.write(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { out += "," }
                Self.writeString(key, into: &out)
                out += ":"
                value.write(into: &out)
            }
            out += "}"
        case .verbatim(let text):
            out += text
        }
    }

    private static func writeString(_ value: String, into out: inout String) {
        out += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
