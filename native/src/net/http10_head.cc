#include "net/http10_head.h"

#include <cstring>

namespace umbra::net {

namespace {

bool name_is(const uint8_t* p, size_t n, const char* word) {
  if (std::strlen(word) != n) return false;
  for (size_t i = 0; i < n; ++i) {
    uint8_t c = p[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<uint8_t>(c + ('a' - 'A'));
    if (c != static_cast<uint8_t>(word[i])) return false;
  }
  return true;
}

// Fields a 1.0 request's answer must not depend on: its connection is closed after the answer
// (Connection, Keep-Alive), it is not upgraded (Upgrade, and the key the reader upgrades on), and it
// gets no interim answer (Expect).
bool dropped(const uint8_t* name, size_t n) {
  return name_is(name, n, "connection") || name_is(name, n, "keep-alive") || name_is(name, n, "upgrade") ||
         name_is(name, n, "sec-websocket-key") || name_is(name, n, "expect");
}

}  // namespace

std::string http10_head_as_http11(const uint8_t* head, size_t n, size_t line_len, bool host_seen, std::string_view authority) {
  std::string out;
  out.reserve(n + authority.size() + 32);
  out.append(reinterpret_cast<const char*>(head), line_len);
  out[line_len - 3] = '1';  // "HTTP/1.0\r\n" -> "HTTP/1.1\r\n"
  const size_t fields_end = n - 2;  // the empty line
  size_t at = line_len;
  while (at < fields_end) {
    const void* lf = std::memchr(head + at, '\n', fields_end - at);
    const size_t end = lf != nullptr ? static_cast<size_t>(static_cast<const uint8_t*>(lf) - head) + 1 : fields_end;
    const void* colon = std::memchr(head + at, ':', end - at);
    const size_t name = colon != nullptr ? static_cast<size_t>(static_cast<const uint8_t*>(colon) - head) - at : 0;
    if (colon == nullptr || !dropped(head + at, name)) out.append(reinterpret_cast<const char*>(head + at), end - at);
    at = end;
  }
  if (!host_seen) {
    out.append("Host: ");
    out.append(authority);
    out.append("\r\n");
  }
  out.append("Connection: close\r\n\r\n");
  return out;
}

}  // namespace umbra::net
