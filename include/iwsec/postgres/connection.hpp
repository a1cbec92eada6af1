#pragma once
/// @file
/// @brief A thin RAII layer over libpq for the cluster backend: one
/// connection, its results, and a small pool of connections. Not part of
/// iwsec.hpp: include it (through iwsec/postgres/backend.hpp) and link
/// `iwsec::postgres` (libpq) only for cluster mode.
///
/// Every call has a deadline (libpq's asynchronous API, poll() on the
/// socket): a database that holds its connections open but answers nothing
/// (a stopped postmaster, a stalled disk) costs a caller at most its
/// deadline, never a hung thread; a connection whose deadline passed is
/// closed. libpq's own timeouts cannot do that (statement_timeout never fires
/// in a stopped backend, the kernel answers keepalives, PQcancel blocks
/// against a stopped postmaster). A transaction's COMMIT is the exception: once
/// it is sent its outcome is awaited (see pq_connection::transaction), so a
/// deadline never turns a committed write into a reported failure.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <libpq-fe.h>
#include <poll.h>

#include "../errors.hpp"
#include "../detail/thread_safety.hpp"

namespace iwsec {
namespace postgres {

namespace detail {

/// @brief libpq's message without its trailing newline (it never holds the password).
inline std::string pq_message(const char* text) {
  std::string m = text ? text : "";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  for (char& c : m)
    if (c == '\n') c = ' ';
  return m;
}

/// @brief A PGresult, cleared when it goes.
class pq_result {
 public:
  pq_result() = default;
  explicit pq_result(PGresult* r) : r_(r) {}
  pq_result(pq_result&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  pq_result& operator=(pq_result&& o) noexcept {
    if (this != &o) {
      if (r_) PQclear(r_);
      r_ = std::exchange(o.r_, nullptr);
    }
    return *this;
  }
  pq_result(const pq_result&) = delete;
  pq_result& operator=(const pq_result&) = delete;
  ~pq_result() {
    if (r_) PQclear(r_);
  }

  int rows() const { return r_ ? PQntuples(r_) : 0; }
  bool null(int row, int column) const { return PQgetisnull(r_, row, column) != 0; }
  std::string text(int row, int column) const {
    return std::string(PQgetvalue(r_, row, column), static_cast<std::size_t>(PQgetlength(r_, row, column)));
  }
  std::int64_t integer(int row, int column) const {
    return null(row, column) ? 0 : std::stoll(PQgetvalue(r_, row, column));
  }
  bool boolean(int row, int column) const { return !null(row, column) && PQgetvalue(r_, row, column)[0] == 't'; }
  PGresult* get() const { return r_; }

 private:
  PGresult* r_ = nullptr;
};

/// @brief Parameters of one statement: text values, or NULL.
using pq_params = std::vector<std::optional<std::string>>;

// ---- connection strings: what is wrong with one, never its value ------------

/// @brief Whether libpq reads @p conninfo as a connection string or URI (a
/// plain word is a database name), as libpq's own test does.
inline bool looks_like_conninfo(const std::string& conninfo) {
  return conninfo.rfind("postgresql://", 0) == 0 || conninfo.rfind("postgres://", 0) == 0 ||
         conninfo.find('=') != std::string::npos;
}

/// @brief What is wrong with percent-encoded @p text ("" when nothing).
inline const char* percent_problem(std::string_view text) {
  const auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') continue;
    if (i + 2 >= text.size() || !hex(text[i + 1]) || !hex(text[i + 2]))
      return "an invalid percent-encoding (write a literal % as %25)";
    if (text[i + 1] == '0' && text[i + 2] == '0') return "%00, which libpq forbids";
    i += 2;
  }
  return "";
}

/// @brief Is @p keyword one libpq knows (for a URI's query parameters and
/// the keyword/value form)?
inline bool known_conninfo_keyword(std::string_view keyword) {
  if (keyword == "ssl") return true;  // a URI's ssl=true (JDBC style)
  PQconninfoOption* defaults = PQconndefaults();
  bool known = false;
  for (PQconninfoOption* o = defaults; o && o->keyword; ++o)
    if (keyword == o->keyword) known = true;
  if (defaults) PQconninfoFree(defaults);
  return known;
}

/// @brief Which part of a connection string libpq cannot parse, in words
/// that never quote it (libpq's own message quotes the offending text,
/// often the password). Empty when libpq accepts it.
inline std::string conninfo_problem(const std::string& conninfo) {
  if (!looks_like_conninfo(conninfo)) return "";
  char* libpq_error = nullptr;  // never shown: it quotes the string
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &libpq_error);
  if (libpq_error) PQfreemem(libpq_error);
  if (parsed) {
    PQconninfoFree(parsed);
    return "";
  }
  const std::string_view s(conninfo);
  const bool uri = s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
  if (uri) {
    // libpq's reading: [userinfo@]host[:port][,host[:port]...][/dbname][?key=value&...]
    std::size_t p = s.find("//") + 2;
    const std::size_t start = p;
    while (p < s.size() && s[p] != '@' && s[p] != '/') ++p;
    if (p < s.size() && s[p] == '@') {
      const std::string_view userinfo = s.substr(start, p - start);
      const auto colon = userinfo.find(':');
      const char* user_problem = percent_problem(userinfo.substr(0, colon));
      if (*user_problem) return std::string("the URI's user name (before the @) has ") + user_problem;
      if (colon != std::string_view::npos) {
        const char* password_problem = percent_problem(userinfo.substr(colon + 1));
        if (*password_problem) return std::string("the URI's userinfo/password part has ") + password_problem;
      }
      ++p;
    } else {
      p = start;
    }
    for (;;) {  // the host list
      if (p < s.size() && s[p] == '[') {
        const auto close = s.find(']', p);
        if (close == std::string_view::npos) return "the URI's host part has an IPv6 address without its closing ]";
        if (close == p + 1) return "the URI's host part has an empty IPv6 address ([])";
        p = close + 1;
      } else {
        const std::size_t h = p;
        while (p < s.size() && s[p] != ':' && s[p] != '/' && s[p] != '?' && s[p] != ',') ++p;
        if (*percent_problem(s.substr(h, p - h)))
          return std::string("the URI's host part has ") + percent_problem(s.substr(h, p - h));
      }
      if (p < s.size() && s[p] == ':') {
        const std::size_t q = ++p;
        while (p < s.size() && s[p] != '/' && s[p] != '?' && s[p] != ',') ++p;
        if (*percent_problem(s.substr(q, p - q)))
          return std::string("the URI's port has ") + percent_problem(s.substr(q, p - q));
      }
      if (p < s.size() && s[p] == ',') {
        ++p;
        continue;
      }
      break;
    }
    if (p < s.size() && s[p] != '/' && s[p] != '?')
      return "the URI's host part is followed by an unexpected character (expected : / or ?; a password with "
             "@ / : ? or # must be percent-encoded)";
    if (p < s.size() && s[p] == '/') {
      const std::size_t d = ++p;
      while (p < s.size() && s[p] != '?') ++p;
      if (*percent_problem(s.substr(d, p - d)))
        return std::string("the URI's database name (path) has ") + percent_problem(s.substr(d, p - d));
    }
    if (p < s.size() && s[p] == '?') {
      std::size_t index = 0;
      std::string_view query = s.substr(p + 1);
      while (!query.empty()) {
        ++index;
        const auto amp = query.find('&');
        const std::string_view param = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        const std::string which = "the URI's query parameter number " + std::to_string(index);
        const auto eq = param.find('=');
        if (eq == std::string_view::npos) return which + " has no = between keyword and value";
        if (param.find('=', eq + 1) != std::string_view::npos) return which + " has more than one =";
        if (*percent_problem(param.substr(0, eq))) return which + "'s keyword has " + percent_problem(param.substr(0, eq));
        if (*percent_problem(param.substr(eq + 1))) return which + "'s value has " + percent_problem(param.substr(eq + 1));
        if (!known_conninfo_keyword(param.substr(0, eq))) return which + " is not a libpq keyword";
      }
    }
    return "the URI is malformed (libpq's message is not shown: it may quote the password)";
  }
  // keyword = value ...; a value is a run of non-blanks (\ escapes) or '...' (\ escapes)
  std::size_t p = 0;
  std::string previous;  // the last keyword read well: a keyword is never a secret, a value may be
  const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  for (;;) {
    while (p < s.size() && blank(s[p])) ++p;
    if (p >= s.size()) break;
    const std::size_t k = p;
    while (p < s.size() && !blank(s[p]) && s[p] != '=') ++p;
    const std::string_view keyword = s.substr(k, p - k);
    while (p < s.size() && blank(s[p])) ++p;
    const bool known = known_conninfo_keyword(keyword);
    if (p >= s.size() || s[p] != '=' || !known) {
      if (!previous.empty())
        return "keyword/value form: the value of " + previous +
               " is followed by text that is not keyword=value (a value with a space must be quoted: " + previous +
               "='...')";
      if (p < s.size() && s[p] == '=' && !known) return "keyword/value form: the first keyword is not a libpq keyword";
      return "keyword/value form: it does not start with keyword=value";
    }
    ++p;
    while (p < s.size() && blank(s[p])) ++p;
    if (p < s.size() && s[p] == '\'') {
      ++p;
      bool closed = false;
      for (; p < s.size(); ++p) {
        if (s[p] == '\\' && p + 1 < s.size()) {
          ++p;
        } else if (s[p] == '\'') {
          closed = true;
          ++p;
          break;
        }
      }
      if (!closed) return "keyword/value form: the quoted value of " + std::string(keyword) + " has no closing quote";
    } else {
      for (; p < s.size() && !blank(s[p]); ++p)
        if (s[p] == '\\' && p + 1 < s.size()) ++p;
    }
    previous = std::string(keyword);
  }
  return "keyword/value form is malformed (libpq's message is not shown: it may quote the password)";
}

/// @brief libpq's message about a failed connection, for a log line: known
/// causes in fixed words; anything else with every value of the connection
/// string taken out (a value may be a password, and a host name can be a
/// password's tail when an @ was not percent-encoded).
inline std::string connect_failure(const std::string& conninfo, const char* libpq_text) {
  const std::string m = pq_message(libpq_text);
  struct known {
    const char* pattern;
    const char* says;
  };
  static const known causes[] = {
      {"could not translate host name", "the host name could not be resolved"},
      {"Connection refused", "connection refused (is the server running on that host and port?)"},
      {"No such file or directory", "no server socket at that path (is the server running?)"},
      {"Network is unreachable", "the network is unreachable"},
      {"No route to host", "no route to the host"},
      {"timeout expired", "timed out"},
      {"password authentication failed", "password authentication failed"},
      {"no password supplied", "the server asks for a password and none was given"},
      {"pg_hba.conf", "the server's pg_hba.conf rejects this connection"},
      {"too many clients", "the server has no connection slot free (max_connections)"},
      {"remaining connection slots", "the server has no connection slot free"},
      {"starting up", "the database system is starting up"},
      {"shutting down", "the database system is shutting down"},
      {"in recovery mode", "the database system is in recovery mode"},
      {"invalid port number", "the port is not a valid number"},
      {"SSL", "an SSL error"},
  };
  for (const auto& c : causes)
    if (m.find(c.pattern) != std::string::npos) return c.says;
  if (m.find("does not exist") != std::string::npos) {
    if (m.find("database \"") != std::string::npos) return "the database does not exist";
    if (m.find("role \"") != std::string::npos) return "the role (user) does not exist";
  }
  std::string out = m;
  if (looks_like_conninfo(conninfo)) {
    if (PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), nullptr)) {
      for (PQconninfoOption* o = parsed; o->keyword; ++o) {
        if (!o->val || !*o->val) continue;
        const std::string value = o->val;
        const bool secret = std::string_view(o->keyword).find("password") != std::string_view::npos;
        if (secret && value.size() < 4 && out.find(value) != std::string::npos) {
          out = "libpq's message is not shown (it may hold a part of the connection string)";
          break;
        }
        if (value.size() < (secret ? 1u : 3u)) continue;
        for (std::size_t at = out.find(value); at != std::string::npos; at = out.find(value, at + 3))
          out.replace(at, value.size(), "...");
      }
      PQconninfoFree(parsed);
    }
  } else if (!conninfo.empty()) {
    for (std::size_t at = out.find(conninfo); at != std::string::npos; at = out.find(conninfo, at + 3))
      out.replace(at, conninfo.size(), "...");
  }
  return out;
}

