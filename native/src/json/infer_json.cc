#include "json/infer_json.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <system_error>

namespace umbra::json {
namespace {

enum class Ctx { kOther, kRoot, kInputs, kInput, kData };

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

inline bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

class Scanner {
 public:
  Scanner(const char* text, size_t length, const ScanBuffers& buffers, std::string& skeleton)
      : p_(text), end_(text + length), copied_(text), buffers_(buffers), skeleton_(skeleton) {}

  bool run() {
    skeleton_.clear();
    if (buffers_.meta_capacity < 2) return false;
    buffers_.meta[0] = 0;
    buffers_.meta[1] = 0;
    meta_used_ = 2;
    numbers_used_ = buffers_.numbers_start;
    skip_space();
    if (!value(0, Ctx::kRoot)) return false;
    skip_space();
    if (p_ != end_) return false;
    skeleton_.append(copied_, static_cast<size_t>(end_ - copied_));
    return true;
  }

 private:
  void skip_space() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  bool value(int depth, Ctx ctx) {
    if (p_ >= end_) return false;
    switch (*p_) {
      case '{':
        return object(depth + 1, ctx);
      case '[':
        if (ctx == Ctx::kData && numeric_array()) return true;
        return array(depth + 1, ctx == Ctx::kInputs ? Ctx::kInput : Ctx::kOther);
      case '"':
        return string();
      case 't':
        return literal("true", 4);
      case 'f':
        return literal("false", 5);
      case 'n':
        return literal("null", 4);
      default:
        return number(nullptr);
    }
  }

  bool object(int depth, Ctx ctx) {
    if (depth > kMaxDepth) return false;
    ++p_;
    skip_space();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    for (;;) {
      if (p_ >= end_ || *p_ != '"') return false;
      const char* key = p_ + 1;
      if (!string()) return false;
      const size_t key_length = static_cast<size_t>(p_ - 1 - key);
      skip_space();
      if (p_ >= end_ || *p_ != ':') return false;
      ++p_;
      skip_space();
      Ctx child = Ctx::kOther;
      if (ctx == Ctx::kRoot && key_length == 6 && std::memcmp(key, "inputs", 6) == 0) child = Ctx::kInputs;
      else if (ctx == Ctx::kInput && key_length == 4 && std::memcmp(key, "data", 4) == 0) child = Ctx::kData;
      if (!value(depth, child)) return false;
      bool more = false;
      if (!separator('}', &more)) return false;
      if (!more) return true;
    }
  }

  // `child` is the context of the elements (objects of "inputs" are inputs).
  bool array(int depth, Ctx child) {
    if (depth > kMaxDepth) return false;
    ++p_;
    skip_space();
    if (p_ < end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    for (;;) {
      if (!value(depth, child)) return false;
      bool more = false;
      if (!separator(']', &more)) return false;
      if (!more) return true;
    }
  }

  // What follows a member or an element: a comma (*more set) or the closing bracket (*more unset).
  bool separator(char close, bool* more) {
    skip_space();
    if (p_ >= end_) return false;
    if (*p_ == ',') {
      ++p_;
      skip_space();
      *more = true;
      return true;
    }
    if (*p_ != close) return false;
    ++p_;
    *more = false;
    return true;
  }

  bool string() {
    ++p_;
    while (p_ < end_) {
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      if (c != '\\') {
        ++p_;
        continue;
      }
      if (++p_ >= end_) return false;
      switch (*p_) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
          ++p_;
          break;
        case 'u':
          if (end_ - p_ < 5) return false;
          for (int i = 1; i <= 4; ++i)
            if (!is_hex(p_[i])) return false;
          // The markers' key: a document that spells it itself is left to JSON.parse.
          if (p_[1] == '0' && p_[2] == '0' && p_[3] == '0' && p_[4] == '0') return false;
          p_ += 5;
          break;
        default:
          return false;
      }
    }
    return false;
  }

  bool literal(const char* word, size_t length) {
    if (static_cast<size_t>(end_ - p_) < length || std::memcmp(p_, word, length) != 0) return false;
    p_ += length;
    return true;
  }

  // One JSON number (RFC 8259 grammar, which std::from_chars alone does not enforce); its value
  // goes to *out when out is set. A value out of double's range fails the call (not the scan).
  bool number(double* out) {
    const char* q = p_;
    if (q < end_ && *q == '-') ++q;
    if (q >= end_) return false;
    const char* const digits = q;
    if (*q == '0') {
      ++q;
    } else if (*q >= '1' && *q <= '9') {
      while (q < end_ && is_digit(*q)) ++q;
    } else {
      return false;
    }
    // Integers of up to 15 digits are exact in a double; a longer one may not be.
    if (q - digits > 15 && (q >= end_ || (*q != '.' && *q != 'e' && *q != 'E')) && !exact_in_double(digits, q)) {
      buffers_.meta[1] |= kInexactInteger;
    }
    if (q < end_ && *q == '.') {
      const char* digits = ++q;
      while (q < end_ && is_digit(*q)) ++q;
      if (q == digits) return false;
    }
    if (q < end_ && (*q == 'e' || *q == 'E')) {
      ++q;
      if (q < end_ && (*q == '+' || *q == '-')) ++q;
      const char* digits = q;
      while (q < end_ && is_digit(*q)) ++q;
      if (q == digits) return false;
    }
    if (out != nullptr) {
      const auto parsed = std::from_chars(p_, q, *out);
      if (parsed.ec != std::errc() || parsed.ptr != q) return false;
    }
    p_ = q;
    return true;
  }

