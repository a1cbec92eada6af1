/// @brief Client-throttle keys of client addresses: a peer address, or the one a reverse proxy reports.
/// @file
#pragma once

#include <cstring>
#include <string>
#include <string_view>

#include <arpa/inet.h>
#include <sys/socket.h>

#include "detail/hex.hpp"

namespace iwsec {

/// @brief The client-throttle key of a peer address: an IPv4 address as it
/// is (an IPv4-mapped IPv6 address as its IPv4 form); an IPv6 address as its
/// /64 prefix, since one subscriber usually holds a whole /64 and could
/// otherwise take a fresh address for every 99 failures; anything else (a
/// text that is not an address) unchanged.
inline std::string client_address_key(std::string_view address) {
  if (address.find(':') == std::string_view::npos || address.size() >= INET6_ADDRSTRLEN) return std::string(address);
  char text[INET6_ADDRSTRLEN] = {};
  std::memcpy(text, address.data(), address.size());
  unsigned char bytes[16];
  if (::inet_pton(AF_INET6, text, bytes) != 1) return std::string(address);
  static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, mapped_prefix, sizeof mapped_prefix) == 0) {
    char v4[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, bytes + 12, v4, sizeof v4)) return v4;
  }
  return "ipv6/64:" + detail::hex_encode(bytes, 8);
}

/// @brief The client-throttle key of the address a reverse proxy reports in
/// a header such as `X-Forwarded-For` or `X-Real-IP`: the last hop of a
/// comma-separated list (the one the nearest proxy appended), in any of the
/// forms proxies write (`1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`,
/// `[2001:db8::1]`, `fe80::1%eth0`, optionally in double quotes), keyed by
/// client_address_key (so IPv6 is grouped by its /64). A text that is none
/// of these is keyed as it is, trimmed.
inline std::string forwarded_address_key(std::string_view header_value) {
  std::string_view v = header_value;
  const auto comma = v.rfind(',');
  if (comma != std::string_view::npos) v.remove_prefix(comma + 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  std::string_view host = v;
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return std::string(v);
    const std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return std::string(v);
    host = host.substr(1, close - 1);
  } else {
    const auto colon = host.find(':');
    if (colon != std::string_view::npos && host.find(':', colon + 1) == std::string_view::npos)
      host = host.substr(0, colon);  // IPv4 with a port: one colon only
  }
  const auto zone = host.find('%');
  if (zone != std::string_view::npos && host.find(':') != std::string_view::npos) host = host.substr(0, zone);
  if (host.empty() || host.size() >= INET6_ADDRSTRLEN) return std::string(v);
  char text[INET6_ADDRSTRLEN] = {};
  std::memcpy(text, host.data(), host.size());
  unsigned char bytes[16];
  const int family = host.find(':') == std::string_view::npos ? AF_INET : AF_INET6;
  if (::inet_pton(family, text, bytes) != 1) return std::string(v);
  return client_address_key(host);
}

}  // namespace iwsec
