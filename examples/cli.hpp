#pragma once
// Small helpers shared by iwsec-server and iwsec-admin: argument parsing and
// the "one line on stderr, exit 2" rule for bad arguments.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include <cerrno>
#include <thread>

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <httplib.h>

#include <iwsec/iwsec.hpp>
#ifdef IWSEC_HAVE_POSTGRES
#include <iwsec/postgres/build_info.hpp>
#endif

namespace cli {

/// When set (iwsec-admin --json), errors are also written to stdout as {"error":"..."}.
inline bool json_errors = false;

/// A library exception's text without its "iwsec: " prefix (the program's
/// own name already starts the line).
inline std::string library_message(std::string text) {
  while (text.rfind("iwsec: ", 0) == 0) text.erase(0, 7);
  return text;
}

/// Prints "PROGRAM: MESSAGE" on one line of stderr (and {"error":MESSAGE} on
/// stdout under --json) and exits with @p status.
[[noreturn]] inline void die(const char* program, const std::string& message, int status) {
  const std::string text = library_message(message);
  std::fprintf(stderr, "%s: %s\n", program, text.c_str());
  if (json_errors) {
    std::string out = "{\"error\":";
    iwsec::detail::append_json_string(out, text);
    std::printf("%s}\n", out.c_str());
    std::fflush(stdout);
  }
  std::exit(status);
}

/// `--version`: one line, "iwsec X.Y.Z (cpp-httplib A.B.C, OpenSSL D.E.F)",
/// plus ", libpq G.H" where cluster mode is built in.
[[noreturn]] inline void print_version() {
#ifdef IWSEC_HAVE_POSTGRES
  const std::string line = iwsec::postgres::build_description();
#else
  const std::string line = iwsec::build_description();
#endif
  std::printf("%s\n", line.c_str());
  std::exit(0);
}

/// A bad command line: one line, exit status 2.
[[noreturn]] inline void usage_error(const char* program, const std::string& message) {
  die(program, message + " (try --help)", 2);
}

/// A decimal integer in [min, max], nothing else.
inline std::optional<std::int64_t> parse_integer(std::string_view text, std::int64_t min, std::int64_t max) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value < min || value > max) return std::nullopt;
  return value;
}

/// The listening socket of a cpp-httplib server, tuned: SO_REUSEADDR only
/// (httplib's default sets SO_REUSEPORT, which lets a second server bind a
/// taken port and silently share its connections), and a full accept backlog
/// (httplib listens with a backlog of 5, so a burst of new connections waits
/// a second for SYN retries).
class ListeningSocket {
 public:
  /// Installs the socket options on @p server; call before binding.
  void configure(httplib::Server& server) {
    server.set_socket_options([this](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      socket_ = sock;
    });
  }
  /// Raises the backlog of the bound socket (listen() again updates it).
  void widen_backlog() const {
    if (socket_ >= 0) ::listen(socket_, SOMAXCONN);
  }

 private:
  socket_t socket_ = -1;
};

/// Makes SIGINT and SIGTERM stop @p server: stop accepting, let the workers
/// finish the requests in flight. Call before starting any other thread (the
/// signals are blocked in every thread and awaited by one).
inline void stop_on_signals(httplib::Server& server) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::thread([&server, stop_signals] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    // httplib's stop() does nothing before the accept loop runs; a signal
    // that arrives that early must not be lost.
    while (!server.is_running()) std::this_thread::yield();
    server.stop();
  }).detach();
}

/// Walks argv; `value()` takes the argument of an option, failing with a
/// usage error when absent. `--opt=value` is the same as `--opt value`; an
/// option that takes no value refuses `=value`.
class Arguments {
 public:
  Arguments(const char* program, int argc, char** argv) : program_(program), argc_(argc), argv_(argv) {}
  bool next() {
    if (attached_ && !attached_used_) usage_error(program_, "option " + name_ + " takes no value");
    if (++index_ >= argc_) return false;
    const std::string_view a = argv_[index_];
    const auto eq = a.find('=');
    attached_ = a.substr(0, 2) == "--" && eq != std::string_view::npos;
    attached_used_ = false;
    name_ = std::string(attached_ ? a.substr(0, eq) : a);
    if (attached_) attached_value_ = std::string(a.substr(eq + 1));
    return true;
  }
  /// The option's name (without any `=value`), or the positional argument.
  std::string_view current() const { return name_; }
  std::string value() {
    if (attached_) {
      attached_used_ = true;
      if (attached_value_.empty()) usage_error(program_, "option " + name_ + " needs a value");
      return attached_value_;
    }
    // "--data-dir --json" is a forgotten value, not a directory named "--json".
    if (index_ + 1 >= argc_ || std::string_view(argv_[index_ + 1]).substr(0, 2) == "--")
      usage_error(program_, "option " + name_ + " needs a value");
    return argv_[++index_];
  }
  std::int64_t integer_value(std::int64_t min, std::int64_t max) {
    const std::string option = name_;
    const std::string text = value();
    const auto v = parse_integer(text, min, max);
    if (!v)
      usage_error(program_, "option " + option + " takes a whole number from " + std::to_string(min) + " to " +
                                std::to_string(max) + ", not '" + text + "'");
    return *v;
  }

 private:
  const char* program_;
  int argc_;
  char** argv_;
  int index_ = 0;
  std::string name_;
  bool attached_ = false;
  bool attached_used_ = false;
  std::string attached_value_;
};

}  // namespace cli
