// Fast path for the JSON body of an Open Inference Protocol request. The numbers of every
// `inputs[i].data` array are the bulk of such a body and the slow part of JSON.parse; this
// scanner validates the whole document, parses those numbers (correctly rounded, as JSON.parse
// does) and hands back the rest of the text, with each such array swapped for a small marker,
// for JSON.parse to build the few objects around them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace umbra::json {

// Most nesting levels of one extracted array (a deeper one stays in the text).
constexpr int kMaxDims = 8;
// Most nesting levels of the whole document; deeper ones make the scan give up (JSON.parse decides).
constexpr int kMaxDepth = 64;

struct ScanBuffers {
  // Receives the numbers of the extracted arrays, one after another, from numbers[numbers_start].
  double* numbers;
  size_t numbers_capacity;
  size_t numbers_start;
  // meta[0] = extracted arrays; meta[1] = flags (kInexactInteger); then per array: index of its
  // first number in numbers, element count, ndims, dims...
  int32_t* meta;
  size_t meta_capacity;
};

// meta[1] bit: the document holds an integer literal (anywhere) that a double does not hold
// exactly and that is not the shortest spelling of one either, such as 9007199254740993, which
// reads as 9007199254740992. A 64-bit integer input read from it may not be the number sent.
constexpr int32_t kInexactInteger = 1;

// Scans `text`. On success returns true and sets `skeleton` to the text with the K-th extracted
// array replaced by {"\u0000":K}. Returns false when the text is not valid JSON, contains the
// escape \u0000 (which the markers use), nests deeper than kMaxDepth, or a buffer is too small:
// the caller then parses the original text itself, which also words any syntax error.
//
// An array is extracted when it is the value of "data" in an object element of the top-level
// "inputs" array (keys spelled without escapes), holds only numbers, is nested at most kMaxDims
// deep, and is regular: no empty arrays, numbers only at the deepest level, and every array of
// one level as long as the others.
bool scan_infer_request(const char* text, size_t length, const ScanBuffers& buffers, std::string& skeleton);

}  // namespace umbra::json
