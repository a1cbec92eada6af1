#pragma once
// Test support: a throwaway PostgreSQL 15 for C++ tests, as
// tests/python/pg_cluster.py starts one: initdb into a fresh temporary
// directory (as the `postgres` account when running as root), pg_ctl start
// with no TCP listener and its unix socket in that directory, stopped by the
// postmaster's pid (SIGINT, SIGKILL after a bounded wait) and removed at exit.
// Needs libpq (IWSEC_HAVE_POSTGRES); a build without it has no cluster mode.

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

namespace iwsec_test {

class PgServer {
 public:
  /// The server every test of this program shares (started on first use).
  static PgServer& shared() {
    static PgServer server;
    return server;
  }

  ~PgServer() { stop(); }
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  /// A libpq connection string for @p dbname (unix socket; no password).
  std::string conninfo(const std::string& dbname = "postgres") const {
    return "host=" + root_ + " port=5432 user=postgres dbname=" + dbname;
  }

  /// A fresh, empty database; returns its name.
  std::string new_database() {
    const std::string name = "t_" + std::to_string(::getpid()) + "_" + std::to_string(++databases_);
    sql("postgres", "CREATE DATABASE " + name);
    return name;
  }

  /// Runs @p statement on @p dbname; returns the first column of the first row ("" when none).
  std::string sql(const std::string& dbname, const std::string& statement) const {
    std::unique_ptr<PGconn, void (*)(PGconn*)> c(PQconnectdb(conninfo(dbname).c_str()), PQfinish);
    if (PQstatus(c.get()) != CONNECTION_OK) throw std::runtime_error(std::string("psql: ") + PQerrorMessage(c.get()));
    std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(c.get(), statement.c_str()), PQclear);
    const auto status = PQresultStatus(r.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
      throw std::runtime_error(std::string("sql: ") + PQresultErrorMessage(r.get()));
    if (status == PGRES_TUPLES_OK && PQntuples(r.get()) > 0 && !PQgetisnull(r.get(), 0, 0))
      return PQgetvalue(r.get(), 0, 0);
    return "";
  }

 private:
  PgServer() {
    const std::string bin = bin_dir();
    if (bin.empty())
      throw std::runtime_error("PostgreSQL server binaries (initdb, pg_ctl) are not installed "
                               "(apt-get install postgresql-15): the PostgreSQL backend cannot be tested");
    char tmpl[] = "/tmp/iwsec-pg-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    root_ = tmpl;
    std::string as;
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (!pw || ::chown(root_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
        throw std::runtime_error("cannot hand " + root_ + " to the postgres account");
      as = "runuser -u postgres -- ";
    }
    run(as + bin + "/initdb -D " + root_ + "/data -A trust -U postgres -E UTF8 --no-sync --locale=C > " + root_ +
        "/initdb.log 2>&1");
    run(as + bin + "/pg_ctl -D " + root_ + "/data -l " + root_ +
        "/server.log -o \"-c listen_addresses='' -p 5432 -k " + root_ + " -c fsync=off\" -w -t 60 start > " +
        root_ + "/pg_ctl.log 2>&1");
    std::ifstream pidfile(root_ + "/data/postmaster.pid");
    if (!(pidfile >> pid_)) throw std::runtime_error("no postmaster.pid");
  }

  static std::string bin_dir() {
    for (const char* d : {"/usr/lib/postgresql/15/bin"}) {
      const std::string dir(d);
      if (::access((dir + "/initdb").c_str(), X_OK) == 0 && ::access((dir + "/pg_ctl").c_str(), X_OK) == 0) return dir;
    }
    return "";
  }

  void run(const std::string& command) {
    if (std::system(command.c_str()) != 0) {
      std::ifstream log(root_ + "/initdb.log");
      throw std::runtime_error("failed: " + command);
    }
  }

  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGINT);  // fast shutdown
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (::kill(pid_, 0) == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (::kill(pid_, 0) == 0) ::kill(pid_, SIGKILL);
      pid_ = 0;
    }
    if (!root_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(root_, ignored);
      root_.clear();
    }
  }

  std::string root_;
  pid_t pid_ = 0;
  std::atomic<int> databases_{0};
};

}  // namespace iwsec_test