/// @brief A connection that broke (lost) or did not answer in time (a
/// StateUnavailable: the routes answer 503).
class connection_failure : public StateUnavailable {
 public:
  connection_failure(const std::string& what, bool timed_out) : StateUnavailable(what), timed_out_(timed_out) {}
  /// @brief The deadline passed (the database may be stalled: no retry).
  bool timed_out() const noexcept { return timed_out_; }

 private:
  bool timed_out_;
};

/// @brief One libpq connection (not thread-safe: one user at a time).
/// Reconnects on demand; a connection that cannot be made, broke or passed
/// its deadline throws StateUnavailable, a statement the server refused
/// throws SqlError.
///
/// Deadlines: while one is set (set_deadline: a pool lease sets it when
/// taken), the first answer of every call must come by it; otherwise each
/// call gets `timeout` from its start. Each piece of an answer that arrives
/// moves the deadline on to `timeout` from then, so a long snapshot that
/// streams rows is never cut while a server that stops answering is.
class pq_connection {
 public:
  using clock = std::chrono::steady_clock;

  /// @param application_name shown in pg_stat_activity ("iwsec", or
  /// "iwsec-listener" for a replica's LISTEN connection).
  /// @param timeout the wait for the server when no deadline is set.
  explicit pq_connection(std::string conninfo, std::string application_name = "iwsec",
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(10000))
      : conninfo_(std::move(conninfo)), application_name_(std::move(application_name)), timeout_(timeout) {}
  pq_connection(const pq_connection&) = delete;
  pq_connection& operator=(const pq_connection&) = delete;
  ~pq_connection() { close(); }

