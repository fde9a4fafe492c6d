#include "bind_address.h"

#include "errors.h"

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

#include <cstring>

namespace moelens {

static std::string unbracketed(const std::string & host) {
    return host.size() > 2 && host.front() == '[' && host.back() == ']' ? host.substr(1, host.size() - 2) : host;
}

std::vector<std::string> resolve_host(const std::string & host) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo * found = nullptr;
    const int rc = getaddrinfo(unbracketed(host).c_str(), nullptr, &hints, &found);
    if (rc != 0 || !found) throw UserError("cannot resolve the host '" + host + "': " + gai_strerror(rc));
    std::vector<std::string> out;
    for (const addrinfo * a = found; a; a = a->ai_next) {
        char numeric[NI_MAXHOST] = {0};
        if (getnameinfo(a->ai_addr, socklen_t(a->ai_addrlen), numeric, sizeof(numeric), nullptr, 0, NI_NUMERICHOST) == 0)
            out.push_back(numeric);
    }
    freeaddrinfo(found);
    if (out.empty()) throw UserError("the host '" + host + "' resolved to no address");
    return out;
}

bool is_loopback_address(const std::string & numeric) {
    in_addr v4{};
    if (inet_pton(AF_INET, numeric.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6{};
    if (inet_pton(AF_INET6, numeric.c_str(), &v6) != 1) return false;
    static const unsigned char loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const unsigned char * b = reinterpret_cast<const unsigned char *>(&v6);
    return std::memcmp(b, loopback, 16) == 0 || (std::memcmp(b, v4_mapped, 12) == 0 && b[12] == 127);
}

std::string choose_bind_address(const std::string & host, const std::vector<std::string> & resolved, bool allow_remote) {
    if (allow_remote) return unbracketed(host);
    for (const std::string & a : resolved)
        if (!is_loopback_address(a))
            throw UserError("refusing to listen on non-loopback address " + a + " (from --host " + host +
                            "): MoE Lens serves local clients only; pass --allow-remote to do it anyway");
    if (resolved.empty()) throw UserError("the host '" + host + "' resolved to no address");
    return resolved.front();
}

}  // namespace moelens
