// The error types of moe-lens-server, one place for all of them, and how each reaches the
// client (native/API.md, "Errors"): UserError and BadRequest become 400 with their message,
// HttpError carries its own status and code, Cancelled means the client went away (nothing
// is sent). Also AbortGuard, which installs a session's abort check for one evaluation and
// removes it on every exit path.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <utility>

namespace moelens {

// An error whose message is meant for the user as it is (bad model file, bad flag, bad
// predictor file). At start-up it ends the process with status 1; in a request it is a 400.
struct UserError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A request that is malformed or out of range: 400 `bad_request`, the message names the field.
struct BadRequest : UserError {
    using UserError::UserError;
};

// Any other HTTP error with its status and machine-readable code (404, 409, 413, 429, ...).
struct HttpError : std::runtime_error {
    HttpError(int status_, std::string code_, const std::string & message)
        : std::runtime_error(message), status(status_), code(std::move(code_)) {}
    int status;
    std::string code;
};

// The client closed the connection, or the server is shutting down: llama_decode was
// aborted and the evaluation stops without an answer.
struct Cancelled : std::runtime_error {
    Cancelled() : std::runtime_error("cancelled") {}
};

// Sets an abort check (e.g. ModelSession::should_abort) for the lifetime of the guard.
class AbortGuard {
public:
    AbortGuard(std::function<bool()> & slot, std::function<bool()> check) : slot_(slot) { slot_ = std::move(check); }
    ~AbortGuard() { slot_ = nullptr; }
    AbortGuard(const AbortGuard &) = delete;
    AbortGuard & operator=(const AbortGuard &) = delete;

private:
    std::function<bool()> & slot_;
};

}  // namespace moelens