  /// @brief Every call ends by @p deadline (connecting included) until clear_deadline().
  void set_deadline(clock::time_point deadline) { deadline_ = deadline; }
  /// @brief set_deadline(now + @p from_now).
  void extend_deadline(std::chrono::milliseconds from_now) { deadline_ = clock::now() + from_now; }
  void clear_deadline() { deadline_.reset(); }
  /// @brief How long a transaction waits for its COMMIT's outcome (answer,
  /// or txid_status on a fresh connection when the connection broke).
  void set_commit_timeout(std::chrono::milliseconds t) { commit_timeout_ = t; }

  /// @brief Connects unless connected (a pooled connection the server closed
  /// meanwhile, e.g. by a restart, is found out here, before anything is
  /// sent on it, and replaced); throws StateUnavailable when it cannot.
  PGconn* get() { return get_by(call_deadline()); }

  bool connected() const { return conn_ && !connecting_ && PQstatus(conn_) == CONNECTION_OK; }

  /// @brief Connected, idle, and not closed by the server meanwhile (a
  /// broken connection is closed here, without sending anything).
  bool usable() {
    if (!connected()) return false;
    if (PQtransactionStatus(conn_) == PQTRANS_IDLE && !idle_and_healthy()) {
      close();
      return false;
    }
    return true;
  }

