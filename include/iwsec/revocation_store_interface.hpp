/// @brief The RevocationStore interface: where revoked token ids live until their tokens expire.
/// @file
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace iwsec {

/// @brief The outcome of RevocationStore::revoke_for.
enum class RevokeOutcome {
  revoked,        ///< held (newly or already), as durably as the store promises
  limit_reached,  ///< the owner already has `limit` outstanding revocations: nothing was stored
  failed,         ///< could not be stored
};

/// @brief Where revoked token ids live until their tokens expire.
class RevocationStore {
 public:
  virtual ~RevocationStore() = default;

  /// @brief Revokes the token @p jti until @p expires_at. Returns true only
  /// once the revocation is as durable as this store promises.
  virtual bool revoke(std::string_view jti, std::int64_t expires_at) = 0;

  /// @brief Whether @p jti is revoked.
  virtual bool is_revoked(std::string_view jti) = 0;

  /// @brief revoke() on behalf of @p owner (the token's user id), holding at
  /// most @p limit outstanding (unexpired) revocations per owner: when
  /// @p owner already has @p limit and @p jti is not one of them, nothing is
  /// stored and the answer is limit_reached (the routes then end all of the
  /// owner's access tokens at once instead). Required (since 0.x): the
  /// routes revoke only through it, and a default without per-owner counts
  /// would let one refresh-token holder grow the store without bound.
  virtual RevokeOutcome revoke_for(std::string_view owner, std::string_view jti, std::int64_t expires_at,
                                   std::size_t limit) = 0;

  /// @brief How many unexpired revocations revoke_for holds for @p owner;
  /// nothing when the store cannot tell now (e.g. its database is
  /// unreachable). Required (since 0.x), as revoke_for is: a store that
  /// keeps the per-owner cap can count what it keeps, and a default that
  /// answered "unknown" would hide a store that keeps no counts at all.
  virtual std::optional<std::size_t> outstanding_for(std::string_view owner) = 0;
};

}  // namespace iwsec
