// Which address the server may listen on. A loopback check on the host string ("starts with
// 127.") let a name such as 127.evil.example, resolving to 0.0.0.0, bind every interface;
// so the host is resolved first, every address it resolves to must be loopback, and the
// server binds the numeric address it checked (no second lookup that could answer otherwise).
#pragma once

#include <string>
#include <vector>

namespace moelens {

// The numeric addresses `host` resolves to (getaddrinfo, TCP); "[::1]" may be bracketed.
// Throws UserError when it does not resolve.
std::vector<std::string> resolve_host(const std::string & host);

// 127.0.0.0/8, ::1, or an IPv4-mapped 127.x address.
bool is_loopback_address(const std::string & numeric);

// The address to bind for --host `host` that resolved to `resolved`: without `allow_remote`,
// the first resolved address when every one is loopback, else a UserError; with it, `host`.
std::string choose_bind_address(const std::string & host, const std::vector<std::string> & resolved, bool allow_remote);

}  // namespace moelens
