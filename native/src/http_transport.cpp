#include "http_transport.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#ifdef _WIN32
#define MOE_POLL WSAPoll
#define MOE_SEND_FLAGS 0
#define MOE_SHUT_WR SD_SEND
#else
#define MOE_POLL poll
#ifdef MSG_NOSIGNAL
#define MOE_SEND_FLAGS MSG_NOSIGNAL
#else
#define MOE_SEND_FLAGS 0
#endif
#define MOE_SHUT_WR SHUT_WR
#endif

namespace moelens {

using Clock = std::chrono::steady_clock;

static thread_local ReadFailure t_read_failure = ReadFailure::None;

ReadFailure current_read_failure() { return t_read_failure; }

std::string error_body(const std::string & code, const std::string & message) {
    return nlohmann::json{{"error", {{"code", code}, {"message", message}}}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

// Waits for `events` on the socket for at most `ms` (0: just asks): 1 ready, 0 timed out,
// -1 error.
int poll_wait(socket_t sock, short events, long long ms) {
    pollfd pfd{};
    pfd.fd = sock;
    pfd.events = events;
    for (;;) {
        const int rc = MOE_POLL(&pfd, 1, int(std::max(0LL, std::min(ms, 1LL << 30))));
#ifndef _WIN32
        if (rc < 0 && errno == EINTR) continue;
#endif
        return rc > 0 ? 1 : rc;
    }
}

bool poll_socket(socket_t sock, short events, long long ms) { return poll_wait(sock, events, ms) > 0; }

void address_of(socket_t sock, bool peer, std::string & ip, int & port) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int rc =
        peer ? getpeername(sock, reinterpret_cast<sockaddr *>(&addr), &len) : getsockname(sock, reinterpret_cast<sockaddr *>(&addr), &len);
    if (rc != 0) return;
    char host[NI_MAXHOST] = {0}, serv[NI_MAXSERV] = {0};
    if (getnameinfo(reinterpret_cast<sockaddr *>(&addr), len, host, sizeof(host), serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) ==
        0) {
        ip = host;
        port = std::atoi(serv);
    }
}

const char * reason_phrase(int status) {
    switch (status) {
        case 400: return "Bad Request";
        case 408: return "Request Timeout";
        case 414: return "URI Too Long";
        case 431: return "Request Header Fields Too Large";
        default: return "Error";
    }
}

// One connection's socket as cpp-httplib's Stream, with the request deadline and head
// scanner described in http_transport.h. One object serves every request of a keep-alive
// connection, so bytes of a pipelined next request stay in its buffer.
class ConnectionStream final : public httplib::Stream {
public:
    ConnectionStream(socket_t sock, const TransportLimits & limits, time_t write_timeout_s)
        : sock_(sock), limits_(limits), write_timeout_ms_(write_timeout_s * 1000), opened_(Clock::now()) {
        address_of(sock, true, remote_ip_, remote_port_);
        address_of(sock, false, local_ip_, local_port_);
    }

    // Waits up to `seconds` for the next request's first byte; false when none came, the
    // peer closed, or the server is stopping (its listening socket is closed).
    bool wait_for_request(const std::atomic<socket_t> & listening, int seconds) {
        if (buffered() > 0) return true;
        const auto until = Clock::now() + std::chrono::seconds(seconds);
        while (listening != INVALID_SOCKET) {
            if (poll_socket(sock_, POLLIN, 100)) return true;
            if (Clock::now() >= until) return false;
        }
        return false;
    }

    void begin_request() {
        deadline_ = Clock::now() + std::chrono::seconds(limits_.request_timeout_s);
        request_bytes_ = buffered();
        written_ = 0;
        response_status_ = 0;
        head_done_ = false;
        head_lines_ = 0;
        line_length_ = 0;
        previous_ = 0;
        t_read_failure = ReadFailure::None;
        if (!scan_head(read_buf_.data() + read_off_, buffered())) read_off_ = read_len_ = 0;  // read() now fails
    }

    size_t request_bytes() const { return request_bytes_; }
    size_t written() const { return written_; }
    int response_status() const { return response_status_; }
    bool head_complete() const { return head_done_; }
    const std::string & remote_ip() const { return remote_ip_; }
    int remote_port() const { return remote_port_; }
    const std::string & local_ip() const { return local_ip_; }
    int local_port() const { return local_port_; }

    // The answer to a request cpp-httplib abandoned without writing one.
    void write_fallback_error() {
        int status = 400;
        std::string code = "bad_request", message = "malformed HTTP request";
        switch (t_read_failure) {
            case ReadFailure::Deadline:
                status = 408, code = "request_timeout",
                message = "the request did not arrive within " + std::to_string(limits_.request_timeout_s) + " s of its first byte";
                break;
            case ReadFailure::BareLineFeed:
                message = "malformed HTTP request: the request line and headers must end with CRLF, not a bare LF";
                break;
            case ReadFailure::RequestLineTooLong:
                status = 414, code = "uri_too_long",
                message = "the request line is longer than " + std::to_string(CPPHTTPLIB_MAX_LINE_LENGTH) + " bytes";
                break;
            case ReadFailure::HeaderLineTooLong:
                status = 431, code = "header_too_large",
                message = "a header line is longer than " + std::to_string(CPPHTTPLIB_MAX_LINE_LENGTH) + " bytes";
                break;
            case ReadFailure::None: break;
        }
        const std::string body = error_body(code, message);
        const std::string response = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
                                     "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                                     "\r\nConnection: close\r\n\r\n" + body;
        write(response.data(), response.size());
    }

    bool is_readable() const override { return buffered() > 0; }

    bool wait_readable() const override {
        if (t_read_failure != ReadFailure::None) return false;
        for (;;) {
            const auto left_us = std::chrono::duration_cast<std::chrono::microseconds>(deadline_ - Clock::now()).count();
            if (left_us <= 0) {
                t_read_failure = ReadFailure::Deadline;
                return false;
            }
            const int rc = poll_wait(sock_, POLLIN, (left_us + 999) / 1000);
            if (rc != 0) return rc > 0;
        }
    }

    bool wait_writable() const override { return poll_socket(sock_, POLLOUT, write_timeout_ms_); }

    bool is_peer_alive() const override {
        if (!poll_socket(sock_, POLLIN, 0)) return true;
        char c;
        return recv(sock_, &c, 1, MSG_PEEK) > 0;
    }

    ssize_t read(char * ptr, size_t size) override {
        if (buffered() == 0) {
            if (!wait_readable()) {
                error_ = httplib::Error::Timeout;
                return -1;
            }
            const auto n = recv(sock_, read_buf_.data(), int(read_buf_.size()), 0);
            if (n <= 0) {
                error_ = n == 0 ? httplib::Error::ConnectionClosed : httplib::Error::Read;
                return n;
            }
            read_off_ = 0;
            read_len_ = size_t(n);
            request_bytes_ += size_t(n);
            if (!scan_head(read_buf_.data(), read_len_)) {
                read_len_ = 0;
                error_ = httplib::Error::Read;
                return -1;
            }
        }
        const size_t n = std::min(size, buffered());
        std::memcpy(ptr, read_buf_.data() + read_off_, n);
        read_off_ += n;
        return ssize_t(n);
    }

    ssize_t write(const char * ptr, size_t size) override {
        if (!wait_writable()) return -1;
        const auto n = send(sock_, ptr, int(std::min<size_t>(size, 1 << 30)), MOE_SEND_FLAGS);
        if (n <= 0) return n;
        if (written_ == 0 && n >= 12 && std::memcmp(ptr, "HTTP/1.", 7) == 0) response_status_ = std::atoi(std::string(ptr + 9, 3).c_str());
        written_ += size_t(n);
        return n;
    }

    void get_remote_ip_and_port(std::string & ip, int & port) const override { ip = remote_ip_, port = remote_port_; }
    void get_local_ip_and_port(std::string & ip, int & port) const override { ip = local_ip_, port = local_port_; }
    socket_t socket() const override { return sock_; }
    time_t duration() const override {
        return time_t(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - opened_).count());
    }

    const char * buffered_data(size_t & size) const override {
        size = buffered();
        return size ? read_buf_.data() + read_off_ : nullptr;
    }
    void consume_buffered(size_t size) override { read_off_ += std::min(size, buffered()); }

private:
    size_t buffered() const { return read_len_ - read_off_; }

    // Follows the request head (request line and headers, up to the empty line) through
    // newly read bytes; false, with the reason in t_read_failure, at a bare LF or a line
    // longer than cpp-httplib's limit. The body is not looked at.
    bool scan_head(const char * data, size_t n) {
        for (size_t i = 0; i < n && !head_done_; ++i) {
            const char c = data[i];
            if (c == '\n') {
                if (previous_ != '\r') {
                    t_read_failure = ReadFailure::BareLineFeed;
                    return false;
                }
                if (line_length_ == 1 && head_lines_ > 0) head_done_ = true;  // the line was just "\r"
                ++head_lines_;
                line_length_ = 0;
            } else if (++line_length_ >= CPPHTTPLIB_MAX_LINE_LENGTH) {  // the line with its LF would not fit
                t_read_failure = head_lines_ == 0 ? ReadFailure::RequestLineTooLong : ReadFailure::HeaderLineTooLong;
                return false;
            }
            previous_ = c;
        }
        return true;
    }

    socket_t sock_;
    const TransportLimits & limits_;
    long long write_timeout_ms_;
    Clock::time_point opened_, deadline_;
    std::string remote_ip_, local_ip_;
    int remote_port_ = 0, local_port_ = 0;
    std::vector<char> read_buf_ = std::vector<char>(16384);
    size_t read_off_ = 0, read_len_ = 0;
    size_t request_bytes_ = 0, written_ = 0;
    int response_status_ = 0;
    bool head_done_ = false;
    int head_lines_ = 0;
    size_t line_length_ = 0;
    char previous_ = 0;
};

// Runs each connection on its own thread, up to `max` at once; beyond that connections wait
// in order for the next thread to finish. (cpp-httplib's ThreadPool decides whether to start
// a thread from a count of idle workers that lags behind a burst of connections, so forty
// slow clients arriving together queued behind its base threads and /health behind them.)
class ConnectionThreads final : public httplib::TaskQueue {
public:
    explicit ConnectionThreads(size_t max) : max_(max) {}