  void close() {
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
    connecting_ = false;
  }

  /// @brief Runs one statement with text parameters (none: the simple
  /// protocol, so several statements may be sent at once), by the deadline.
  pq_result exec(const std::string& sql, const pq_params& params = {}) {
    return exec_by(sql, params, call_deadline());
  }

  /// @brief Runs @p body inside BEGIN ... COMMIT; rolls back when it throws.
  /// The connection broken before COMMIT was sent (nothing committed): the
  /// whole transaction is tried once more on a fresh connection, within the
  /// deadline. Once COMMIT is sent its outcome is awaited up to the commit
  /// timeout, past the deadline: its answer, or, when the connection broke,
  /// `txid_status` of the transaction asked on a fresh connection. Only an
  /// outcome that cannot be learnt within the commit timeout (the database
  /// stalled the moment COMMIT was sent, for that long) throws
  /// StateUnavailable saying the write may have been applied.
  template <typename F>
  auto transaction(F&& body, const char* begin = "BEGIN") -> decltype(body()) {
    const bool read_only = std::string_view(begin).find("READ ONLY") != std::string_view::npos;
    for (int attempt = 0;; ++attempt) {
      bool committing = false;
      std::string xid;
      try {
        if (read_only) {
          exec(begin);
        } else {
          xid = exec(std::string(begin) + "; SELECT txid_current()").text(0, 0);
        }
        if constexpr (std::is_void_v<decltype(body())>) {
          body();
          committing = true;
          commit(xid);
          return;
        } else {
          auto out = body();
          committing = true;
          commit(xid);
          return out;
        }
      } catch (const connection_failure& e) {
        if (committing) throw;          // commit() decided
        if (!e.timed_out()) close();    // the server rolls back what it had (a timed-out one is closed or still connecting)
        if (attempt > 0 || e.timed_out() || clock::now() >= call_deadline()) throw;
      } catch (...) {
        if (!committing) rollback();
        throw;
      }
    }
  }

