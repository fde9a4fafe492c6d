// The connection layer under the API (http_api.cpp): cpp-httplib's Server with the
// connection handling a server must have when any local process may talk to it.
//
// cpp-httplib bounds each read of a request by a timeout, but a client that sends one byte
// per second restarts that timeout forever and holds a worker thread; forty such clients
// took every worker and left /health unanswered. Requests it cannot parse (a request line
// over its 32 KB line limit, lines ending in a bare LF) were closed without a word. So
// GuardedServer serves each connection itself (overriding Server::process_and_close_socket,
// still through Server::process_request) over a ConnectionStream that
//   - gives every request a deadline: its line, headers and body must arrive within
//     `request_timeout_s` of its first byte, however they trickle (408 after that);
//   - scans the request head as it arrives and stops at a bare LF (400) or an overlong
//     line (414 for the request line, 431 for a header) instead of waiting;
//   - answers every request it has started to read: when cpp-httplib gives up on one
//     without writing anything, the stream writes the JSON error itself;
//   - closes the connection after an error response, so the unread rest of a bad request
//     is never taken for the next one, and trims the heap after a request of over 1 MB
//     (glibc would keep the freed memory and the resident size would only grow);
// and runs each connection on its own thread, up to `max_connections` at once, so that slow
// or idle clients (each bounded by the timeouts above) do not take the capacity of others.
#pragma once

#include <cpp-httplib/httplib.h>

#include <string>

namespace moelens {

struct TransportLimits {
    int request_timeout_s = 10;  // whole request, from its first byte
    int first_request_s = 5;     // a new connection's first byte must come within this
    // A connection waiting for its next request. Only clients that were answered with success
    // (so hold the token) get here: error responses close the connection. Long, because a
    // client whose event loop is blocked for a while (Node's spawnSync) cannot see a close
    // and sends its next request on the dead connection; cpp-httplib's 5 s made that a race.
    int idle_timeout_s = 30;
    int max_connections = 256;  // connections served at once (worker threads)
};

// Why the transport failed to read the request being served on this thread, for the error
// handler (cpp-httplib answers 400 for any read failure; this says what it was).
enum class ReadFailure { None, Deadline, BareLineFeed, RequestLineTooLong, HeaderLineTooLong };
ReadFailure current_read_failure();

// {"error":{"code":…,"message":…}}, the body of every error response (native/API.md).
std::string error_body(const std::string & code, const std::string & message);

class GuardedServer : public httplib::Server {
public:
    explicit GuardedServer(const TransportLimits & limits);
    const TransportLimits & limits() const { return limits_; }

private:
    bool process_and_close_socket(socket_t sock) override;

    TransportLimits limits_;
};

}  // namespace moelens
