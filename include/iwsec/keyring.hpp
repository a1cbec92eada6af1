#pragma once
/// @file
/// @brief Signing keys kept in a file: a raw key (32 or more bytes, as
/// earlier versions made) or a keyring of several keys with their `kid` and
/// creation time. Loading, creating (mode 0600, whole or not at all), changing
/// under a lock (add a key, retire one), and keeping a running Signer in step
/// with the file.
///
/// The keyring format is text, one key per line after a version line:
///
///     iwsec-keyring 1
///     # kid created key (base64url of the raw key bytes)
///     legacy 2026-01-05T10:00:00Z 2Y0x...
///     k20261202-3fa9c1d0 2026-12-02T01:31:00Z Qm9v...
///
/// Keys are listed oldest first; the last one signs new tokens, all of them
/// verify. Blank lines and lines starting with `#` are ignored. A file whose
/// first line holds `iwsec-keyring` (after any byte order mark or
/// whitespace) is a keyring and must parse whole: exactly that version line,
/// LF line endings (no CR anywhere), every line valid; otherwise it is
/// refused, naming the line and the reason. Any other file is a raw key: a
/// keyring of that one key, with `kid` "legacy" and the file's modification
/// time.

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "detail/base64.hpp"
#include "detail/change_watch.hpp"
#include "detail/crypto.hpp"
#include "detail/file.hpp"
#include "detail/thread_safety.hpp"
#include "errors.hpp"
#include "signer.hpp"

namespace iwsec {

namespace detail {
/// @brief Overwrites key material before the memory is given back.
inline void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(&s[0], s.size());
}
}  // namespace detail

/// @brief One key of a keyring.
struct KeyringEntry {
  std::string key_id;          ///< `kid`: 1 to 64 of `A-Z a-z 0-9 . _ -`
  std::int64_t created_at = 0;  ///< seconds since the epoch (UTC)
  std::string secret;          ///< raw key bytes, at least Signer::min_key_bytes
};

/// @brief The keys of a key file, oldest first; the last one signs.
struct Keyring {
  std::vector<KeyringEntry> keys;

  /// @brief The first line of a keyring file.
  static constexpr std::string_view format_line = "iwsec-keyring 1";
  /// @brief The `kid` of a key taken over from a raw key file.
  static constexpr std::string_view legacy_key_id = "legacy";

  /// @brief The keys as a Signer takes them.
  std::vector<SigningKey> signing_keys() const {
    std::vector<SigningKey> out;
    for (const auto& k : keys) out.push_back(SigningKey{k.key_id, k.secret});
    return out;
  }

  /// @brief The key named @p key_id, or null.
  const KeyringEntry* find(std::string_view key_id) const {
    for (const auto& k : keys)
      if (k.key_id == key_id) return &k;
    return nullptr;
  }

  /// @brief Appends a fresh random key (Signer::generate_secret) with a new
  /// `kid` ("k" + date + random hex), which then signs. Throws keyring_error
  /// when the keyring already holds Signer::max_keys keys.
  const KeyringEntry& add_new_key(std::int64_t now) {
    if (keys.size() >= Signer::max_keys)
      throw keyring_error("the keyring already holds " + std::to_string(Signer::max_keys) +
                          " keys (retire one first)");
    KeyringEntry k;
    k.key_id = new_key_id(now);
    k.created_at = now;
    k.secret = Signer::generate_secret();
    keys.push_back(std::move(k));
    return keys.back();
  }

  /// @brief Removes the key named @p key_id. Throws keyring_error when there
  /// is no such key or it is the only one (a signer needs a key).
  void retire(std::string_view key_id) {
    for (auto it = keys.begin(); it != keys.end(); ++it) {
      if (it->key_id != key_id) continue;
      if (keys.size() == 1) throw keyring_error("key " + std::string(key_id) + " is the only signing key; add one first");
      detail::wipe(it->secret);
      keys.erase(it);
      return;
    }
    throw keyring_error("no signing key " + std::string(key_id));
  }

