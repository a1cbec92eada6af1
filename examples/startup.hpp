#pragma once
// iwsec-server's start-up checks and its signing keys, apart from the rest of
// server.cpp: each failure says what failed, on which path (or address) and
// why, in one line, before anything that outlives the failure is created.

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <iwsec/iwsec.hpp>

#include "cli.hpp"

namespace startup {

/// Why binding @p host:@p port fails, by trying it on a plain socket
/// (cpp-httplib reports only that it failed).
inline std::string bind_failure_reason(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found)) return ::gai_strerror(rc);
  std::string reason = "no usable address";
  for (addrinfo* a = found; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      reason = std::strerror(errno);
      continue;
    }
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    const bool bound = ::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 1) == 0;
    reason = bound ? "the address was busy a moment ago" : std::strerror(errno);
    ::close(fd);
    if (!bound) break;
  }
  ::freeaddrinfo(found);
  return reason;
}

/// A LockoutPolicy error ("account_max_wait must be ...") in the names of
/// the flags that set those fields ("--lockout-max-wait must be from ...").
inline std::string lockout_error_in_flags(std::string message) {
  const char* const names[][2] = {{"account_failure_reset", "--lockout-reset"},
                                  {"account_failures", "--lockout-failures"},
                                  {"account_wait_increment", "--lockout-wait"},
                                  {"account_max_wait", "--lockout-max-wait"},
                                  {"client_failures", "--lockout-client-failures"},
                                  {"client_window", "--lockout-client-window"}};
  if (const auto at = message.find(" must be "); at != std::string::npos) message.replace(at, 9, " must be from ");
  for (const auto& n : names)
    for (auto at = message.find(n[0]); at != std::string::npos; at = message.find(n[0]))
      message.replace(at, std::strlen(n[0]), n[1]);
  return message;
}

