// An HTTP/1.0 request's head, handed to the transport's reader (the bundled uWebSockets.js, which
// answers 505 to any version but HTTP/1.1) as the HTTP/1.1 head that gets the answer a 1.0 client
// can read (RFC 9112 sec 2.3 and 9.3, RFC 9110 sec 6.2 and 7.8, RFC 1945):
//  - the version says HTTP/1.1;
//  - the client's Connection and Keep-Alive fields give way to `Connection: close`: the server
//    answers with Content-Length (never chunked: the route does not stream) and closes, which a
//    1.0 client reads whether or not it asked to keep the connection;
//  - Upgrade and Sec-WebSocket-Key are taken out (a server must ignore Upgrade in a 1.0 request;
//    the reader upgrades on the key alone), and so is Expect (a 1.0 client gets no 100 Continue,
//    which the reader would send on its own);
//  - with no Host (a 1.0 request may have none), `Host:` with the absolute-form target's authority,
//    or empty, as RFC 9112 sec 3.2 has a client send it where there is no authority.
// Pure: no state; it allocates only the string it returns (std::bad_alloc is its one throw, as for
// the reader's own buffers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace umbra::net {

// `head[0, n)` is the request line (`line_len` bytes with its CRLF, ending " HTTP/1.0\r\n"), the
// header lines each ended by CRLF, then the empty line. Returns the head to hand on in its place.
// `authority`: of the absolute-form target the line had before it was put in origin form, or empty.
std::string http10_head_as_http11(const uint8_t* head, size_t n, size_t line_len, bool host_seen, std::string_view authority);

}  // namespace umbra::net
