#include "json/format_numbers.h"

#include <charconv>
#include <cmath>

namespace umbra::json {
namespace {

// Longest shortest-form double: sign, 17 digits, point, exponent ("-1.2345678901234567e-308").
constexpr size_t kMaxNumberChars = 32;

void append_one(double v, std::string& out) {
  if (std::isnan(v)) {
    out += "\"NaN\"";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return;
  }
  char buffer[kMaxNumberChars];
  const auto written = std::to_chars(buffer, buffer + kMaxNumberChars, v);
  out.append(buffer, static_cast<size_t>(written.ptr - buffer));
}

template <typename T>
void append_all(const T* values, size_t count, std::string& out) {
  out.reserve(out.size() + 2 + count * 20);
  out.push_back('[');
  for (size_t i = 0; i < count; ++i) {
    if (i > 0) out.push_back(',');
    append_one(static_cast<double>(values[i]), out);
  }
  out.push_back(']');
}

}  // namespace

void append_json_numbers(const float* values, size_t count, std::string& out) { append_all(values, count, out); }

void append_json_numbers(const double* values, size_t count, std::string& out) { append_all(values, count, out); }

}  // namespace umbra::json