  // Whether the integer spelled by [first, last) (digits only) reads as what was meant: itself,
  // when a double holds it, or the double it is the shortest spelling of (what a JavaScript
  // client's JSON.stringify writes for 2**62: 4611686018427388000, meaning 4611686018427387904).
  // One past 64 bits is taken as meant: no 64-bit integer input can hold it, and its range check
  // says so.
  static bool exact_in_double(const char* first, const char* last) {
    uint64_t value = 0;
    const auto parsed = std::from_chars(first, last, value);
    if (parsed.ec == std::errc::result_out_of_range) return true;
    const double d = static_cast<double>(value);
    if (d < 18446744073709551616.0 && static_cast<uint64_t>(d) == value) return true;
    // The shortest digits that read back as d ("4.611686018427388e+18"), against the literal's
    // digits without its trailing zeros, at the same power of ten.
    char shortest[32];
    const auto written = std::to_chars(shortest, shortest + sizeof shortest, d, std::chars_format::scientific);
    if (written.ec != std::errc()) return false;
    const char* e = std::find(static_cast<const char*>(shortest), static_cast<const char*>(written.ptr), 'e');
    std::string mantissa(static_cast<const char*>(shortest), e);
    mantissa.erase(std::remove(mantissa.begin(), mantissa.end(), '.'), mantissa.end());
    int exponent = 0;
    if (e == written.ptr || std::from_chars(e + (e[1] == '+' ? 2 : 1), written.ptr, exponent).ec != std::errc()) return false;
    const char* significant = last;
    while (significant > first + 1 && significant[-1] == '0') --significant;
    return exponent == last - first - 1 && mantissa.size() == static_cast<size_t>(significant - first) &&
           std::memcmp(mantissa.data(), first, mantissa.size()) == 0;
  }

  // Extracts the array at p_ when it qualifies (see the header); otherwise returns false with
  // nothing consumed or kept, and the caller reads it as ordinary JSON.
  bool numeric_array() {
    const char* const start = p_;
    const size_t first = numbers_used_;
    int32_t dims[kMaxDims];
    int32_t counts[kMaxDims];
    bool fixed[kMaxDims] = {};
    int level = 0;
    int leaf_level = -1;
    counts[0] = 0;
    ++p_;
    skip_space();
    auto give_up = [&]() {
      p_ = start;
      numbers_used_ = first;
      return false;
    };
    for (;;) {
      // An element.
      if (p_ >= end_) return give_up();
      if (*p_ == '[') {
        if (level + 1 >= kMaxDims || (leaf_level >= 0 && level >= leaf_level)) return give_up();
        ++counts[level];
        counts[++level] = 0;
        ++p_;
        skip_space();
        continue;
      }
      if (leaf_level < 0) leaf_level = level;
      if (level != leaf_level || numbers_used_ >= buffers_.numbers_capacity) return give_up();
      double v;
      if (!number(&v)) return give_up();
      buffers_.numbers[numbers_used_++] = v;
      ++counts[level];
      // After an element: a comma, or the ends of as many arrays as close here.
      for (;;) {
        skip_space();
        if (p_ >= end_) return give_up();
        if (*p_ == ',') {
          ++p_;
          skip_space();
          break;
        }
        if (*p_ != ']') return give_up();
        if (fixed[level] ? counts[level] != dims[level] : counts[level] == 0) return give_up();
        dims[level] = counts[level];
        fixed[level] = true;
        ++p_;
        if (level == 0) return keep(start, first, dims, leaf_level + 1);
        --level;
      }
    }
  }

  bool keep(const char* start, size_t first, const int32_t* dims, int ndims) {
    const size_t need = 3 + static_cast<size_t>(ndims);
    if (meta_used_ + need > buffers_.meta_capacity || first > INT32_MAX || numbers_used_ - first > INT32_MAX) {
      p_ = start;
      numbers_used_ = first;
      return false;
    }
    int32_t* m = buffers_.meta + meta_used_;
    m[0] = static_cast<int32_t>(first);
    m[1] = static_cast<int32_t>(numbers_used_ - first);
    m[2] = ndims;
    for (int i = 0; i < ndims; ++i) m[3 + i] = dims[i];
    meta_used_ += need;
    const int32_t k = buffers_.meta[0]++;
    skeleton_.append(copied_, static_cast<size_t>(start - copied_));
    skeleton_.append("{\"\\u0000\":");
    skeleton_.append(std::to_string(k));
    skeleton_.push_back('}');
    copied_ = p_;
    return true;
  }

  const char* p_;
  const char* const end_;
  const char* copied_;
  const ScanBuffers& buffers_;
  std::string& skeleton_;
  size_t numbers_used_ = 0;
  size_t meta_used_ = 0;
};

}  // namespace

bool scan_infer_request(const char* text, size_t length, const ScanBuffers& buffers, std::string& skeleton) {
  return Scanner(text, length, buffers, skeleton).run();
}

}  // namespace umbra::json
