// Host-side work split over threads between decodes, when llama.cpp's own threads are idle:
// the vocabulary-wide log-softmax of a trace's NLL and the per-layer routing records of a
// ubatch (entropy over every expert, top-N, f16 probabilities) grow with tokens × layers ×
// experts, and on one thread they would add to every ubatch of a 48-layer, 128-expert model.
#pragma once

#include <algorithm>
#include <thread>
#include <vector>

namespace moelens {

// Calls work(a, b) on disjoint ranges covering [begin, end), on up to n_threads threads
// (the caller's among them), each range at least min_per_thread long.
template <typename Work> void parallel_ranges(int n_threads, int begin, int end, int min_per_thread, const Work & work) {
    const int n = std::max(0, end - begin);
    const int threads = std::max(1, std::min(n_threads, n / std::max(1, min_per_thread)));
    const int per = (n + threads - 1) / threads;
    std::vector<std::thread> helpers;
    for (int t = 1; t < threads; ++t)
        helpers.emplace_back([&work, a = begin + t * per, b = std::min(end, begin + (t + 1) * per)] { work(a, b); });
    work(begin, std::min(end, begin + per));
    for (auto & h : helpers) h.join();
}

}  // namespace moelens