  /// @brief The file's text (the keyring format, always).
  std::string serialize() const {
    std::string out(format_line);
    out += "\n# kid created key (base64url); the last key signs, all verify\n";
    for (const auto& k : keys) out += k.key_id + ' ' + format_time(k.created_at) + ' ' + base64url_encode(k.secret) + '\n';
    return out;
  }

  /// @brief Reads a key file's content: the keyring format, or a raw key
  /// (then @p raw_created_at is its creation time). Nothing, and the reason in
  /// @p error, when it is neither (a raw key under 32 bytes, a bad line).
  static std::optional<Keyring> parse(std::string_view text, std::int64_t raw_created_at, std::string& error) {
    Keyring ring;
    if (!starts_like_keyring(text)) {
      if (text.size() < Signer::min_key_bytes) {
        error = "holds " + std::to_string(text.size()) + " bytes; at least " + std::to_string(Signer::min_key_bytes) +
                " are required";
        return std::nullopt;
      }
      ring.keys.push_back(KeyringEntry{std::string(legacy_key_id), raw_created_at, std::string(text)});
      return ring;
    }
    // It starts like a keyring: it is one, whole, or it is refused. Nothing
    // is normalised (a BOM, CRLF, another version would change its meaning).
    const auto first_end = text.find('\n');
    const std::string_view first = text.substr(0, first_end);
    if (std::string why = version_line_problem(first); !why.empty()) {
      error = "line 1: " + why;
      return std::nullopt;
    }
    std::size_t line_number = 1;
    std::size_t at = first_end;
    while (at != std::string_view::npos && at + 1 < text.size()) {
      const std::size_t begin = at + 1;
      const std::size_t end = text.find('\n', begin);
      const std::string_view line = text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
      at = end;
      ++line_number;
      const auto fail = [&](const std::string& why) {
        error = "line " + std::to_string(line_number) + ": " + why;
        return std::nullopt;
      };
      if (const auto cr = line.find('\r'); cr != std::string_view::npos)
        return fail(cr + 1 == line.size() ? crlf_reason : "holds a carriage return");
      if (line.empty() || line[0] == '#') continue;
      const auto space1 = line.find(' ');
      const auto space2 = space1 == std::string_view::npos ? space1 : line.find(' ', space1 + 1);
      if (space2 == std::string_view::npos || line.find(' ', space2 + 1) != std::string_view::npos)
        return fail("expected 'KID CREATED KEY'");
      KeyringEntry k;
      k.key_id = std::string(line.substr(0, space1));
      if (!valid_key_id(k.key_id)) return fail("unusable kid (1 to 64 of A-Z a-z 0-9 . _ -)");
      if (ring.find(k.key_id)) return fail("duplicate kid " + k.key_id);
      const auto created = parse_time(line.substr(space1 + 1, space2 - space1 - 1));
      if (!created) return fail("creation time is not YYYY-MM-DDTHH:MM:SSZ");
      k.created_at = *created;
      auto secret = base64url_decode(line.substr(space2 + 1));
      if (!secret) return fail("key is not unpadded base64url");
      if (secret->size() < Signer::min_key_bytes) return fail("key shorter than 32 bytes");
      k.secret = std::move(*secret);
      ring.keys.push_back(std::move(k));
      if (ring.keys.size() > Signer::max_keys) return fail("more than " + std::to_string(Signer::max_keys) + " keys");
    }
    if (ring.keys.empty()) {
      error = "holds no key";
      return std::nullopt;
    }
    return ring;
  }