 private:
  clock::time_point call_deadline() const { return deadline_ ? *deadline_ : clock::now() + timeout_; }

  std::string ms_text(std::chrono::milliseconds t) const { return std::to_string(t.count()) + " ms"; }

  // Waits until the socket is ready for @p events or @p deadline passes.
  static bool wait_socket(int fd, short events, clock::time_point deadline) {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0) {
        pollfd p{fd, events, 0};
        return ::poll(&p, 1, 0) > 0;
      }
      pollfd p{fd, events, 0};
      const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count() + 1, 60000)));
      if (n > 0) return true;
      if (n < 0 && errno != EINTR) return true;  // let libpq find the error
    }
  }

  [[noreturn]] void lost(const char* doing) {
    const std::string why = conn_ ? connect_failure(conninfo_, PQerrorMessage(conn_)) : "no connection";
    close();
    throw connection_failure(std::string("iwsec postgres: lost the database connection (") + doing + "): " + why, false);
  }

  [[noreturn]] void timed_out(const char* doing) {
    close();  // a stalled server keeps it: dropped, replaced on the next use
    throw connection_failure(std::string("iwsec postgres: the database did not answer in time (") + doing +
                                 "); connection dropped",
                             true);
  }

  // A pooled connection idle since its last use: anything readable is the
  // server saying goodbye (FATAL, then EOF) or a notification.
  bool idle_and_healthy() {
    for (int i = 0; i < 4; ++i) {
      pollfd p{PQsocket(conn_), POLLIN, 0};
      const int n = ::poll(&p, 1, 0);
      if (n == 0) return true;
      if (n < 0) return errno == EINTR;
      if (p.revents & (POLLERR | POLLNVAL)) return false;
      if (!PQconsumeInput(conn_) || PQstatus(conn_) != CONNECTION_OK) return false;
    }
    return PQstatus(conn_) == CONNECTION_OK;
  }

  // Connects (PQconnectStart / PQconnectPoll) by @p deadline. A connection
  // still being made when the deadline passes is kept, and the next call
  // goes on with it: a slow server is not asked again from scratch by every
  // request, and a stalled one is not sent a new connection each time.
  PGconn* get_by(clock::time_point deadline) {
    if (conn_ && !connecting_ && PQstatus(conn_) == CONNECTION_OK) {
      if (PQtransactionStatus(conn_) != PQTRANS_IDLE || idle_and_healthy()) return conn_;
    }
    if (!connecting_) {
      close();
      if (!conninfo_checked_) {
        const std::string problem = conninfo_problem(conninfo_);
        if (!problem.empty()) throw StateUnavailable("iwsec postgres: the connection string is malformed: " + problem);
        conninfo_checked_ = true;
      }
      const char* keywords[] = {"dbname", "application_name", nullptr};
      const char* values[] = {conninfo_.c_str(), application_name_.c_str(), nullptr};
      conn_ = PQconnectStartParams(keywords, values, 1);
      if (!conn_) throw connection_failure("iwsec postgres: cannot connect to the database: out of memory", false);
      connecting_ = true;
      connect_state_ = PGRES_POLLING_WRITING;
    }
    PostgresPollingStatusType& state = connect_state_;
    while (PQstatus(conn_) != CONNECTION_BAD && state != PGRES_POLLING_OK && state != PGRES_POLLING_FAILED) {
      const int fd = PQsocket(conn_);
      if (fd < 0) break;
      if (!wait_socket(fd, state == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline))
        throw connection_failure("iwsec postgres: cannot connect to the database: no answer in time", true);
      state = PQconnectPoll(conn_);
    }
    connecting_ = false;
    if (state != PGRES_POLLING_OK || PQstatus(conn_) != CONNECTION_OK) {
      const std::string why = connect_failure(conninfo_, PQerrorMessage(conn_));
      close();
      throw connection_failure("iwsec postgres: cannot connect to the database: " + why, false);
    }
    PQsetnonblocking(conn_, 1);
    // Errors without DETAIL lines: those quote key values (a unique
    // violation names the refresh-token hash it met), never to be shown.
    PQsetErrorVerbosity(conn_, PQERRORS_TERSE);
    // Keep the server's notices (e.g. "relation already exists, skipping") off stderr.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    return conn_;
  }

  // Sends, then collects every result by @p deadline; each piece of the
  // answer that arrives moves it on to at least timeout_ from then (a long
  // answer that streams is not cut; a server that stops answering is). Like
  // PQexec: the first error, or the last result.
  pq_result exec_by(const std::string& sql, const pq_params& params, clock::time_point deadline) {
    PGconn* c = get_by(deadline);
    int sent;
    if (params.empty()) {
      sent = PQsendQuery(c, sql.c_str());
    } else {
      std::vector<const char*> values;
      values.reserve(params.size());
      for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
      sent = PQsendQueryParams(c, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                               nullptr, 0);
    }
    if (!sent) lost("sending");
    for (;;) {
      const int f = PQflush(c);
      if (f == 0) break;
      if (f < 0) lost("sending");
      if (!wait_socket(PQsocket(c), POLLIN | POLLOUT, deadline)) timed_out("sending");
      if (!PQconsumeInput(c)) lost("sending");
      deadline = std::max(deadline, clock::now() + timeout_);
    }
    pq_result error, last;
    bool have_error = false;
    for (;;) {
      while (PQisBusy(c)) {
        if (!wait_socket(PQsocket(c), POLLIN, deadline)) timed_out("waiting for an answer");
        if (!PQconsumeInput(c)) lost("reading");
        deadline = std::max(deadline, clock::now() + timeout_);
      }
      PGresult* r = PQgetResult(c);
      if (!r) break;
      const ExecStatusType status = PQresultStatus(r);
      if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY) {
        if (!have_error) last = pq_result(r);
        else PQclear(r);
      } else if (!have_error) {
        error = pq_result(r);
        have_error = true;
      } else {
        PQclear(r);
      }
      if (PQstatus(c) != CONNECTION_OK) break;
    }
    if (PQstatus(c) != CONNECTION_OK) lost("reading");
    if (!have_error) return last;
    const char* state = PQresultErrorField(error.get(), PG_DIAG_SQLSTATE);
    const std::string sqlstate = state ? state : "";
    // Class 08 (connection), 57P (shutdown, e.g. pg_terminate_backend), 53 (resources):
    // the database, not the statement, is the trouble.
    if (sqlstate.rfind("08", 0) == 0 || sqlstate.rfind("57P", 0) == 0 || sqlstate.rfind("53", 0) == 0) {
      const std::string why = pq_message(PQresultErrorMessage(error.get()));
      close();
      throw connection_failure("iwsec postgres: the database is unavailable: " + why, false);
    }
    throw SqlError("iwsec postgres: " + pq_message(PQresultErrorMessage(error.get())), sqlstate);
  }

  void rollback() noexcept {
    if (!connected()) return;
    try {
      exec_by("ROLLBACK", {}, std::min(call_deadline(), clock::now() + std::chrono::milliseconds(500)));
    } catch (...) {
      close();  // whatever it had is rolled back when the server sees the connection go
    }
  }

  // COMMIT, and its outcome whatever happens to the connection meanwhile.
  void commit(const std::string& xid) {
    const auto until = std::max(call_deadline(), clock::now() + commit_timeout_);
    try {
      exec_by("COMMIT", {}, until);
      return;
    } catch (const connection_failure& e) {
      if (xid.empty()) throw;  // a read-only transaction: nothing to lose
      if (e.timed_out()) {
        throw StateUnavailable(
            "iwsec postgres: COMMIT was sent but its outcome could not be learnt within " + ms_text(commit_timeout_) +
            " (the database stopped answering); the write may have been applied");
      }
    }
    // The connection broke after COMMIT was sent: ask a fresh one.
    while (clock::now() < until) {
      std::string status;
      try {
        const auto one = std::min(until, clock::now() + std::max(timeout_, std::chrono::milliseconds(1000)));
        status = exec_by("SELECT txid_status($1)", {xid}, one).text(0, 0);
      } catch (const StateUnavailable&) {
        // Not reachable yet: ask again.
      }
      if (status == "committed") return;
      if (status == "aborted")
        throw connection_failure("iwsec postgres: lost the database connection during COMMIT; not committed", false);
      // "in progress" (its backend still finishing), unknown or unreachable: ask again.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw StateUnavailable("iwsec postgres: the connection broke after COMMIT was sent and the outcome could not be "
                           "learnt within " +
                           ms_text(commit_timeout_) + "; the write may have been applied");
  }

  std::string conninfo_;
  std::string application_name_;
  std::chrono::milliseconds timeout_;
  std::chrono::milliseconds commit_timeout_{30000};
  std::optional<clock::time_point> deadline_;
  bool conninfo_checked_ = false;
  bool connecting_ = false;  // conn_ is a connection still being made
  PostgresPollingStatusType connect_state_ = PGRES_POLLING_WRITING;
  PGconn* conn_ = nullptr;
};

