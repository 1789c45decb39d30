// Shared helpers of the standalone native tests: counters, expectations, seeded inputs.
#pragma once

#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace umbra_test {

inline int failures = 0;
inline int checks = 0;
inline std::string context;
// The first failures of the group that is running, for its one-line report (run_group).
inline std::vector<std::string> first_failures;
constexpr size_t kFailuresKept = 5;

inline void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    if (first_failures.size() < kFailuresKept) first_failures.push_back("[" + context + "] " + what);
    if (failures <= 30) std::fprintf(stderr, "FAIL [%s] %s\n", context.c_str(), what.c_str());
  }
}

template <typename Fn>
void expect_throw(Fn fn, const std::string& needle, const std::string& what) {
  try {
    fn();
    expect(false, what + ": did not throw");
  } catch (const std::exception& e) {
    expect(std::string(e.what()).find(needle) != std::string::npos, what + ": message \"" + e.what() + "\" lacks \"" + needle + "\"");
  }
}

inline std::mt19937 rng(12345);
inline std::vector<float> random_vector(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) {
    do x = d(rng); while (x == 0.0f);
  }
  return v;
}

void test_prune();

}  // namespace umbra_test