  /// @brief Whether @p text is to be read as a keyring: its first line
  /// (after any UTF-8 byte order mark, blank lines or whitespace) holds
  /// `iwsec-keyring`, in any case. Such a file parses whole or is refused;
  /// any other file is a raw key.
  static bool starts_like_keyring(std::string_view text) {
    constexpr std::string_view bom = "\xEF\xBB\xBF";
    if (text.substr(0, bom.size()) == bom) text.remove_prefix(bom.size());
    const auto start = text.find_first_not_of(" \t\r\n\v\f");
    if (start == std::string_view::npos) return false;
    text.remove_prefix(start);
    const std::string first = detail::ascii_lower(text.substr(0, text.find('\n')));
    return first.find("iwsec-keyring") != std::string::npos;
  }

  /// @brief Whether @p id is a usable `kid`: 1 to 64 of `A-Z a-z 0-9 . _ -`.
  static bool valid_key_id(std::string_view id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
            c == '-'))
        return false;
    return true;
  }

  /// @brief RFC 3339 UTC with whole seconds: `2026-12-02T01:31:00Z`.
  static std::string format_time(std::int64_t seconds) {
    const std::time_t t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    char buf[32];
    if (!::gmtime_r(&t, &tm) || std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return "?";
    return buf;
  }

  /// @brief The inverse of format_time; nothing unless exactly that form.
  static std::optional<std::int64_t> parse_time(std::string_view text) {
    if (text.size() != 20) return std::nullopt;
    static constexpr char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    for (std::size_t i = 0; i < 20; ++i) {
      const bool digit = text[i] >= '0' && text[i] <= '9';
      if (shape[i] == 'd' ? !digit : text[i] != shape[i]) return std::nullopt;
    }
    const auto number = [&](std::size_t from, std::size_t n) {
      int v = 0;
      for (std::size_t i = from; i < from + n; ++i) v = v * 10 + (text[i] - '0');
      return v;
    };
    std::tm tm{};
    tm.tm_year = number(0, 4) - 1900;
    tm.tm_mon = number(5, 2) - 1;
    tm.tm_mday = number(8, 2);
    tm.tm_hour = number(11, 2);
    tm.tm_min = number(14, 2);
    tm.tm_sec = number(17, 2);
    const std::int64_t seconds = static_cast<std::int64_t>(::timegm(&tm));
    if (format_time(seconds) != text) return std::nullopt;  // 2026-02-30 and the like
    return seconds;
  }

  /// @brief Why the first line of a file that starts like a keyring is not
  /// exactly format_line, or empty when it is.
  static std::string version_line_problem(std::string_view first) {
    if (first == format_line) return {};
    if (first.substr(0, 3) == "\xEF\xBB\xBF")
      return "starts with a UTF-8 byte order mark; a keyring starts with 'iwsec-keyring 1' (remove the mark)";
    if (!first.empty() && (first[0] == ' ' || first[0] == '\t' || first[0] == '\r' || first[0] == '\v' ||
                           first[0] == '\f'))
      return "whitespace before 'iwsec-keyring'; the file must start with 'iwsec-keyring 1'";
    if (first.find_first_not_of(" \t\r\v\f") == std::string_view::npos)
      return "blank line or whitespace before 'iwsec-keyring'; the file must start with 'iwsec-keyring 1'";
    if (first.back() == '\r') return crlf_reason;
    constexpr std::string_view name = "iwsec-keyring";
    if (first == name) return "the format version is missing; expected 'iwsec-keyring 1'";
    if (first.substr(0, name.size() + 1) != "iwsec-keyring ") return "expected 'iwsec-keyring 1' as the first line";
    const std::string_view version = first.substr(name.size() + 1);
    if (version.find_first_not_of("0123456789") != std::string_view::npos || version.empty())
      return "the format version is not a number (or has whitespace after it); expected 'iwsec-keyring 1'";
    // A later format: refusing beats guessing what its lines mean.
    return "format version " + std::string(version.substr(0, 12)) +
           " is not supported; this program reads version 1 (upgrade iwsec, or rewrite the file)";
  }

  /// @brief The reason given for a line that ends in CR LF.
  static constexpr const char* crlf_reason =
      "ends with a carriage return (CRLF line endings); keyring lines end with LF alone (convert the file, "
      "e.g. with dos2unix)";

  /// @brief A new `kid`: "k", the UTC date of @p now, "-", 8 random hex digits.
  static std::string new_key_id(std::int64_t now) {
    const std::string date = format_time(now);
    unsigned char random[4];
    detail::random_bytes(random, sizeof random);
    return "k" + date.substr(0, 4) + date.substr(5, 2) + date.substr(8, 2) + "-" +
           detail::hex_encode(random, sizeof random);
  }
};