/// @brief A few connections shared by many threads; take() lends one,
/// with a deadline for everything done with it (the wait for a free
/// connection included).
class pq_pool {
 public:
  /// @param request_timeout the deadline of a lease (taking it included).
  /// @param commit_timeout how long a transaction awaits its COMMIT's outcome.
  pq_pool(const std::string& conninfo, std::size_t size,
          std::chrono::milliseconds request_timeout = std::chrono::milliseconds(1500),
          std::chrono::milliseconds commit_timeout = std::chrono::milliseconds(30000))
      : request_timeout_(request_timeout) {
    for (std::size_t i = 0; i < (size ? size : 1); ++i) {
      free_.push_back(std::make_unique<pq_connection>(conninfo, "iwsec", request_timeout));
      free_.back()->set_commit_timeout(commit_timeout);
    }
  }

  class lease {
   public:
    lease(pq_pool& pool, std::unique_ptr<pq_connection> c) : pool_(&pool), c_(std::move(c)) {}
    lease(lease&& o) noexcept : pool_(o.pool_), c_(std::move(o.c_)) {}
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease() {
      if (c_) pool_->give_back(std::move(c_));
    }
    pq_connection* operator->() const { return c_.get(); }
    pq_connection& operator*() const { return *c_; }

   private:
    pq_pool* pool_;
    std::unique_ptr<pq_connection> c_;
  };

