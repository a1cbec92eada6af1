#pragma once
/// @file
/// @brief The users-file format: the snapshot (`users.json`, format version 1)
/// and its change journal (`users.json.journal`), written and parsed here and
/// nowhere else.
///
/// The snapshot is one JSON object, `{"version": 1, "users": [...]}`, one
/// user object per line as serialize() writes it (any valid JSON with the
/// same members loads too: a hand edit, an earlier version's file).
///
/// The journal holds one JSON object per line, each ending in a newline:
///
///     {"iwsec_users_journal":1,"snapshot":{"sha256":"…","size":N,"inode":"N","modified_ns":"N"}}
///     {"put":{<a user object, as in the snapshot>}}
///     {"delete":"<email>"}
///     {"compacted":{"sha256":"…","size":N,"inode":"N","modified_ns":"N"}}
///
/// The first line (the header) names the snapshot the journal extends, by the
/// SHA-256 of its bytes; each `put` adds or replaces the user with that email,
/// each `delete` removes one. A `compacted` line says that the snapshot it
/// names (also by inode, size and modification time, so a process can know
/// it without reading it) holds every change before that line: it is written
/// just before that snapshot is renamed into place, and means nothing while
/// no such file exists.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "json.hpp"
#include "../user_store.hpp"

namespace iwsec {
namespace detail {
namespace users_file {

/// @brief Bytes a user takes in the snapshot, to reserve room.
inline constexpr std::size_t bytes_per_user_estimate = 320;

/// @brief Appends @p u as the one-line JSON object the snapshot and the
/// journal hold.
inline void append_user_object(std::string& out, const User& u) {
  out += "{\"user_id\": ";
  append_json_string(out, u.user_id);
  out += ", \"email\": ";
  append_json_string(out, u.email);
  out += ", \"password_hash\": ";
  append_json_string(out, u.password_hash);
  out += ", \"refresh_token_sha256\": ";
  append_json_string(out, u.refresh_token_sha256);
  out += ", \"refresh_generation\": " + std::to_string(u.refresh_generation);
  out += u.disabled ? ", \"disabled\": true" : ", \"disabled\": false";
  // Added later: files without it still load (see parse_user_object).
  if (u.refresh_token_issued_at) out += ", \"refresh_token_issued_at\": " + std::to_string(u.refresh_token_issued_at);
  out += '}';
}

/// @brief The snapshot's text for the users @p for_each passes (in order) to
/// its callback; @p count sizes the buffer.
template <typename ForEach>
std::string serialize_each(std::size_t count, ForEach&& for_each) {
  std::string out;
  out.reserve(64 + count * bytes_per_user_estimate);
  out += "{\n  \"version\": 1,\n  \"users\": [";
  bool first = true;
  for_each([&](const User& u) {
    out += first ? "\n    " : ",\n    ";
    append_user_object(out, u);
    first = false;
  });
  out += first ? "]\n}\n" : "\n  ]\n}\n";
  return out;
}

/// @brief The snapshot's text for @p users.
inline std::string serialize(const std::vector<User>& users) {
  return serialize_each(users.size(), [&](const auto& each) {
    for (const User& u : users) each(u);
  });
}

/// @brief Parses one user object (@p scratch: room for object.size() bytes).
/// A user without `refresh_token_issued_at` (written before it existed) gets
/// @p loaded_at, and sets @p unstamped. False when a member is missing or of
/// the wrong type.
inline bool parse_user_object(std::string_view object, char* scratch, User& u, std::int64_t loaded_at,
                              bool& unstamped) {
  bool have_id = false, have_email = false, have_hash = false, have_token = false, have_disabled = false;
  std::optional<std::int64_t> generation;
  std::optional<std::int64_t> issued_at;
  bool have_issued_at = false;
  const auto text_field = [](const json_value_view& v, std::string& field, bool& have) {
    have = v.kind == json_kind::string;
    if (have) field.assign(v.text.data(), v.text.size());
  };
  flat_json_parser parser(object, scratch);
  const bool parsed = parser.parse_object(2, [&](std::string_view name, const json_value_view& v) {
    if (name == "user_id") {
      text_field(v, u.user_id, have_id);
    } else if (name == "email") {
      text_field(v, u.email, have_email);
    } else if (name == "password_hash") {
      text_field(v, u.password_hash, have_hash);
    } else if (name == "refresh_token_sha256") {
      text_field(v, u.refresh_token_sha256, have_token);
    } else if (name == "refresh_generation") {
      generation = json_non_negative_integer(v);
    } else if (name == "disabled") {
      have_disabled = v.kind == json_kind::literal && (v.raw == "true" || v.raw == "false");
      u.disabled = v.raw == "true";
    } else if (name == "refresh_token_issued_at") {
      have_issued_at = true;
      issued_at = json_non_negative_integer(v);
    }
  });
  if (!parsed || !have_id || !have_email || !have_hash || !have_token || !generation || !have_disabled ||
      (have_issued_at && !issued_at))
    return false;
  u.refresh_generation = *generation;
  u.refresh_token_issued_at = issued_at && *issued_at ? *issued_at : loaded_at;
  if (!issued_at || !*issued_at) unstamped = true;
  return true;
}

/// @brief Calls @p on_object with the text of each element of @p array (a
/// JSON array the strict parser already accepted) that is an object; false
/// at the first that is not.
template <typename OnObject>
bool for_each_object(std::string_view array, OnObject&& on_object) {
  const char* p = array.data() + 1;  // past '['
  const char* const end = array.data() + array.size();
  const auto skip_ws = [&] {
    while (p != end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
  };
  skip_ws();
  if (p != end && *p == ']') return true;
  for (;;) {
    skip_ws();
    if (p == end || *p != '{') return false;
    const char* start = p;
    std::size_t depth = 0;
    for (; p != end; ++p) {
      if (*p == '"') {
        for (++p; p != end && *p != '"'; ++p)
          if (*p == '\\') ++p;
      } else if (*p == '{' || *p == '[') {
        ++depth;
      } else if ((*p == '}' || *p == ']') && --depth == 0) {
        ++p;
        break;
      }
    }
    if (!on_object(std::string_view(start, static_cast<std::size_t>(p - start)))) return false;
    skip_ws();
    if (p == end) return false;
    if (*p == ']') return true;
    ++p;  // ','
  }
}

/// @brief Parses a snapshot: walks the text once to check it (strict JSON,
/// no duplicate key), then each user object once more (no DOM, so 10^5
/// users parse in well under a second). Calls on_user(User&&) for each,
/// which returns false to refuse one (a duplicate). False, and a reason in
/// @p error, when the text is not a users file or a user was refused. Users
/// without an issue time get @p loaded_at and set @p *unstamped.
template <typename OnUser>
bool parse_snapshot(std::string_view text, std::string& error, OnUser&& on_user, std::int64_t loaded_at = 0,
                    bool* unstamped = nullptr) {
  std::string scratch(text.size(), '\0');
  std::optional<std::int64_t> version;
  std::string_view users;
  bool users_is_array = false;
  flat_json_parser root(text, &scratch[0]);
  if (!root.parse_object(4, [&](std::string_view name, const json_value_view& v) {
        if (name == "version") version = json_non_negative_integer(v);
        if (name == "users") {
          users = v.raw;
          users_is_array = v.kind == json_kind::array;
        }
      })) {
    error = "not a JSON object (or a duplicate key)";
    return false;
  }
  if (version != std::optional<std::int64_t>(1)) {
    error = "\"version\" must be 1";
    return false;
  }
  if (!users_is_array) {
    error = "\"users\" must be an array";
    return false;
  }
  std::size_t count = 0;
  bool failed = false;
  bool stamped_now = false;
  const bool objects = for_each_object(users, [&](std::string_view object) {
    ++count;
    User u;
    failed = true;
    if (!parse_user_object(object, &scratch[0], u, loaded_at, stamped_now)) {
      error = "user #" + std::to_string(count) + " lacks a field or has one of the wrong type";
      return false;
    }
    if (!on_user(std::move(u))) {
      error = "user #" + std::to_string(count) + " has an empty or duplicate email, user id or refresh token";
      return false;
    }
    failed = false;
    return true;
  });
  if (stamped_now && unstamped) *unstamped = true;
  if (!objects && !failed) error = "each user must be an object";
  return objects;
}

/// @brief Names one snapshot: the SHA-256 of its bytes and its size; for a
/// `compacted` line also the inode and modification time (nanoseconds) it
/// has on disk, which a rename keeps.
struct snapshot_ref {
  std::string sha256;
  std::int64_t size = 0;
  std::int64_t inode = 0;
  std::int64_t modified_ns = 0;
};

/// @brief What a journal line says.
enum class record_kind { header, put, remove, compacted };

/// @brief One parsed journal line: `snapshot` for header and compacted,
/// `user` for put, `email` for remove.
struct journal_record {
  record_kind kind = record_kind::put;
  snapshot_ref snapshot;
  User user;
  std::string email;
};

inline void append_snapshot_ref(std::string& out, const snapshot_ref& ref) {
  out += "{\"sha256\":";
  append_json_string(out, ref.sha256);
  // The inode and the nanoseconds can pass 2^53, past what a JSON number
  // holds exactly everywhere: they are written as decimal strings.
  out += ",\"size\":" + std::to_string(ref.size) + ",\"inode\":\"" + std::to_string(ref.inode) +
         "\",\"modified_ns\":\"" + std::to_string(ref.modified_ns) + "\"}";
}

/// @brief The journal's first line: it extends the snapshot @p ref names.
inline std::string header_line(const snapshot_ref& ref) {
  std::string out = "{\"iwsec_users_journal\":1,\"snapshot\":";
  append_snapshot_ref(out, ref);
  return out += "}\n";
}

/// @brief A change: @p u added, or replacing the user with its email.
inline std::string put_line(const User& u) {
  std::string out = "{\"put\":";
  append_user_object(out, u);
  return out += "}\n";
}

/// @brief A change: the user with @p email removed.
inline std::string remove_line(std::string_view email) {
  std::string out = "{\"delete\":";
  append_json_string(out, email);
  return out += "}\n";
}

/// @brief The snapshot @p ref names holds every change before this line.
inline std::string compacted_line(const snapshot_ref& ref) {
  std::string out = "{\"compacted\":";
  append_snapshot_ref(out, ref);
  return out += "}\n";
}

/// @brief Parses one journal line (without its newline) into @p out; false,
/// with a reason in @p error, when it is not one of the lines above. A put
/// user without an issue time gets @p loaded_at.
inline bool parse_journal_line(std::string_view line, journal_record& out, std::string& error,
                               std::int64_t loaded_at = 0) {
  std::string scratch(line.size(), '\0');
  std::optional<std::int64_t> format;
  std::string_view snapshot, compacted, user;
  bool removes = false;
  std::string removed_email;
  std::size_t kinds = 0;
  flat_json_parser parser(line, &scratch[0]);
  const bool parsed = parser.parse_object(3, [&](std::string_view name, const json_value_view& v) {
    if (name == "iwsec_users_journal") {
      format = json_non_negative_integer(v);
      ++kinds;
    } else if (name == "snapshot" && v.kind == json_kind::object) {
      snapshot = v.raw;
    } else if (name == "compacted" && v.kind == json_kind::object) {
      compacted = v.raw;
      ++kinds;
    } else if (name == "put" && v.kind == json_kind::object) {
      user = v.raw;
      ++kinds;
    } else if (name == "delete") {
      ++kinds;
      removes = v.kind == json_kind::string;
      if (removes) removed_email.assign(v.text.data(), v.text.size());
    } else {
      kinds += 2;  // nothing else belongs on a journal line
    }
  });
  if (!parsed || kinds != 1) {
    error = "not a users-journal line";
    return false;
  }
  const auto decimal = [](const json_value_view& v) -> std::optional<std::int64_t> {
    if (v.kind != json_kind::string || v.text.empty() || v.text.size() > 19) return std::nullopt;
    std::uint64_t n = 0;
    for (char c : v.text) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (n > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<std::int64_t>(n);
  };
  const auto parse_ref = [&](std::string_view text, snapshot_ref& ref) {
    std::optional<std::int64_t> size, inode, modified;
    bool have_sha = false;
    flat_json_parser p(text, &scratch[0]);
    const bool parsed_ref = p.parse_object(1, [&](std::string_view name, const json_value_view& v) {
      if (name == "sha256" && v.kind == json_kind::string) {
        have_sha = true;
        ref.sha256.assign(v.text.data(), v.text.size());
      } else if (name == "size") {
        size = json_non_negative_integer(v);
      } else if (name == "inode") {
        inode = decimal(v);
      } else if (name == "modified_ns") {
        modified = decimal(v);
      }
    });
    if (!parsed_ref || !have_sha || !size || !inode || !modified) return false;
    ref.size = *size;
    ref.inode = *inode;
    ref.modified_ns = *modified;
    return true;
  };
  out = journal_record();
  if (format) {
    out.kind = record_kind::header;
    if (*format != 1 || snapshot.empty() || !parse_ref(snapshot, out.snapshot)) {
      error = "a users-journal header of an unknown format";
      return false;
    }
    return true;
  }
  if (!compacted.empty()) {
    out.kind = record_kind::compacted;
    if (parse_ref(compacted, out.snapshot)) return true;
    error = "a compaction record without its snapshot's sha256, size, inode and modified_ns";
    return false;
  }
  if (!user.empty()) {
    out.kind = record_kind::put;
    bool unstamped = false;
    if (parse_user_object(user, &scratch[0], out.user, loaded_at, unstamped)) return true;
    error = "a changed user that lacks a field or has one of the wrong type";
    return false;
  }
  out.kind = record_kind::remove;
  if (removes && !removed_email.empty()) {
    out.email = std::move(removed_email);
    return true;
  }
  error = "a removal without an email";
  return false;
}

}  // namespace users_file
}  // namespace detail
}  // namespace iwsec