/// Whether @p host names only the loopback interface.
inline bool is_loopback(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  unsigned a = 0, b = 0, c = 0, d = 0;
  char tail = 0;
  return std::sscanf(host.c_str(), "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 && c < 256 &&
         d < 256;
}

/// Checks the TLS files before cpp-httplib loads them (it says only that the
/// load failed): readable, a PEM certificate, a PEM key, and a matching pair.
/// The error, or empty.
inline std::string tls_problem(const std::string& cert_path, const std::string& key_path) {
  const auto open_pem = [](const std::string& path, const char* what, std::string& error) -> FILE* {
    FILE* f = std::fopen(path.c_str(), "re");
    if (!f) error = std::string("cannot read TLS ") + what + " " + path + ": " + std::strerror(errno);
    return f;
  };
  std::string error;
  FILE* cert_file = open_pem(cert_path, "certificate", error);
  if (!cert_file) return error;
  X509* cert = PEM_read_X509(cert_file, nullptr, nullptr, nullptr);
  std::fclose(cert_file);
  if (!cert) return "TLS certificate " + cert_path + " holds no PEM certificate";
  FILE* key_file = open_pem(key_path, "key", error);
  if (!key_file) {
    X509_free(cert);
    return error;
  }
  EVP_PKEY* key = PEM_read_PrivateKey(key_file, nullptr, nullptr, nullptr);
  std::fclose(key_file);
  if (!key) {
    X509_free(cert);
    return "TLS key " + key_path + " holds no PEM private key (or one protected by a passphrase)";
  }
  const bool match = X509_check_private_key(cert, key) == 1;
  EVP_PKEY_free(key);
  X509_free(cert);
  if (!match) return "TLS key " + key_path + " does not belong to certificate " + cert_path;
  return "";
}

/// Creates @p dir and its missing parents (each mode 0700, fsynced into its
/// parent). The error, or empty when @p dir is a directory afterwards.
inline std::string make_directories(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0)
    return S_ISDIR(st.st_mode) ? "" : "cannot use data directory " + dir + ": " + std::strerror(ENOTDIR);
  if (errno != ENOENT) return "cannot use data directory " + dir + ": " + std::strerror(errno);
  const std::string parent = iwsec::detail::parent_directory(dir);
  if (parent != dir && parent != "." && parent != "/") {
    const std::string error = make_directories(parent);
    if (!error.empty()) return error;
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return "cannot create data directory " + dir + ": " + std::strerror(errno);
  if (!iwsec::detail::fsync_directory(iwsec::detail::parent_directory(dir)))
    return "cannot make data directory " + dir + " durable: " + std::strerror(errno);
  return "";
}

/// @p path, when relative, prefixed with the working directory (no link
/// resolved; "." components and repeated slashes dropped, ".." kept): the
/// same file for a process that never changes directory.
inline std::string from_working_directory(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (!::getcwd(cwd, sizeof cwd)) return path;
  const std::string joined = std::string(cwd) + "/" + path;
  std::string out;
  for (std::size_t at = 0; at <= joined.size();) {
    std::size_t slash = joined.find('/', at);
    if (slash == std::string::npos) slash = joined.size();
    const std::string part = joined.substr(at, slash - at);
    if (!part.empty() && part != ".") out += "/" + part;
    at = slash + 1;
  }
  return out.empty() ? "/" : out;
}

/// @p path made absolute (for the start-up summary).
inline std::string absolute(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (!real) return path;
  std::string out(real);
  std::free(real);
  return out;
}

/// One server per data directory: an exclusive flock on DIR/server.lock,
/// held (and released by the kernel) for the life of the process. iwsec-admin
/// never takes it. The error, or empty.
inline std::string lock_data_directory(const std::string& dir, iwsec::detail::unique_fd& held) {
  const std::string path = dir + "/server.lock";
  held = iwsec::detail::open_fd(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
  if (!held) return "cannot open lock file " + path + ": " + std::strerror(errno);
  if (::flock(held.get(), LOCK_EX | LOCK_NB) == 0) return "";
  if (errno == EWOULDBLOCK)
    return "data directory " + dir + " is in use by another iwsec-server (" + path +
           " is locked); stop that one or choose another --data-dir";
  return "cannot lock " + path + ": " + std::strerror(errno);
}

/// Blocks SIGHUP and SIGUSR1 (logrotate's "reopen your logs") in this
/// thread and every thread started after; call first thing in main, before
/// any thread starts.
inline void block_reload_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

/// Runs @p reload(SIGHUP or SIGUSR1) on a thread of its own each time one
/// of them arrives.
inline void reload_on_signal(std::function<void(int)> reload) {
  std::thread([reload = std::move(reload)] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    for (;;) {
      int signal_number = 0;
      if (sigwait(&set, &signal_number) == 0) reload(signal_number);
    }
  }).detach();
}

/// The server's signing keys: the data directory's keyring (checked with one
/// stat per request, so iwsec-admin's add/retire apply at once), or
/// --secret-file (a raw key or a keyring, read again on SIGHUP).
class ServerKeys {
 public:
  /// Loads (in a data directory: creates on first start) the keys; the
  /// error message, or empty.
  std::string open(const std::string& data_dir, const std::string& secret_file) {
    watch_ = secret_file.empty();
    file_ = std::make_unique<iwsec::KeyringFile>(watch_ ? data_dir + "/signing.key" : secret_file);
    // As ssh does with its keys: ours, and closed to everyone else.
    struct stat existing;
    if (::stat(file_->path().c_str(), &existing) == 0 || !watch_)
      if (const auto why = iwsec::detail::check_private(file_->path())) return "key file " + *why;
    try {
      const iwsec::Keyring ring = watch_ ? file_->load_or_create() : file_->load();
      signer_ = std::make_unique<iwsec::Signer>(ring.signing_keys());
    } catch (const std::exception& e) {
      return cli::library_message(e.what());
    }
    return "";
  }

  const iwsec::Signer& signer() const { return *signer_; }
  const std::string& path() const { return file_->path(); }

  /// Options::refresh_keys for the data directory's keyring (null for --secret-file).
  std::function<void()> per_request_refresh() {
    if (!watch_) return nullptr;
    return [this] { file_->refresh(*signer_); };
  }

  /// SIGHUP: read the key file again; a broken file keeps the keys in use.
  void reload() {
    try {
      file_->reload(*signer_);
      std::fprintf(stderr, "iwsec-server: signing keys reloaded from %s (%zu keys)\n", file_->path().c_str(),
                   signer_->key_ids().size());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "iwsec-server: keeping the signing keys in use: %s\n",
                   cli::library_message(e.what()).c_str());
    }
  }

 private:
  bool watch_ = true;
  std::unique_ptr<iwsec::KeyringFile> file_;
  std::unique_ptr<iwsec::Signer> signer_;
};

}  // namespace startup