  /// @brief A connection whose every call ends within @p budget from now
  /// (0: the pool's request timeout), the wait for a free one included
  /// (StateUnavailable after that: every connection is busy or stuck).
  lease take(std::chrono::milliseconds budget = std::chrono::milliseconds(0)) {
    const auto deadline = pq_connection::clock::now() + (budget.count() > 0 ? budget : request_timeout_);
    iwsec::detail::Lock lock(mutex_);
    if (!lock.wait_until(available_, deadline, [&]() IWSEC_REQUIRES(mutex_) { return !free_.empty() || closed_; }) ||
        closed_)
      throw StateUnavailable("iwsec postgres: no database connection free in time");
    // A connected one first; else the newest (perhaps one still being made).
    auto pick = free_.end() - 1;
    for (auto it = free_.begin(); it != free_.end(); ++it)
      if ((*it)->connected()) pick = it;
    auto c = std::move(*pick);
    free_.erase(pick);
    c->set_deadline(deadline);
    return lease(*this, std::move(c));
  }

  /// @brief Replaces, one at a time, the free connections that are closed or
  /// that the server closed (a restart, a connection killed), each connect
  /// given @p budget; stops at the first that cannot be made. A replica's
  /// follower calls it, so requests seldom connect on their own path.
  /// Returns false when a connection could not be made.
  bool refresh(std::chrono::milliseconds budget) {
    for (std::size_t checked = 0;; ++checked) {
      std::unique_ptr<pq_connection> c;
      {
        iwsec::detail::Lock lock(mutex_);
        if (closed_) return true;
        for (std::size_t i = 0; i < free_.size() && !c; ++i) {
          if (free_[i]->usable()) continue;
          c = std::move(free_[i]);
          free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
        }
      }
      if (!c) return true;
      bool made = true;
      c->extend_deadline(budget);
      try {
        c->get();
      } catch (const std::exception&) {
        made = false;
      }
      give_back(std::move(c));
      if (!made || checked > 64) return made;
    }
  }

  /// @brief Closes the idle connections; later take() calls fail.
  void close() {
    iwsec::detail::Lock lock(mutex_);
    closed_ = true;
    for (auto& c : free_) c->close();
    available_.notify_all();
  }

 private:
  void give_back(std::unique_ptr<pq_connection> c) {
    c->clear_deadline();
    iwsec::detail::Lock lock(mutex_);
    if (closed_) c->close();
    free_.push_back(std::move(c));
    available_.notify_one();
  }

  std::chrono::milliseconds request_timeout_;
  iwsec::detail::Mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pq_connection>> free_ IWSEC_GUARDED_BY(mutex_);
  bool closed_ IWSEC_GUARDED_BY(mutex_) = false;
};

}  // namespace detail
}  // namespace postgres
}  // namespace iwsec
