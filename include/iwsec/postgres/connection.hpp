#pragma once
/// @file
/// @brief A thin RAII layer over libpq for the cluster backend: one
/// connection, its results, and a small pool of connections. Not part of
/// iwsec.hpp: include it (through iwsec/postgres/backend.hpp) and link
/// `iwsec::postgres` (libpq) only for cluster mode.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <libpq-fe.h>

#include "../errors.hpp"

namespace iwsec {
namespace postgres {

/// @brief An SQL statement the database refused (a constraint, a syntax
/// error), as opposed to a database that cannot be reached (StateUnavailable).
class SqlError : public std::runtime_error {
 public:
  SqlError(const std::string& what, std::string sqlstate) : std::runtime_error(what), sqlstate_(std::move(sqlstate)) {}
  /// @brief The five-character SQLSTATE ("23505": unique violation).
  const std::string& sqlstate() const noexcept { return sqlstate_; }
  bool unique_violation() const noexcept { return sqlstate_ == "23505"; }

 private:
  std::string sqlstate_;
};

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

 private:
  PGresult* r_ = nullptr;
};

/// @brief Parameters of one statement: text values, or NULL.
using pq_params = std::vector<std::optional<std::string>>;

/// @brief One libpq connection (not thread-safe: one user at a time).
/// Reconnects on demand; a connection that cannot be made or that broke
/// throws StateUnavailable, a statement the server refused throws SqlError.
class pq_connection {
 public:
  /// @param application_name shown in pg_stat_activity ("iwsec", or
  /// "iwsec-listener" for a replica's LISTEN connection).
  explicit pq_connection(std::string conninfo, std::string application_name = "iwsec")
      : conninfo_(std::move(conninfo)), application_name_(std::move(application_name)) {}
  pq_connection(const pq_connection&) = delete;
  pq_connection& operator=(const pq_connection&) = delete;
  ~pq_connection() { close(); }

  /// @brief Connects unless connected; throws StateUnavailable when it cannot.
  PGconn* get() {
    if (conn_ && PQstatus(conn_) == CONNECTION_OK) return conn_;
    close();
    // connect_timeout first: a timeout in the caller's conninfo overrides it.
    const char* keywords[] = {"connect_timeout", "dbname", "application_name", nullptr};
    const char* values[] = {"10", conninfo_.c_str(), application_name_.c_str(), nullptr};
    conn_ = PQconnectdbParams(keywords, values, 1);
    if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
      const std::string why = conn_ ? pq_message(PQerrorMessage(conn_)) : "out of memory";
      close();
      throw StateUnavailable("iwsec postgres: cannot connect to the database: " + why);
    }
    // Keep the server's notices (e.g. "relation already exists, skipping") off stderr.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    return conn_;
  }

  bool connected() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

  void close() {
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
  }

  /// @brief Runs one statement with text parameters (none: the simple
  /// protocol, so several statements may be sent at once).
  pq_result exec(const std::string& sql, const pq_params& params = {}) {
    PGconn* c = get();
    PGresult* r;
    if (params.empty()) {
      r = PQexec(c, sql.c_str());
    } else {
      std::vector<const char*> values;
      values.reserve(params.size());
      for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
      r = PQexecParams(c, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0);
    }
    pq_result result(r);
    const ExecStatusType status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return result;
    if (!r || PQstatus(c) != CONNECTION_OK) {
      const std::string why = pq_message(PQerrorMessage(c));
      close();
      throw StateUnavailable("iwsec postgres: lost the database connection: " + why);
    }
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const std::string sqlstate = state ? state : "";
    // Class 08 (connection), 57P (shutdown, e.g. pg_terminate_backend), 53 (resources):
    // the database, not the statement, is the trouble.
    if (sqlstate.rfind("08", 0) == 0 || sqlstate.rfind("57P", 0) == 0 || sqlstate.rfind("53", 0) == 0) {
      const std::string why = pq_message(PQresultErrorMessage(r));
      close();
      throw StateUnavailable("iwsec postgres: the database is unavailable: " + why);
    }
    throw SqlError("iwsec postgres: " + pq_message(PQresultErrorMessage(r)), sqlstate);
  }

  /// @brief Runs @p body inside BEGIN ... COMMIT; rolls back when it throws.
  template <typename F>
  auto transaction(F&& body, const char* begin = "BEGIN") -> decltype(body()) {
    exec(begin);
    try {
      if constexpr (std::is_void_v<decltype(body())>) {
        body();
        exec("COMMIT");
      } else {
        auto out = body();
        exec("COMMIT");
        return out;
      }
    } catch (...) {
      if (connected()) {
        PGresult* r = PQexec(conn_, "ROLLBACK");
        if (r) PQclear(r);
      }
      throw;
    }
  }

 private:
  std::string conninfo_;
  std::string application_name_;
  PGconn* conn_ = nullptr;
};

/// @brief A few connections shared by many threads; lease() lends one.
class pq_pool {
 public:
  pq_pool(const std::string& conninfo, std::size_t size) {
    for (std::size_t i = 0; i < (size ? size : 1); ++i) free_.push_back(std::make_unique<pq_connection>(conninfo));
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

  /// @brief A connection, waiting at most @p wait for one to be free
  /// (StateUnavailable after that: every connection is busy or stuck).
  lease take(std::chrono::milliseconds wait = std::chrono::milliseconds(2000)) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!available_.wait_for(lock, wait, [&] { return !free_.empty() || closed_; }) || closed_)
      throw StateUnavailable("iwsec postgres: no database connection free");
    auto c = std::move(free_.back());
    free_.pop_back();
    return lease(*this, std::move(c));
  }

  /// @brief Closes the idle connections; later take() calls fail.
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    for (auto& c : free_) c->close();
    available_.notify_all();
  }

 private:
  void give_back(std::unique_ptr<pq_connection> c) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) c->close();
    free_.push_back(std::move(c));
    available_.notify_one();
  }

  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pq_connection>> free_;
  bool closed_ = false;
};

}  // namespace detail
}  // namespace postgres
}  // namespace iwsec
