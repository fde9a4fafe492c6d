#include "request_json.h"

#include <cmath>

namespace moelens {

using nlohmann::json;

bool json_nesting_exceeds(std::string_view text, int limit) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return true;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return false;
}

json parse_body(std::string_view body) {
    if (json_nesting_exceeds(body, kMaxJsonDepth))
        throw BadRequest("the request body nests arrays or objects deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    json j = json::parse(body.begin(), body.end(), nullptr, false);
    if (j.is_discarded()) throw BadRequest("the request body is not valid JSON");
    if (!j.is_object()) throw BadRequest("the request body must be a JSON object");
    return j;
}

bool is_valid_utf8(std::string_view s) {
    size_t i = 0;
    const size_t n = s.size();
    while (i < n) {
        const unsigned char c = s[i];
        int len;
        unsigned cp;
        if (c < 0x80) {
            ++i;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else
            return false;
        if (i + len > n) return false;
        for (int k = 1; k < len; ++k) {
            const unsigned char d = s[i + k];
            if ((d & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static std::string quoted(const char * key) { return std::string("\"") + key + "\""; }

const json & field_or_null(const json & body, const char * key) {
    static const json null_value;
    const auto it = body.find(key);
    return it == body.end() ? null_value : *it;
}

std::string required_text(const json & body, const char * key) {
    const auto it = body.find(key);
    if (it == body.end()) throw BadRequest(quoted(key) + " is required");
    if (!it->is_string()) throw BadRequest(quoted(key) + " must be a string");
    const std::string & text = it->get_ref<const std::string &>();
    if (text.empty()) throw BadRequest(quoted(key) + " is empty: there is nothing to evaluate");
    if (!is_valid_utf8(text)) throw BadRequest(quoted(key) + " is not valid UTF-8");
    return text;
}

std::optional<bool> optional_bool(const json & body, const char * key) {
    const json & v = field_or_null(body, key);
    if (v.is_null()) return std::nullopt;
    if (!v.is_boolean()) throw BadRequest(quoted(key) + " must be true or false, got " + v.dump());
    return v.get<bool>();
}

int int_field(const json & body, const char * key, int lo, int hi, int dflt) {
    const json & v = field_or_null(body, key);
    if (v.is_null()) return dflt;
    const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    if (!v.is_number_integer()) throw BadRequest(quoted(key) + " must be an integer in " + range);
    // Unsigned values above INT64_MAX would wrap in get<long long>(); they are out of range anyway.
    if (v.is_number_unsigned() && v.get<unsigned long long>() > static_cast<unsigned long long>(hi))
        throw BadRequest(quoted(key) + " must be in " + range);
    const long long x = v.get<long long>();
    if (x < lo || x > hi) throw BadRequest(quoted(key) + " must be in " + range);
    return int(x);
}

double num_field(const json & body, const char * key, double lo, double hi, double dflt) {
    const json & v = field_or_null(body, key);
    if (v.is_null()) return dflt;
    const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    if (!v.is_number()) throw BadRequest(quoted(key) + " must be a number in " + range);
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < lo || x > hi) throw BadRequest(quoted(key) + " must be in " + range);
    return x;
}

}  // namespace moelens
