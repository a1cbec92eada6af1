#pragma once
/// @file
/// @brief Signing keys kept in the cluster database, each wrapped
/// (AES-256-GCM, OpenSSL EVP) by a key-encryption key that every replica is
/// given in a file, so the database alone cannot mint a token. A check value
/// wrapped under the same key-encryption key is stored with the first key: a
/// program given another key-encryption key finds out at start, before any key
/// is used. Adding or retiring a key appends a 'k' entry to the change log,
/// and every replica reloads its keys (cluster_state::on_keys_changed).
///
/// A wrapped value is base64url(12-byte nonce | ciphertext | 16-byte tag);
/// the additional authenticated data binds a signing key to its `kid`.

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "../detail/base64.hpp"
#include "../detail/crypto.hpp"
#include "../detail/file.hpp"
#include "../keyring.hpp"
#include "../signer.hpp"
#include "connection.hpp"
#include "schema.hpp"

namespace iwsec {
namespace postgres {

/// @brief The AES-256 key derived from a key-encryption key file's bytes.
class KeyEncryptionKey {
 public:
  static constexpr std::size_t min_bytes = 32;

  /// @brief Derives the wrapping key from @p material (at least 32 bytes).
  explicit KeyEncryptionKey(std::string_view material) {
    if (material.size() < min_bytes) throw key_encryption_error("a key-encryption key needs at least 32 bytes");
    std::string input("iwsec key-encryption key 1\n");
    input.append(material.data(), material.size());
    const auto digest = iwsec::detail::sha256(input);
    OPENSSL_cleanse(&input[0], input.size());
    key_.assign(reinterpret_cast<const char*>(digest.data()), digest.size());
  }
  KeyEncryptionKey(const KeyEncryptionKey&) = default;
  ~KeyEncryptionKey() { OPENSSL_cleanse(&key_[0], key_.size()); }

  /// @brief Reads @p path, checked as a key file is: a regular file of the
  /// user running the program, closed to everyone else, at least 32 bytes.
  static KeyEncryptionKey from_file(const std::string& path) {
    if (const auto why = iwsec::detail::check_private(path))
      throw key_encryption_error("key-encryption key file " + *why);
    iwsec::detail::unique_fd fd = iwsec::detail::open_fd(path, O_RDONLY | O_NOFOLLOW);
    if (!fd) throw key_encryption_error("cannot open key-encryption key file " + path + ": " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      throw key_encryption_error("key-encryption key file " + path + " is not a regular file");
    std::string bytes;
    if (!iwsec::detail::read_all(fd.get(), bytes))
      throw key_encryption_error("cannot read key-encryption key file " + path + ": " + std::strerror(errno));
    if (bytes.size() < min_bytes) {
      const std::size_t n = bytes.size();
      iwsec::detail::wipe(bytes);
      throw key_encryption_error("key-encryption key file " + path + " holds " + std::to_string(n) +
                                 " bytes; at least 32 are required");
    }
    KeyEncryptionKey k(bytes);
    iwsec::detail::wipe(bytes);
    return k;
  }

  /// @brief base64url(nonce | AES-256-GCM(@p plain) | tag), with @p aad authenticated.
  std::string wrap(std::string_view plain, std::string_view aad) const {
    unsigned char nonce[12];
    iwsec::detail::random_bytes(nonce, sizeof nonce);
    std::string out(reinterpret_cast<const char*>(nonce), sizeof nonce);
    out.resize(sizeof nonce + plain.size() + 16);
    auto* dst = reinterpret_cast<unsigned char*>(&out[sizeof nonce]);
    ctx_ptr ctx(EVP_CIPHER_CTX_new());
    int n = 0, m = 0;
    if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, sizeof nonce, nullptr) != 1 ||
        EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key_bytes(), nonce) != 1 ||
        EVP_EncryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) != 1 ||
        EVP_EncryptUpdate(ctx.get(), dst, &n, reinterpret_cast<const unsigned char*>(plain.data()),
                          static_cast<int>(plain.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.get(), dst + n, &m) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, 16, dst + plain.size()) != 1)
      throw key_encryption_error("cannot wrap a key (OpenSSL AES-256-GCM failed)");
    const std::string encoded = base64url_encode(out);
    iwsec::detail::wipe(out);
    return encoded;
  }

  /// @brief The plaintext of wrap(), or nothing when @p wrapped was not made
  /// under this key with this @p aad (or is malformed).
  std::optional<std::string> unwrap(std::string_view wrapped, std::string_view aad) const {
    auto raw = base64url_decode(wrapped);
    if (!raw || raw->size() < 12 + 16) return std::nullopt;
    const std::size_t length = raw->size() - 12 - 16;
    const auto* in = reinterpret_cast<const unsigned char*>(raw->data());
    std::string plain(length, '\0');
    auto* dst = reinterpret_cast<unsigned char*>(&plain[0]);
    unsigned char tag[16];
    std::memcpy(tag, in + 12 + length, sizeof tag);
    ctx_ptr ctx(EVP_CIPHER_CTX_new());
    int n = 0, m = 0;
    const bool ok =
        ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
        EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key_bytes(), in) == 1 &&
        EVP_DecryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) == 1 &&
        EVP_DecryptUpdate(ctx.get(), length ? dst : nullptr, &n, in + 12, static_cast<int>(length)) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, sizeof tag, tag) == 1 &&
        EVP_DecryptFinal_ex(ctx.get(), dst + n, &m) == 1;
    iwsec::detail::wipe(*raw);
    if (!ok) {
      iwsec::detail::wipe(plain);
      return std::nullopt;
    }
    return plain;
  }

 private:
  struct ctx_free {
    void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
  };
  using ctx_ptr = std::unique_ptr<EVP_CIPHER_CTX, ctx_free>;
  const unsigned char* key_bytes() const { return reinterpret_cast<const unsigned char*>(key_.data()); }

  std::string key_;
};

