/// @brief DatabaseSigner: a replica's Signer over the signing keys kept in the cluster database, reloaded when they change.
/// @file
#pragma once
// Cluster mode with the signing keys in the database (docs/cluster.md
// "Signing keys in the database"): every key is wrapped by a key-encryption
// key that each replica reads from a file of its own; `iwsec-admin
// add-signing-key` / `retire-signing-key` change them in one place and every
// replica follows within a second, through the backend's change log.
//
//   auto kek = iwsec::postgres::KeyEncryptionKey::from_file("/etc/iwsec/kek");
//   iwsec::postgres::DatabaseSigner keys(backend, kek);  // throws: the reason
//   auto routes = iwsec::mount_security_routes(server, users, keys.signer(), options);

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../signer.hpp"
#include "backend.hpp"
#include "signing_keys.hpp"

namespace iwsec {
namespace postgres {

/// @brief A Signer whose keys are the database's (see the file comment).
class DatabaseSigner {
 public:
  /// Checks @p kek against the database (a wrong key throws "does not
  /// match"), creates the first signing key when there is none, loads the
  /// keys, and from then on reloads them on @p backend's follower thread
  /// whenever they change. @p log hears of a reload, or of keys that could
  /// not be read (the keys in use are kept); never a key. Throws what the
  /// database or the key check threw.
  /// A backend follows one DatabaseSigner at a time; @p backend must
  /// outlive it.
  DatabaseSigner(Backend& backend, KeyEncryptionKey kek, std::function<void(const std::string&)> log = nullptr)
      : backend_(backend), kek_(std::move(kek)), log_(std::move(log)) {
    const auto keys = backend.with_connection([&](detail::pq_connection& c) {
      signing_keys::ensure(c, kek_, system_now());
      return signing_keys::load(c, kek_);
    });
    signer_ = std::make_unique<Signer>(keys);
    backend.on_keys_changed([this](detail::pq_connection& c) { reload(c); });
  }
  DatabaseSigner(const DatabaseSigner&) = delete;
  DatabaseSigner& operator=(const DatabaseSigner&) = delete;
  /// Stops following: once it returns, the backend's follower thread calls
  /// this signer no more (the hook is cleared under the lock it runs under).
  ~DatabaseSigner() { backend_.on_keys_changed(nullptr); }

  /// The signer to mount the routes with; its keys change in place.
  const Signer& signer() const { return *signer_; }

 private:
  void reload(detail::pq_connection& c) {
    std::vector<SigningKey> keys;
    try {
      keys = signing_keys::load(c, kek_);
    } catch (const StateUnavailable&) {
      throw;  // the follower reconnects and asks again
    } catch (const std::exception& e) {
      if (log_) log_(std::string("keeping the signing keys in use: ") + e.what());
      return;
    }
    const auto before = signer_->key_ids();
    signer_->replace_keys(keys);
    if (signer_->key_ids() != before && log_)
      log_("signing keys reloaded from the database (" + std::to_string(keys.size()) + " keys)");
  }

  Backend& backend_;
  const KeyEncryptionKey kek_;
  const std::function<void(const std::string&)> log_;
  std::unique_ptr<Signer> signer_;
};

}  // namespace postgres
}  // namespace iwsec
