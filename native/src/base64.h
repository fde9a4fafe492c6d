// RFC 4648 base64 for the compact typed arrays in trace records (native/API.md).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace moelens {
std::string base64_encode(const void * data, size_t n_bytes);
// Returns false on characters outside the alphabet or a bad length.
bool base64_decode(const std::string & text, std::vector<unsigned char> & out);

template <typename T> std::string base64_of(const std::vector<T> & v) { return base64_encode(v.data(), v.size() * sizeof(T)); }
}  // namespace moelens
