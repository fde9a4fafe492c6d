// Runs every native test file's cases and prints "N passed, M failed"; exits non-zero on failure.
#include "harness.h"

int main() {
    moelens_tests::policy_tests();
    moelens_tests::request_tests();
    std::printf("%d passed, %d failed\n", moelens_tests::counts().passed, moelens_tests::counts().failed);
    return moelens_tests::counts().failed == 0 ? 0 : 1;
}