    bool enqueue(std::function<void()> fn) override {
        std::lock_guard<std::mutex> lock(mutex_);
        if (shutdown_) return false;
        if (running_ < max_) {
            ++running_;
            std::thread(&ConnectionThreads::work, this, std::move(fn)).detach();
        } else {
            queued_.push_back(std::move(fn));
        }
        return true;
    }

    // Waits until every accepted connection has been served.
    void shutdown() override {
        std::unique_lock<std::mutex> lock(mutex_);
        shutdown_ = true;
        finished_.wait(lock, [this] { return running_ == 0; });
    }

private:
    void work(std::function<void()> fn) {
        for (;;) {
            fn();
            fn = nullptr;
            std::lock_guard<std::mutex> lock(mutex_);
            if (queued_.empty()) {
                if (--running_ == 0) finished_.notify_all();
                return;  // touches nothing of this object after the lock is released
            }
            fn = std::move(queued_.front());
            queued_.pop_front();
        }
    }

    const size_t max_;
    std::mutex mutex_;
    std::condition_variable finished_;
    std::deque<std::function<void()>> queued_;
    size_t running_ = 0;
    bool shutdown_ = false;
};

// Gives freed memory back to the system: glibc keeps it in its arenas, and the resident size
// would ratchet up with load (measured: +21 % after 3,000 fuzzed requests when only requests
// over 1 MB trimmed; +5 % trimming after every one). A trim walks every free chunk (about 15 ms
// on a heap fragmented into 100,000 pieces), so it runs after a large request, after the last
// request in flight (an interactive user, the end of a burst), and otherwise at most once a
// second.
constexpr size_t kLargeRequestBytes = 1u << 20;
void release_free_memory(size_t request_and_response_bytes, bool last_in_flight) {
#if defined(__GLIBC__)
    static std::atomic<int64_t> last_trim_ms{0};
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
    int64_t last = last_trim_ms.load();
    const bool due = request_and_response_bytes > kLargeRequestBytes || last_in_flight || now_ms - last >= 1000;
    if (due && last_trim_ms.compare_exchange_strong(last, now_ms)) malloc_trim(0);
#else
    (void)request_and_response_bytes;
    (void)last_in_flight;
#endif
}

// Requests being processed, over all connections.
std::atomic<int> g_requests_in_flight{0};

// Half-closes, drains what the peer still sends (briefly), then closes: closing with unread
// bytes would send a reset that can make the peer lose the response it was sent.
void drain_and_close(socket_t sock) {
    shutdown(sock, MOE_SHUT_WR);
    char buf[4096];
    const auto until = Clock::now() + std::chrono::milliseconds(100);
    size_t total = 0;
    while (total < (1u << 20)) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
        if (left <= 0 || !poll_socket(sock, POLLIN, left)) break;
        const auto n = recv(sock, buf, sizeof(buf), 0);
        if (n <= 0) break;
        total += size_t(n);
    }
    httplib::detail::close_socket(sock);
}

}  // namespace

