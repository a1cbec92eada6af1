#pragma once
// The one place where iwsec-server's edge (edge_server.hpp) meets the
// differences between cpp-httplib releases, 0.11.4 to the newest. Decided by
// the version number (iwsec::detail::httplib_version, CPPHTTPLIB_VERSION
// parsed at compile time), never by whether an API happens to compile.
//
// What the edge uses of cpp-httplib's internals, and where it changed:
// - TaskQueue::enqueue returns void up to 0.14, bool from 0.15.0 (false:
//   the queue refused the connection, httplib closes it).
// - Server::process_request takes the connection's addresses (read once per
//   connection) from 0.17.0; before, it asks the stream for them.
// - Stream: is_readable() waits up to the read timeout and is_writable()
//   waits for room up to 0.19; from 0.20.0 wait_readable()/wait_writable()
//   wait, is_readable() only tells whether bytes are already buffered, and
//   is_writable() is gone. duration() (milliseconds since the connection
//   began, for the client's overall timeout) must be given in the newer
//   releases. The edge's stream defines all of them, each with the meaning
//   the release it is compiled against gives it (see ConnectionStream).
// - Server's protected fields (svr_sock_, keep_alive_*, read/write
//   timeouts) and the virtual process_and_close_socket: unchanged.

#include <string>
#include <type_traits>

#include <httplib.h>

#include <iwsec/iwsec.hpp>

namespace edge {
namespace compat {

using iwsec::detail::httplib_version;
using iwsec::detail::version_number;

/// TaskQueue::enqueue's return type.
constexpr bool enqueue_returns_bool = httplib_version >= version_number(0, 15, 0);
using enqueue_result = std::conditional_t<enqueue_returns_bool, bool, void>;

/// Whether Server::process_request takes the peer's and our own address.
constexpr bool process_request_takes_addresses = httplib_version >= version_number(0, 17, 0);

/// Whether Stream has wait_readable()/wait_writable() (and is_readable()
/// means "bytes are buffered", without waiting).
constexpr bool stream_waits_by_name = httplib_version >= version_number(0, 20, 0);

/// The value enqueue returns for a job it took.
template <typename Result = enqueue_result>
Result accepted() {
  if constexpr (std::is_same_v<Result, bool>) {
    return true;
  } else {
    return;
  }
}

/// Calls @p server's process_request (protected: edge::Server befriends
/// this) for one request on @p stream, with the arguments this release
/// takes. A template, so that the other releases' call is never compiled.
template <typename ServerT, typename StreamT>
bool process_request(ServerT& server, StreamT& stream, bool close_connection, bool& connection_closed) {
  if constexpr (process_request_takes_addresses) {
    return server.process_request(stream, stream.remote_ip(), stream.remote_port(), stream.local_ip(),
                                       stream.local_port(), close_connection, connection_closed, nullptr);
  } else {
    return server.process_request(stream, close_connection, connection_closed, nullptr);
  }
}

}  // namespace compat
}  // namespace edge