/// @brief A key file (raw key or keyring) on disk, and the Signer kept in
/// step with it. Reading and creating never leave a partial file; changes
/// (update) take an exclusive lock on `<path>.lock` and replace the file
/// atomically, so iwsec-admin and a running server can share it.
class KeyringFile {
 public:
  explicit KeyringFile(std::string path) : path_(std::move(path)), changes_({path_}) {}
  KeyringFile(const KeyringFile&) = delete;
  KeyringFile& operator=(const KeyringFile&) = delete;

  const std::string& path() const noexcept { return path_; }

  /// @brief Reads the file. Throws keyring_error ("cannot open key file
  /// PATH: No such file or directory", "key file PATH holds 16 bytes; ...").
  Keyring load() {
    detail::WriterLock lock(mutex_);
    return load_and_remember();
  }

  /// @brief load(), or when the file does not exist, creates it as a keyring
  /// of one fresh key: mode 0600, written and fsynced under a temporary name,
  /// then linked into place, so it appears whole or not at all (if another
  /// process created it meanwhile, that one is read).
  Keyring load_or_create(std::int64_t now = static_cast<std::int64_t>(std::time(nullptr))) {
    detail::WriterLock lock(mutex_);
    struct stat st;
    if (::lstat(path_.c_str(), &st) == 0 || errno != ENOENT) return load_and_remember();
    Keyring ring;
    ring.add_new_key(now);
    const std::string tmp = path_ + ".tmp." + std::to_string(::getpid()) + "." + detail::hex_encode(random_id().data(), 8);
    {
      detail::unique_fd fd = detail::open_fd(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
      if (!fd) throw io_error("cannot create key file", tmp);
      if (::fchmod(fd.get(), 0600) != 0 || !detail::write_all(fd.get(), ring.serialize()) || ::fsync(fd.get()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw keyring_error("cannot write key file " + tmp + ": " + std::strerror(e));
      }
    }
    const bool linked = ::link(tmp.c_str(), path_.c_str()) == 0;
    const int link_errno = errno;
    ::unlink(tmp.c_str());
    if (!linked) {
      if (link_errno == EEXIST) return load_and_remember();
      throw keyring_error("cannot create key file " + path_ + ": " + std::strerror(link_errno));
    }
    if (!detail::fsync_directory(detail::parent_directory(path_)))
      throw io_error("cannot make key file durable (fsync of its directory)", path_);
    return load_and_remember();
  }

  /// @brief Changes the file under its lock: reads it (or starts from an
  /// empty keyring when it does not exist and @p create), applies @p change,
  /// and replaces the file atomically (mode 0600; a raw key file becomes a
  /// keyring). Returns the new keyring. Throws keyring_error (also what
  /// @p change throws).
  Keyring update(const std::function<void(Keyring&)>& change, bool create = false) {
    detail::WriterLock lock(mutex_);
    detail::file_lock cross_process(path_ + ".lock");
    if (!cross_process) throw io_error("cannot lock key file", path_ + ".lock");
    Keyring ring;
    struct stat st;
    if (!create || ::lstat(path_.c_str(), &st) == 0 || errno != ENOENT) ring = read_file(nullptr);
    change(ring);
    if (ring.keys.empty()) throw keyring_error("key file " + path_ + " would hold no key");
    Signer check(ring.signing_keys());  // the same rules a loading server applies
    if (!detail::write_file_atomically(path_, ring.serialize(), 0600))
      throw io_error("cannot replace key file", path_);
    return ring;
  }

  /// @brief Keeps @p signer in step with the file: one stat when the
  /// process's change watch saw an event naming it (or cannot watch it;
  /// detail/change_watch.hpp), and when the file changed since it was
  /// last loaded, reads it and replaces the signer's keys. True when they
  /// were replaced. Throws StateUnavailable
  /// when the file changed (or vanished) and cannot be read, so the routes
  /// answer 503 rather than keep verifying with keys that may be retired.
  /// Cheap enough to call on every request (Options::refresh_keys).
  bool refresh(Signer& signer) {
    const std::uint64_t generation = changes_.now();
    if (changes_.unchanged(generation)) return false;  // no event names the file: no stat
    struct stat st;
    const bool present = ::stat(path_.c_str(), &st) == 0;
    if (present) {
      detail::ReaderLock shared(mutex_);  // the common case: every thread at once
      if (loaded_ && detail::file_identity::of(st) == *loaded_) {
        changes_.checked(generation);
        return false;
      }
    }
    detail::WriterLock lock(mutex_);
    if (present && loaded_ && detail::file_identity::of(st) == *loaded_) {  // reloaded meanwhile
      changes_.checked(generation);
      return false;
    }
    try {
      Keyring ring = load_and_remember();
      signer.replace_keys(ring.signing_keys());
      changes_.checked(generation);
      return true;
    } catch (const std::exception& e) {
      loaded_.reset();  // try again on the next call
      throw StateUnavailable(std::string("iwsec: signing keys changed but cannot be reloaded: ") + e.what());
    }
  }

  /// @brief Reads the file now and replaces @p signer's keys (a reload on
  /// SIGHUP). Throws keyring_error and leaves the signer as it was when the
  /// file is unusable.
  void reload(Signer& signer) {
    detail::WriterLock lock(mutex_);
    Keyring ring = load_and_remember();
    signer.replace_keys(ring.signing_keys());
  }

 private:
  static std::array<unsigned char, 8> random_id() {
    std::array<unsigned char, 8> r{};
    detail::random_bytes(r.data(), r.size());
    return r;
  }

  keyring_error io_error(const std::string& what, const std::string& path) const {
    return keyring_error(what + " " + path + ": " + std::strerror(errno));
  }

  // Reads the file and remembers which one it read (for refresh()).
  Keyring load_and_remember() IWSEC_REQUIRES(mutex_) {
    detail::unique_fd fd;
    Keyring ring = read_file(&fd);
    struct stat st;
    if (::fstat(fd.get(), &st) == 0) {
      loaded_ = detail::file_identity::of(st);
      loaded_fd_ = std::move(fd);  // held open: its inode cannot be reused while loaded_ names it
    }
    return ring;
  }

  // Opens and parses the file; leaves it open in *@p keep when given.
  Keyring read_file(detail::unique_fd* keep) const {
    detail::unique_fd fd = detail::open_fd(path_, O_RDONLY | O_NOFOLLOW);
    if (!fd) throw io_error("cannot open key file", path_);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) throw io_error("cannot read key file", path_);
    if (!S_ISREG(st.st_mode)) throw keyring_error("key file " + path_ + " is not a regular file");
    std::string text;
    if (!detail::read_all(fd.get(), text)) throw io_error("cannot read key file", path_);
    std::string error;
    auto ring = Keyring::parse(text, static_cast<std::int64_t>(st.st_mtim.tv_sec), error);
    detail::wipe(text);
    if (!ring) throw keyring_error("key file " + path_ + " " + error);
    if (keep) *keep = std::move(fd);
    return std::move(*ring);
  }

  std::string path_;
  detail::ChangeTracker changes_;  // lets refresh() skip its stat while no event names the file
  detail::SharedMutex mutex_;
  std::optional<detail::file_identity> loaded_ IWSEC_GUARDED_BY(mutex_);
  detail::unique_fd loaded_fd_ IWSEC_GUARDED_BY(mutex_);
};

}  // namespace iwsec
