#pragma once
/// @file
/// @brief Request bodies on the library's routes: which requests announce
/// one, and how to answer them so that the connection is closed.
///
/// Why this matters with cpp-httplib 0.11: it never reads a body announced
/// on GET, HEAD or OPTIONS, nor a chunked body on DELETE, so whatever follows
/// the headers would be parsed as the next request on the connection (a
/// request smuggled inside a body gets its own answer). It also ignores a
/// `Connection: close` set by a handler. The only way a handler can make it
/// close the connection is a write that "fails": the answer is served by a
/// content provider that writes the whole body and then reports failure, so
/// the client gets the full answer and then the end of the connection, and
/// nothing after the headers is ever parsed.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <httplib.h>

#include "http.hpp"

namespace iwsec {
namespace detail {

/// @brief What a request's framing says about its body.
enum class request_body {
  none,            ///< no body: no Transfer-Encoding, no or a zero Content-Length
  with_length,     ///< Content-Length > 0
  unusable_frame,  ///< any Transfer-Encoding, or a Content-Length that is not one decimal number
};

/// @brief Classifies the body @p req announces (headers only; httplib may
/// or may not have read it); *@p has_length (if given): whether it has a
/// Content-Length header. One pass over the headers, no copies: it runs
/// twice on every request of iwsec-server.
inline request_body announced_body(const httplib::Request& req, bool* has_length = nullptr) {
  std::size_t lengths = 0;
  const std::string* value = nullptr;  // the first Content-Length, as get_header_value gives it
  bool transfer_encoding = false;
  for (const auto& header : req.headers) {
    const std::string& name = header.first;
    if (name.size() == 17 && iequals(name, "Transfer-Encoding")) {
      transfer_encoding = true;
    } else if (name.size() == 14 && iequals(name, "Content-Length") && lengths++ == 0) {
      value = &header.second;
    }
  }
  if (has_length) *has_length = lengths != 0;
  if (transfer_encoding) return request_body::unusable_frame;
  if (lengths == 0) return request_body::none;
  if (lengths > 1) return request_body::unusable_frame;
  std::string_view v(*value);
  while (!v.empty() && is_ows(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_ows(v.back())) v.remove_suffix(1);
  if (v.empty() || v.size() > 19) return request_body::unusable_frame;
  bool zero = true;
  for (const char c : v) {
    if (c < '0' || c > '9') return request_body::unusable_frame;
    zero = zero && c == '0';
  }
  return zero ? request_body::none : request_body::with_length;
}

/// @brief announced_body(), except that a POST, PUT, PATCH or PRI without
/// Content-Length counts as a body of unusable framing: cpp-httplib 0.11
/// reads such a body until the connection ends, into memory, with no limit.
inline request_body framed_body(const httplib::Request& req) {
  bool has_length = false;
  const request_body body = announced_body(req, &has_length);
  if (body != request_body::none || has_length) return body;
  const std::string& m = req.method;
  return m == "POST" || m == "PUT" || m == "PATCH" || m == "PRI" ? request_body::unusable_frame : request_body::none;
}

/// @brief Whether cpp-httplib 0.11 leaves the body of @p req unread on the
/// connection (so its bytes would be taken for the next request): any body
/// on GET, HEAD and OPTIONS, and any framing it does not decode before the
/// handler runs (Transfer-Encoding on DELETE, anything but plain `chunked`).
inline bool body_left_unread(const httplib::Request& req) {
  const request_body body = announced_body(req);
  if (body == request_body::none) return false;
  if (req.method == "GET" || req.method == "HEAD" || req.method == "OPTIONS") return true;
  if (!req.has_header("Transfer-Encoding")) return body == request_body::unusable_frame;
  return req.method == "DELETE" || req.get_header_value_count("Transfer-Encoding") != 1 ||
         !iequals(req.get_header_value("Transfer-Encoding"), "chunked");
}

/// @brief Answers @p status with the JSON @p body and `Connection: close`,
/// and makes httplib close the connection after writing it (see the file
/// comment). A HEAD request gets the headers only; httplib then keeps the
/// connection, which only the server's own connection handling can change.
inline void send_json_and_close(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_header("Connection", "close");
  auto text = std::make_shared<const std::string>(body);
  res.set_content_provider(text->size(), json_content_type,
                           [text](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                             if (offset < text->size()) sink.write(text->data() + offset, length);
                             return false;  // "failed": httplib closes the connection
                           });
}

/// @brief The refusal of a request body on a route that takes none: 413 for
/// a Content-Length body, 400 for any other framing, in the error envelope,
/// connection closed.
inline void refuse_body(httplib::Response& res, request_body body, std::string_view help_base) {
  const bool too_large = body == request_body::with_length;
  res.headers.clear();
  send_json_and_close(res, too_large ? 413 : 400,
                      error_envelope("Security Client Errors",
                                     too_large ? "Payload Too Large: this endpoint takes no request body"
                                               : "Bad Request: this endpoint takes no request body",
                                     "IW10006", help_base));
}

}  // namespace detail
}  // namespace iwsec