GuardedServer::GuardedServer(const TransportLimits & limits) : limits_(limits) {
    const size_t max_threads = size_t(std::max(8, limits_.max_connections));
    new_task_queue = [max_threads] { return new ConnectionThreads(max_threads); };
    set_keep_alive_timeout(limits_.idle_timeout_s);
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
    bool ok = true;
    {
        ConnectionStream strm(sock, limits_, write_timeout_sec_);
        for (size_t served = 0; served < keep_alive_max_count_; ++served) {
            if (!strm.wait_for_request(svr_sock_, served == 0 ? limits_.first_request_s : limits_.idle_timeout_s)) break;
            strm.begin_request();
            bool connection_closed = false;
            const bool last = served + 1 == keep_alive_max_count_;
            g_requests_in_flight.fetch_add(1);
            ok = serve_guarded([&] {
                return process_request(strm, strm.remote_ip(), strm.remote_port(), strm.local_ip(), strm.local_port(), last,
                                       connection_closed, nullptr);
            });
            release_free_memory(strm.request_bytes() + strm.written(), g_requests_in_flight.fetch_sub(1) == 1);
            if (!ok && strm.request_bytes() > 0 && strm.written() == 0) {
                strm.write_fallback_error();
                break;
            }
            // After an error the rest of the request (an unread body, the remaining lines of a
            // malformed head) must not be read as a next request: close instead.
            if (!ok || connection_closed || strm.response_status() >= 400 || !strm.head_complete()) break;
        }
    }
    drain_and_close(sock);
    return ok;
}

}  // namespace moelens
