// Reading a request body: JSON with a nesting limit (deeply nested input would overflow the
// stack in nlohmann's recursive copy, dump and compare), and typed, range-checked fields.
// Every failure is a BadRequest whose message names the field, so no malformed body can
// reach code that assumes a type (nlohmann's type_error would otherwise surface as a 500).
#pragma once

#include "errors.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace moelens {

// Deepest array/object nesting a request may have; the deepest valid request is 4.
constexpr int kMaxJsonDepth = 64;

// True when `text` nests arrays/objects deeper than `limit` (brackets inside strings do not
// count). Linear, no recursion, stops at the first level past the limit.
bool json_nesting_exceeds(std::string_view text, int limit);

// Parses a request body that must be one JSON object no deeper than kMaxJsonDepth.
nlohmann::json parse_body(std::string_view body);

bool is_valid_utf8(std::string_view s);

// The field, or a null value when it is absent (no copy).
const nlohmann::json & field_or_null(const nlohmann::json & body, const char * key);

// A required, non-empty, valid UTF-8 string.
std::string required_text(const nlohmann::json & body, const char * key);
// Absent or null gives nullopt; anything but true/false is a BadRequest.
std::optional<bool> optional_bool(const nlohmann::json & body, const char * key);
// Absent or null gives `dflt`; otherwise an integer in [lo, hi].
int int_field(const nlohmann::json & body, const char * key, int lo, int hi, int dflt);
// Absent or null gives `dflt`; otherwise a finite number in [lo, hi].
double num_field(const nlohmann::json & body, const char * key, double lo, double hi, double dflt);

}  // namespace moelens
