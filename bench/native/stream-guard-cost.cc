// What the HTTP guard (native/src/net/stream_guard.h) costs per request on its own: one socket
// read per request of a digits infer request as wrk sends it, through GuardedReader, against the
// copy of the same bytes alone. The served cost is in bench/RESULTS-io-threads.md (--io=2,2-unguarded).
//   g++ -O2 -std=c++17 -Inative/src bench/native/stream-guard-cost.cc native/src/net/stream_guard.cc -o /tmp/stream-guard-cost && /tmp/stream-guard-cost
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "net/stream_guard.h"

int main() {
  std::string data;
  for (int i = 0; i < 64; ++i) data += (i ? "," : "") + std::to_string(i % 17) + ".0";
  const std::string body = "{\"inputs\":[{\"name\":\"features\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[" + data + "]}]}";
  const std::string request = "POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
  std::vector<uint8_t> buf(512 * 1024);
  const int n = 2000000;
  auto source = [&](uint8_t* dst, size_t) -> long {
    std::memcpy(dst, request.data(), request.size());
    return static_cast<long>(request.size());
  };
  for (int round = 0; round < 3; ++round) {
    umbra::net::GuardedReader reader;
    long handed = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) handed += reader.read(buf.data(), buf.size(), source);
    const auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      source(buf.data(), buf.size());
      asm volatile("" ::: "memory");
    }
    const auto t2 = std::chrono::steady_clock::now();
    const double guarded = std::chrono::duration<double, std::nano>(t1 - t0).count() / n;
    const double copy = std::chrono::duration<double, std::nano>(t2 - t1).count() / n;
    std::printf("%zu-byte request, one read each: %.0f ns through the guard, %.0f ns the copy alone: %.0f ns per request%s\n",
                request.size(), guarded, copy, guarded - copy, handed == static_cast<long>(request.size()) * n ? "" : " (bytes lost!)");
  }
}
