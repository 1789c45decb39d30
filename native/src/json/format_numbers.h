// JSON text for arrays of floating-point output values: each value as the shortest decimal that
// reads back to the same double (what JavaScript's number formatting gives, at about a third of
// its cost), NaN and the infinities as the strings "NaN", "Infinity" and "-Infinity".
#pragma once

#include <cstddef>
#include <string>

namespace umbra::json {

// Appends "[v0,v1,...]" to out. Float32 values are written as the doubles they widen to.
void append_json_numbers(const float* values, size_t count, std::string& out);
void append_json_numbers(const double* values, size_t count, std::string& out);

}  // namespace umbra::json