/// @brief One signing key as listed (never its bytes).
struct StoredKeyInfo {
  std::string key_id;
  std::int64_t created_at = 0;
};

/// @brief The signing keys in the database (schema version 3 or later).
/// Every function takes a connection of the caller's; changes run in one
/// transaction under the migration lock, so two programs cannot both create
/// the first key.
namespace signing_keys {

using pq_connection = postgres::detail::pq_connection;

namespace detail {
constexpr std::string_view check_plain = "iwsec key-encryption key check 1";
constexpr std::string_view check_aad = "iwsec-key-check 1";
inline std::string key_aad(std::string_view kid) { return "iwsec-signing-key 1 " + std::string(kid); }

inline void lock(pq_connection& c) {
  c.exec(std::string("SELECT pg_advisory_xact_lock(") + postgres::detail::migration_lock_key + ")");
}

// Inside a transaction: the check value verified, or stored when there is none yet.
inline void check_or_store(pq_connection& c, const KeyEncryptionKey& kek) {
  auto r = c.exec("SELECT wrapped FROM iwsec_key_check WHERE id = 1");
  if (r.rows() == 0) {
    c.exec("INSERT INTO iwsec_key_check (id, wrapped) VALUES (1, $1)", {kek.wrap(check_plain, check_aad)});
    return;
  }
  auto plain = kek.unwrap(r.text(0, 0), check_aad);
  if (!plain || *plain != check_plain)
    throw key_encryption_error(
        "the key-encryption key (--key-encryption-key) does not match the one the database's signing keys are "
        "wrapped with; refusing to start (give every replica and iwsec-admin the same key-encryption key file)");
}

inline StoredKeyInfo insert_new_key(pq_connection& c, const KeyEncryptionKey& kek, std::int64_t now) {
  StoredKeyInfo info{Keyring::new_key_id(now), now};
  std::string secret = Signer::generate_secret();
  c.exec("INSERT INTO iwsec_signing_keys (kid, created_at, wrapped) VALUES ($1, $2, $3)",
         {info.key_id, std::to_string(now), kek.wrap(secret, key_aad(info.key_id))});
  iwsec::detail::wipe(secret);
  c.exec("SELECT iwsec_append('k', NULL, NULL, NULL)");
  return info;
}
}  // namespace detail

/// @brief At start: checks @p kek against the stored check value (throws
/// key_encryption_error when it does not match) and, when the database holds
/// no key yet, creates the first one (with the check value).
inline void ensure(pq_connection& c, const KeyEncryptionKey& kek, std::int64_t now) {
  c.transaction([&] {
    detail::lock(c);
    detail::check_or_store(c, kek);
    if (c.exec("SELECT 1 FROM iwsec_signing_keys LIMIT 1").rows() == 0) detail::insert_new_key(c, kek, now);
  });
}

/// @brief The keys, unwrapped, oldest first (the last one signs).
inline std::vector<SigningKey> load(pq_connection& c, const KeyEncryptionKey& kek) {
  auto r = c.exec("SELECT kid, wrapped FROM iwsec_signing_keys ORDER BY seq");
  std::vector<SigningKey> keys;
  for (int i = 0; i < r.rows(); ++i) {
    const std::string kid = r.text(i, 0);
    auto secret = kek.unwrap(r.text(i, 1), detail::key_aad(kid));
    if (!secret) throw key_encryption_error("signing key " + kid + " in the database cannot be unwrapped with this "
                                            "key-encryption key");
    keys.push_back(SigningKey{kid, std::move(*secret)});
  }
  if (keys.empty()) throw key_encryption_error("the database holds no signing key");
  return keys;
}

/// @brief kid and creation time of each key, oldest first (needs no key-encryption key).
inline std::vector<StoredKeyInfo> list(pq_connection& c) {
  auto r = c.exec("SELECT kid, created_at FROM iwsec_signing_keys ORDER BY seq");
  std::vector<StoredKeyInfo> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(StoredKeyInfo{r.text(i, 0), r.integer(i, 1)});
  return out;
}

/// @brief Adds a fresh random key, which then signs on every replica.
/// Throws key_encryption_error for a key-encryption key that does not match,
/// keyring_error when Signer::max_keys keys are held.
inline StoredKeyInfo add(pq_connection& c, const KeyEncryptionKey& kek, std::int64_t now) {
  return c.transaction([&] {
    detail::lock(c);
    detail::check_or_store(c, kek);
    if (c.exec("SELECT count(*) FROM iwsec_signing_keys").integer(0, 0) >= static_cast<std::int64_t>(Signer::max_keys))
      throw keyring_error("the database already holds " + std::to_string(Signer::max_keys) +
                          " signing keys (retire one first)");
    return detail::insert_new_key(c, kek, now);
  });
}

/// @brief Copies a key file's keys (@p ring, oldest first: its signing key
/// keeps signing) into a database that holds none yet, wrapped under @p kek,
/// so tokens signed from the file keep verifying once the replicas take
/// their keys from the database. Throws keyring_error when the database
/// already holds keys.
inline std::size_t import_keyring(pq_connection& c, const KeyEncryptionKey& kek, const Keyring& ring) {
  return c.transaction([&] {
    detail::lock(c);
    detail::check_or_store(c, kek);
    if (c.exec("SELECT 1 FROM iwsec_signing_keys LIMIT 1").rows() != 0)
      throw keyring_error("the database already holds signing keys; import-signing-keys goes first, before any "
                          "replica runs with --key-encryption-key");
    for (const auto& k : ring.keys)
      c.exec("INSERT INTO iwsec_signing_keys (kid, created_at, wrapped) VALUES ($1, $2, $3)",
             {k.key_id, std::to_string(k.created_at), kek.wrap(k.secret, detail::key_aad(k.key_id))});
    c.exec("SELECT iwsec_append('k', NULL, NULL, NULL)");
    return ring.keys.size();
  });
}

/// @brief Removes the key named @p kid: its tokens stop verifying on every
/// replica. Throws keyring_error when there is no such key or it is the only one.
inline void retire(pq_connection& c, const std::string& kid) {
  c.transaction([&] {
    detail::lock(c);
    const auto keys = list(c);
    bool found = false;
    for (const auto& k : keys) found = found || k.key_id == kid;
    if (!found) throw keyring_error("no signing key " + kid);
    if (keys.size() == 1) throw keyring_error("key " + kid + " is the only signing key; add one first");
    c.exec("DELETE FROM iwsec_signing_keys WHERE kid = $1", {kid});
    c.exec("SELECT iwsec_append('k', NULL, NULL, NULL)");
  });
}

}  // namespace signing_keys
}  // namespace postgres
}  // namespace iwsec
