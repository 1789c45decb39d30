// One process-wide pool of helper threads shared by every caller (main thread and workers).
// parallel_for never waits on a busy pool: the caller claims chunks itself, helpers claim
// the rest when they get to it, so concurrent callers cannot deadlock each other.
#pragma once

#include <cstddef>
#include <functional>

namespace umbra {

// Runs body(i) for i in [0, count), spread over at most `threads` threads including the
// caller. Blocks until all are done. The first exception thrown by a body is rethrown here.
void parallel_for(size_t count, int threads, const std::function<void(size_t)>& body);

// Cores the pool may use (hardware_concurrency, at least 1).
int hardware_threads();

}  // namespace umbra
