// The native tests' harness: named cases, CHECK/NEAR assertions, one summary line
// ("N passed, M failed") that tools/run-tests.mjs reads. Each test file adds a function
// of cases that test_main.cpp calls.
#pragma once

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

namespace moelens_tests {

struct Counts {
    int passed = 0, failed = 0;
    std::string current;
};
inline Counts & counts() {
    static Counts c;
    return c;
}

inline void run(const char * name, const std::function<void()> & body) {
    counts().current = name;
    try {
        body();
        ++counts().passed;
        std::printf("ok %s\n", name);
    } catch (...) {
        ++counts().failed;
        std::printf("not ok %s\n", name);
    }
}

void policy_tests();
void request_tests();

}  // namespace moelens_tests

#define CHECK(cond)                                                                                             \
    do {                                                                                                        \
        if (!(cond)) {                                                                                          \
            std::printf("  FAIL %s: %s (line %d)\n", moelens_tests::counts().current.c_str(), #cond, __LINE__); \
            throw 0;                                                                                            \
        }                                                                                                       \
    } while (0)
#define NEAR(a, b) CHECK(std::fabs(double(a) - double(b)) < 1e-5)
