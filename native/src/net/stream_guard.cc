#include "net/stream_guard.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "net/http10_head.h"

namespace umbra::net {

namespace {

bool equals_ci(const uint8_t* p, size_t n, const char* word) {
  const size_t w = std::strlen(word);
  if (n != w) return false;
  for (size_t i = 0; i < n; ++i) {
    uint8_t c = p[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<uint8_t>(c + ('a' - 'A'));
    if (c != static_cast<uint8_t>(word[i])) return false;
  }
  return true;
}

bool is_space(uint8_t c) { return c == ' ' || c == '\t'; }

}  // namespace

bool Utf8Stream::byte(uint8_t b) {
  if (need_ == 0) {
    if (b < 0x80) return true;
    lo_ = 0x80;
    hi_ = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      need_ = 1;
    } else if (b == 0xE0) {
      need_ = 2;
      lo_ = 0xA0;  // no overlong three-byte forms
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
      need_ = 2;
    } else if (b == 0xED) {
      need_ = 2;
      hi_ = 0x9F;  // no surrogates
    } else if (b == 0xF0) {
      need_ = 3;
      lo_ = 0x90;  // no overlong four-byte forms
    } else if (b >= 0xF1 && b <= 0xF3) {
      need_ = 3;
    } else if (b == 0xF4) {
      need_ = 3;
      hi_ = 0x8F;  // nothing past U+10FFFF
    } else {
      return false;
    }
    return true;
  }
  if (b < lo_ || b > hi_) return false;
  --need_;
  lo_ = 0x80;
  hi_ = 0xBF;
  return true;
}

bool Utf8Stream::feed(const uint8_t* p, size_t n) {
  static const uint8_t kNoKey[4] = {0, 0, 0, 0};
  return feed_masked(p, n, kNoKey, 0);
}

bool Utf8Stream::feed_masked(const uint8_t* p, size_t n, const uint8_t key[4], size_t phase) {
  if (!ok_) return false;
  // The key as eight bytes for each starting phase: eight bytes move the phase by 0 mod 4.
  uint64_t masks[4];
  for (size_t r = 0; r < 4; ++r) {
    uint8_t m[8];
    for (size_t j = 0; j < 8; ++j) m[j] = key[(r + j) & 3];
    std::memcpy(&masks[r], m, 8);
  }
  size_t k = 0;
  while (k < n) {
    if (need_ == 0 && n - k >= 8) {
      uint64_t v;
      std::memcpy(&v, p + k, 8);
      v ^= masks[(phase + k) & 3];
      if ((v & 0x8080808080808080ULL) == 0) {  // eight ASCII bytes
        k += 8;
        continue;
      }
    }
    if (!byte(static_cast<uint8_t>(p[k] ^ key[(phase + k) & 3]))) {
      ok_ = false;
      return false;
    }
    ++k;
  }
  return true;
}

void StreamGuard::take_line(const uint8_t* p, size_t n) {
  if (line_len_ < kLineKept) std::memcpy(line_ + line_len_, p, std::min(n, kLineKept - line_len_));
  line_len_ += n;
  // Control characters: eight bytes at a time while none is below 0x20 or is DEL (LF ends the
  // segment, and the CR before it is the only one allowed).
  size_t j = 0;
  if (line_cr_ && n > 0) {
    if (p[0] != '\n') line_ctl_ = true;
    line_cr_ = false;
  }
  while (j < n) {
    if (n - j >= 8) {
      uint64_t x;
      std::memcpy(&x, p + j, 8);
      const uint64_t below = (x - 0x2020202020202020ULL) & ~x & 0x8080808080808080ULL;
      const uint64_t del = x ^ 0x7F7F7F7F7F7F7F7FULL;
      const uint64_t is_del = (del - 0x0101010101010101ULL) & ~del & 0x8080808080808080ULL;
      if ((below | is_del) == 0) {
        j += 8;
        continue;
      }
    }
    const uint8_t c = p[j++];
    if (c == '\r') {
      if (j == n) line_cr_ = true;            // its LF may come in the next read
      else if (p[j] != '\n') line_ctl_ = true;  // a CR alone
    } else if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7F) {
      line_ctl_ = true;
    }
  }
}

namespace {

// RFC 9110's token characters, which a header name is made of.
bool is_token(uint8_t c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

}  // namespace

const char* StreamGuard::header_line() {
  const size_t n = line_len_;
  line_len_ = 0;
  const bool ctl = line_ctl_;
  line_ctl_ = line_cr_ = false;
  const bool truncated = n > kLineKept;
  size_t len = truncated ? kLineKept : n;
  if (!truncated) {
    if (len > 0 && line_[len - 1] == '\n') --len;
    if (len > 0 && line_[len - 1] == '\r') --len;
    if (len == 0) {
      if (!host_seen_ && !http10_) return "the Host header is missing; HTTP/1.1 requests must send one";
      end_of_headers();
      return nullptr;
    }
  }
  if (ctl) return "a header holds a control character (NUL, a CR without its LF, ...)";
  if (is_space(line_[0])) return "a header line starts with whitespace (a folded line); send each header on one line";
  const uint8_t* colon = static_cast<const uint8_t*>(std::memchr(line_, ':', len));
  if (colon == nullptr) {
    // A name longer than the line kept has no colon in it yet: it is not one the guard follows.
    if (truncated) return nullptr;
    return "a header line has no colon; send headers as name: value";
  }
  const size_t name_len = static_cast<size_t>(colon - line_);
  if (name_len == 0) return "a header has an empty name";
  for (size_t k = 0; k < name_len; ++k) {
    if (!is_token(line_[k])) return "a header name holds whitespace or a character names may not have (no space before the colon)";
  }
  if (equals_ci(line_, name_len, "host")) host_seen_ = true;
  if (!http10_ && !truncated && equals_ci(line_, name_len, "connection")) {
    // The reader closes after the answer to a request whose Connection value is any five bytes:
    // one that is not `close` gets a comma after it (an empty list element, RFC 9110 5.6.1).
    size_t a = name_len + 1, b = len;
    while (a < b && is_space(line_[a])) ++a;
    while (b > a && is_space(line_[b - 1])) --b;
    if (b - a == 5 && !equals_ci(line_ + a, 5, "close")) connection_end_ = b;
  }
  const bool is_length = equals_ci(line_, name_len, "content-length");
  const bool is_coding = equals_ci(line_, name_len, "transfer-encoding");
  // A 1.0 request is not upgraded (its Upgrade is taken out when it is handed on).
  if (equals_ci(line_, name_len, "upgrade") && !http10_) upgrade_ = true;
  if (!is_length && !is_coding) return nullptr;
  if (is_coding && http10_) {
    return "Transfer-Encoding in an HTTP/1.0 request, whose framing is then faulty (RFC 9112 section 6.1); send the "
           "body with Content-Length";
  }
  if (truncated) {  // a framing value the guard did not keep whole: not followed
    bad_ = true;
    return nullptr;
  }
  size_t a = name_len + 1, b = len;
  while (a < b && is_space(line_[a])) ++a;
  while (b > a && is_space(line_[b - 1])) --b;
  if (is_length) {
    // A second length, or one that is not a plain number: the server refuses the request on its
    // headers (Umbra's 400, or the library's own).
    if (content_length_ >= 0 || b == a || b - a > 18) {
      refused_ = true;
      return nullptr;
    }
    int64_t v = 0;
    for (size_t i = a; i < b; ++i) {
      if (line_[i] < '0' || line_[i] > '9') {
        refused_ = true;
        return nullptr;
      }
      v = v * 10 + (line_[i] - '0');
    }
    content_length_ = v;
    return nullptr;
  }
  // A second coding, or one other than chunked alone: refused (400, 501) on the headers too.
  if (coding_seen_ || !equals_ci(line_ + a, b - a, "chunked")) refused_ = true;
  coding_seen_ = true;
  chunked_ = true;
  return nullptr;
}

void StreamGuard::end_of_headers() {
  header_bytes_ = 0;
  if (refused_ || (coding_seen_ && content_length_ >= 0)) {
    // Framing two readers could read differently: the reader gets the head alone, so the server
    // refuses the request before anything that could be taken for a body or a next request is read.
    phase_ = Phase::kDrop;
  } else if (bad_) {
    phase_ = Phase::kPass;
  } else if (upgrade_) {
    early_bytes_ = false;
    phase_ = (content_length_ > 0 || coding_seen_) ? Phase::kPass : Phase::kAwaitUpgrade;
  } else if (coding_seen_) {
    phase_ = Phase::kChunkSize;
  } else if (content_length_ > 0) {
    remaining_ = static_cast<uint64_t>(content_length_);
    phase_ = Phase::kBody;
  } else {
    phase_ = Phase::kRequestLine;
  }
}

bool AnswerFollower::head_done(bool head_request) {
  const uint8_t* h = head_.data();
  const size_t n = head_.size();
  // "HTTP/1.1 NNN"
  if (n < 12 || std::memcmp(h, "HTTP/1.", 7) != 0) return false;
  const int status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
  if (status < 100 || status > 999) return false;
  if (status == 101) return false;  // the connection is no longer HTTP
  int64_t length = -1;
  bool chunked = false, close = false;
  // Header lines: from after the status line to the blank line.
  const uint8_t* line = static_cast<const uint8_t*>(std::memchr(h, '\n', n));
  while (line != nullptr && static_cast<size_t>(line + 1 - h) < n) {
    const uint8_t* start = line + 1;
    const uint8_t* end = static_cast<const uint8_t*>(std::memchr(start, '\n', static_cast<size_t>(h + n - start)));
    if (end == nullptr) break;
    const uint8_t* colon = static_cast<const uint8_t*>(std::memchr(start, ':', static_cast<size_t>(end - start)));
    if (colon != nullptr) {
      const size_t name = static_cast<size_t>(colon - start);
      const uint8_t* v = colon + 1;
      while (v < end && is_space(*v)) ++v;
      if (equals_ci(start, name, "content-length")) {
        int64_t x = 0;
        bool digits = false;
        for (; v < end && *v >= '0' && *v <= '9'; ++v) {
          x = x * 10 + (*v - '0');
          digits = true;
          if (x > (int64_t{1} << 50)) return false;
        }
        if (!digits || (length >= 0 && length != x)) return false;
        length = x;
      } else if (equals_ci(start, name, "connection")) {
        // A list of options: `close` among them ends the connection after the answer.
        size_t m = static_cast<size_t>(end - v);
        while (m > 0 && (v[m - 1] == '\r' || is_space(v[m - 1]))) --m;
        for (size_t a = 0; a < m;) {
          size_t b = a;
          while (b < m && v[b] != ',') ++b;
          size_t x = a, y = b;
          while (x < y && is_space(v[x])) ++x;
          while (y > x && is_space(v[y - 1])) --y;
          if (equals_ci(v + x, y - x, "close")) close = true;
          a = b + 1;
        }
      } else if (equals_ci(start, name, "transfer-encoding")) {
        size_t m = static_cast<size_t>(end - v);
        while (m > 0 && (v[m - 1] == '\r' || is_space(v[m - 1]))) --m;
        if (!equals_ci(v, m, "chunked")) return false;
        chunked = true;
      }
    }
    line = end;
  }
  head_.clear();
  if (status < 200) {  // interim: the final answer follows
    state_ = State::kHead;
    return true;
  }
  close_ = close;
  if (head_request || status == 204 || status == 304) {
    state_ = State::kHead;
    remaining_ = ~uint64_t{0};  // marks "ended with its head" for feed()
    return true;
  }
  if (chunked) {
    state_ = State::kChunkSize;
    chunk_line_ = 0;
    chunk_size_ = 0;
    chunk_digits_ = true;
    return true;
  }
  if (length < 0) return false;  // ends when the connection does: nothing after it to follow
  remaining_ = static_cast<uint64_t>(length);
  state_ = State::kBody;
  return true;
}

int AnswerFollower::feed(const uint8_t* p, size_t n, bool head_request) {
  ended_ = 0;
  size_t i = 0;
  while (i < n && state_ != State::kOff) {
    switch (state_) {
      case State::kHead: {
        // Up to the blank line that ends the head.
        const size_t before = head_.size();
        const size_t take = std::min(n - i, kMaxHead + 4 - before);
        head_.insert(head_.end(), p + i, p + i + take);
        size_t from = before >= 3 ? before - 3 : 0;
        const void* found = nullptr;
        if (head_.size() >= 4) found = memmem(head_.data() + from, head_.size() - from, "\r\n\r\n", 4);
        if (found == nullptr) {
          if (head_.size() > kMaxHead) state_ = State::kOff;
          i += take;
          break;
        }
        const size_t head_len = static_cast<size_t>(static_cast<const uint8_t*>(found) - head_.data()) + 4;
        i += head_len - before;  // what of this piece belonged to the head
        head_.resize(head_len);
        remaining_ = 0;
        if (!head_done(head_request)) {
          state_ = State::kOff;
          break;
        }
        if (state_ == State::kHead && remaining_ == ~uint64_t{0}) {
          remaining_ = 0;
          end_answer();
        } else if (state_ == State::kBody && remaining_ == 0) {
          state_ = State::kHead;
          end_answer();
        }
        break;
      }
      case State::kBody: {
        const uint64_t k = std::min<uint64_t>(remaining_, n - i);
        remaining_ -= k;
        i += static_cast<size_t>(k);
        if (remaining_ == 0) {
          state_ = State::kHead;
          end_answer();
        }
        break;
      }
      case State::kChunkSize:
      case State::kTrailers: {
        const uint8_t c = p[i++];
        ++chunk_line_;
        if (chunk_line_ > 1024) {
          state_ = State::kOff;
          break;
        }
        if (c != '\n') {
          if (state_ == State::kChunkSize && chunk_digits_) {
            int d = -1;
            if (c >= '0' && c <= '9') d = c - '0';
            else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
            if (d >= 0) chunk_size_ = chunk_size_ * 16 + static_cast<uint64_t>(d);
            else chunk_digits_ = false;
            if (chunk_size_ > (uint64_t{1} << 50)) state_ = State::kOff;
          }
          break;
        }
        if (state_ == State::kTrailers) {
          if (chunk_line_ <= 2) {  // the blank line: the answer is whole
            state_ = State::kHead;
            end_answer();
          }
          chunk_line_ = 0;
          break;
        }
        chunk_line_ = 0;
        chunk_digits_ = true;
        if (chunk_size_ == 0) {
          state_ = State::kTrailers;
        } else {
          remaining_ = chunk_size_ + 2;  // the data and its CRLF
          state_ = State::kChunkData;
        }
        chunk_size_ = 0;
        break;
      }
      case State::kChunkData: {
        const uint64_t k = std::min<uint64_t>(remaining_, n - i);
        remaining_ -= k;
        i += static_cast<size_t>(k);
        if (remaining_ == 0) state_ = State::kChunkSize;
        break;
      }
      case State::kChunkEnd:
      case State::kOff:
        i = n;
        break;
    }
  }
  return ended_;
}

bool StreamGuard::chunk_size_line() {
  const size_t n = line_len_;
  line_len_ = 0;
  line_ctl_ = line_cr_ = false;
  if (n > kLineKept) return false;
  size_t i = 0;
  uint64_t size = 0;
  while (i < n) {
    const uint8_t c = line_[i];
    int d = -1;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    if (d < 0) break;
    if (i >= 15) return false;
    size = size * 16 + static_cast<uint64_t>(d);
    ++i;
  }
  if (i == 0) return false;
  chunk_digits_ = i;
  // What may follow the size: extensions, then CRLF (the reader checks them; only the size matters here).
  if (i < n && line_[i] != ';' && line_[i] != '\r' && line_[i] != '\n' && !is_space(line_[i])) return false;
  if (size == 0) {
    phase_ = Phase::kTrailers;
  } else {
    remaining_ = size;
    phase_ = Phase::kChunkData;
  }
  return true;
}

size_t StreamGuard::write_close_frame(uint8_t* buf, size_t at, size_t capacity) {
  const size_t reason = std::strlen(kInvalidTextReason);
  const size_t length = 2 + 4 + 2 + reason;
  if (at > capacity || capacity - at < length) return 0;
  uint8_t* p = buf + at;
  p[0] = 0x88;                                      // FIN, close
  p[1] = static_cast<uint8_t>(0x80 | (2 + reason));  // masked, as a client's frame must be
  p[2] = p[3] = p[4] = p[5] = 0;                     // a zero key leaves the payload as written
  p[6] = 1007 >> 8;
  p[7] = 1007 & 0xFF;
  std::memcpy(p + 8, kInvalidTextReason, reason);
  return length;
}

void StreamGuard::upgrade_answered(bool switched) {
  if (phase_ != Phase::kAwaitUpgrade) return;
  if (!switched || early_bytes_) {
    phase_ = Phase::kPass;
    return;
  }
  phase_ = Phase::kFrameHeader;
  hdr_len_ = 0;
  in_message_ = false;
  message_text_ = false;
}

GuardStep StreamGuard::step(uint8_t* buf, size_t seen, size_t total, size_t capacity, size_t max_hold) {
  GuardStep out;
  // Removes buf[a, b) (a form of a valid request the reader mishandles, rewritten to one it reads):
  // what follows moves down; a, b are never before the unit being held.
  auto erase = [&](size_t a, size_t b, size_t* at) {
    std::memmove(buf + a, buf + b, total - b);
    total -= b - a;
    *at -= b - a;
  };
  if (phase_ == Phase::kEnded) {
    out.end = true;
    return out;
  }
  // Held bytes are the start of the unit still being read.
  size_t hold = seen > 0 ? 0 : npos;
  // Where the frame being read began in this buffer (0: in an earlier read).
  size_t frame_start = 0;
  // Where the request whose headers are being read began in this buffer (0: in an earlier read).
  size_t request_start = 0;
  size_t i = seen;
  // Puts a CR before the LF at `lf` (a line ended by LF alone, which RFC 9112 2.2 lets a server
  // accept and the reader answers 505); false where the buffer has no room (then not followed).
  auto add_cr = [&](size_t lf) -> bool {
    if (total >= capacity) return false;
    std::memmove(buf + lf + 1, buf + lf, total - lf);
    buf[lf] = '\r';
    ++total;
    if (i > lf) ++i;
    return true;
  };
  auto pass = [&]() {
    phase_ = Phase::kPass;
    hold = npos;
  };
  // A text frame whose payload is not UTF-8: hand on the client's close frame with 1007 in its
  // place, and nothing after it. A frame already partly handed on cannot be taken back: the stream
  // ends before its rest, as the reader would end it.
  auto refuse = [&]() -> GuardStep {
    ++frames_refused_;
    phase_ = Phase::kEnded;
    GuardStep r;
    r.end = true;
    if (streaming_ || hold == npos) {
      r.deliver = frame_start;
      return r;
    }
    const size_t written = write_close_frame(buf, hold, capacity);
    r.deliver = hold + written;
    return r;
  };
  // The frame's payload is all read: check the message's end, release what was held.
  auto frame_done = [&]() -> bool {
    if (checking_ && fin_ && !utf8_.complete()) return false;
    if (checking_ && !streaming_ && hold == 0 && seen > 0) ++frames_held_;
    hold = npos;
    checking_ = false;
    phase_ = Phase::kFrameHeader;
    return true;
  };

  while (i < total) {
    switch (phase_) {
      case Phase::kPass:
        hold = npos;
        i = total;
        break;
      case Phase::kEnded:
        i = total;
        break;
      case Phase::kDrop:
        return out;  // nothing more is handed on; the server answers and closes
      case Phase::kAwaitUpgrade:
        early_bytes_ = true;
        i = total;
        break;
      case Phase::kRequestLine: {
        if (line_len_ == 0) {
          const uint8_t c = buf[i];
          if (c == '\r' || c == '\n') {
            // Empty lines before a request (RFC 9112 2.2: ignored), which the reader waits on.
            size_t next = i + 1;
            erase(i, next, &next);
            break;
          }
          if (c < 'A' || c > 'Z') {  // not a method: TLS, or bytes the reader refuses
            pass();
            break;
          }
          if (awaiting_answer()) {
            // A pipelined request behind one not yet answered: held unread, from its start, until
            // the answer is out. More than a hold's worth behind it is handed on as it comes.
            const size_t start = hold == npos ? i : hold;
            if (total - start > max_hold) {
              pass();
              break;
            }
            out.deliver = start;
            out.hold = total - start;
            out.paused = true;
            if (!holding_) ++requests_held_;
            holding_ = true;
            return out;
          }
          holding_ = false;
          if (hold == npos) hold = i;
        }
        const void* nl = std::memchr(buf + i, '\n', total - i);
        const size_t seg = nl ? static_cast<size_t>(static_cast<const uint8_t*>(nl) - (buf + i)) + 1 : total - i;
        line_len_ += seg;
        i += seg;
        if (nl == nullptr) {
          if (line_len_ > kMaxRequestLine || line_len_ > max_hold) pass();
          break;
        }
        if (hold == 0 && seen > 0) ++lines_held_;
        if ((i - hold < 2 || buf[i - 2] != '\r') && !add_cr(i - 1)) {
          pass();
          break;
        }
        if (const void* sp = std::memchr(buf + hold, ' ', i - hold);
            sp == nullptr || std::memchr(static_cast<const uint8_t*>(sp) + 1, ' ', buf + i - static_cast<const uint8_t*>(sp) - 1) == nullptr) {
          // No version (HTTP/0.9's form, METHOD SP target): the reader would wait on it for
          // headers until its idle timeout, and a 0.9 client sends none.
          phase_ = Phase::kEnded;
          out.deliver = hold;
          out.end = true;
          out.refusal = "the request line names no HTTP version (an HTTP/0.9 request); the REST API speaks HTTP/1.1 and HTTP/1.0";
          out.refusal_status = 505;
          return out;
        }
        // An HTTP/1.0 request, which the reader answers 505: its head is held until whole, then
        // handed on as HTTP/1.1 (net/http10_head.h).
        http10_ = i - hold >= 11 && std::memcmp(buf + i - 11, " HTTP/1.0\r\n", 11) == 0;
        authority_len_ = 0;
        {
          // A target in absolute form (http://host/path; RFC 9112 3.2.2: a server must accept
          // it), which the reader answers 505: handed on in origin form (/path).
          const size_t line_end = i;
          size_t t0 = hold;
          while (t0 < line_end && buf[t0] != ' ') ++t0;
          ++t0;
          auto starts = [&](const char* scheme) {
            const size_t n = std::strlen(scheme);
            if (t0 + n > line_end) return false;
            for (size_t k = 0; k < n; ++k) {
              if ((buf[t0 + k] | 0x20) != static_cast<uint8_t>(scheme[k]) && buf[t0 + k] != static_cast<uint8_t>(scheme[k])) return false;
            }
            return true;
          };
          const size_t authority = starts("http://") ? t0 + 7 : starts("https://") ? t0 + 8 : 0;
          if (authority != 0) {
            size_t p = authority;
            while (p < line_end && buf[p] != '/' && buf[p] != '?' && buf[p] != ' ' && buf[p] != '\r') ++p;
            // A 1.0 request's Host, where it sent none: visible ASCII only, as a field value.
            if (http10_ && p - authority <= kLineKept &&
                std::all_of(buf + authority, buf + p, [](uint8_t c) { return c > 0x20 && c < 0x7F; })) {
              authority_len_ = p - authority;
              std::memcpy(authority_, buf + authority, authority_len_);
            }
            if (p < line_end && buf[p] == '/') {
              erase(t0, p, &i);
            } else if (p < line_end) {  // no path: "/"
              buf[p - 1] = '/';
              erase(t0, p - 1, &i);
            }
          }
        }
        head_request_ = i - hold >= 5 && std::memcmp(buf + hold, "HEAD ", 5) == 0;
        ++started_;
        request_start = hold;  // where its line began (held whole until now)
        // A 1.0 head stays held from there until its empty line.
        if (http10_) http10_line_ = i - hold;
        else hold = npos;
        line_len_ = 0;
        header_bytes_ = 0;
        content_length_ = -1;
        chunked_ = coding_seen_ = upgrade_ = bad_ = refused_ = host_seen_ = false;
        line_ctl_ = line_cr_ = false;
        phase_ = Phase::kHeaders;
        break;
      }
      case Phase::kHeaders:
      case Phase::kTrailers:
      case Phase::kChunkSize: {
        // A chunk-size line and each trailer line are held whole: the reader mishandles chunk
        // extensions and trailer fields, so they are taken out once the line is in.
        // A header line is held whole too, where a read cuts it: its Connection value may be rewritten.
        if (line_len_ == 0 && hold == npos) hold = i;
        const void* nl = std::memchr(buf + i, '\n', total - i);
        size_t seg = nl ? static_cast<size_t>(static_cast<const uint8_t*>(nl) - (buf + i)) + 1 : total - i;
        if (nl != nullptr) {
          // The byte before the LF: in this segment, or the last one of the line so far.
          const bool cr = seg >= 2 ? buf[i + seg - 2] == '\r' : line_cr_;
          if (!cr) {
            if (!add_cr(i + seg - 1)) {
              pass();
              break;
            }
            ++seg;
          }
        }
        header_bytes_ += seg;
        take_line(buf + i, seg);
        i += seg;
        if (http10_ && phase_ == Phase::kHeaders && (header_bytes_ > kMaxHeaderBytes || i - request_start > max_hold)) {
          // A 1.0 head too large to hold: refused as the reader refuses a 1.1 head too large to read.
          phase_ = Phase::kEnded;
          out.deliver = request_start;
          out.end = true;
          out.refusal = kHeadTooLarge;
          out.refusal_status = 431;
          return out;
        }
        if (header_bytes_ > kMaxHeaderBytes || (phase_ != Phase::kHeaders && header_bytes_ > max_hold) ||
            (phase_ == Phase::kHeaders && line_len_ > max_hold)) {
          pass();
          break;
        }
        if (nl == nullptr) break;
        if (phase_ == Phase::kHeaders) {
          const size_t line_len = line_len_;
          if (const char* why = header_line()) {
            // The reader would wait on this request until its idle timeout: answer it here.
            phase_ = Phase::kEnded;
            out.deliver = request_start;
            out.end = true;
            out.refusal = why;
            return out;
          }
          if (connection_end_ != npos) {
            // The line is whole in the buffer (held from its start): a comma after its value.
            const size_t at = i - line_len + connection_end_;
            connection_end_ = npos;
            if (total >= capacity) {
              pass();
              break;
            }
            std::memmove(buf + at + 1, buf + at, total - at);
            buf[at] = ',';
            ++total;
            ++i;
          }
          if (!http10_) hold = npos;
          if (http10_ && phase_ != Phase::kHeaders) {
            // The empty line of a 1.0 head: the head, whole in buf[request_start, i), goes on as 1.1.
            const std::string head = http10_head_as_http11(buf + request_start, i - request_start, http10_line_, host_seen_,
                                                           std::string_view(reinterpret_cast<const char*>(authority_), authority_len_));
            const size_t was = i - request_start;
            if (total - was + head.size() > capacity) {  // only where a read's buffer has no kRewriteRoom
              phase_ = Phase::kEnded;
              out.deliver = request_start;
              out.end = true;
              out.refusal = "the HTTP/1.0 request head does not fit the read buffer once rewritten";
              return out;
            }
            std::memmove(buf + request_start + head.size(), buf + i, total - i);
            std::memcpy(buf + request_start, head.data(), head.size());
            total = total - was + head.size();
            i = request_start + head.size();
            hold = npos;
            ++http10_rewritten_;
          }
          if (phase_ == Phase::kDrop) {
            out.deliver = i;  // the head; what follows it is never handed on
            return out;
          }
        } else if (phase_ == Phase::kTrailers) {
          const size_t n = line_len_;
          line_len_ = 0;
          line_ctl_ = line_cr_ = false;
          if (n == 1 || (n == 2 && line_[0] == '\r')) {
            header_bytes_ = 0;
            phase_ = Phase::kRequestLine;
          } else {
            erase(hold, i, &i);  // a trailer field: the body is whole without it
          }
          hold = npos;
        } else {
          if (!chunk_size_line()) {
            pass();
            break;
          }
          const size_t digits = chunk_digits_;
          // What follows the size up to the line end: extensions (and the whitespace before them).
          const size_t eol = i - ((i - hold >= 2 && buf[i - 2] == '\r') ? 2 : 1);
          if (hold + digits < eol) erase(hold + digits, eol, &i);
          header_bytes_ = 0;
          hold = npos;
        }
        break;
      }
      case Phase::kBody:
      case Phase::kChunkData: {
        const uint64_t n = std::min<uint64_t>(remaining_, total - i);
        remaining_ -= n;
        i += static_cast<size_t>(n);
        if (remaining_ == 0) {
          if (phase_ == Phase::kBody) {
            phase_ = Phase::kRequestLine;
          } else {
            phase_ = Phase::kChunkEnd;
            chunk_end_seen_ = 0;
          }
        }
        break;
      }
      case Phase::kChunkEnd: {
        const uint8_t c = buf[i];
        if (chunk_end_seen_ == 0 && c == '\n' && !add_cr(i)) {  // the data's LF alone
          pass();
          break;
        }
        const uint8_t d = buf[i++];
        if (chunk_end_seen_ == 0 && d == '\r') {
          chunk_end_seen_ = 1;
        } else if (chunk_end_seen_ == 1 && d == '\n') {
          phase_ = Phase::kChunkSize;
        } else {
          pass();
        }
        break;
      }
      case Phase::kFrameHeader: {
        if (hdr_len_ == 0) {
          frame_start = i;
          if (hold == npos) hold = i;  // a header cut between reads is held until whole
        }
        size_t need = 2;
        while (i < total) {
          hdr_[hdr_len_++] = buf[i++];
          if (hdr_len_ >= 2) {
            const uint8_t len7 = hdr_[1] & 0x7F;
            need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((hdr_[1] & 0x80) ? 4 : 0);
          }
          if (hdr_len_ >= need) break;
        }
        if (hdr_len_ < need) break;
        size_t h = 0;
        if (!frame_header(frame_start, max_hold, &h)) {
          pass();
          break;
        }
        if (h == npos) hold = npos;
        if (phase_ == Phase::kFramePayload && payload_left_ == 0 && !frame_done()) return refuse();
        break;
      }
      case Phase::kFramePayload: {
        const uint64_t n = std::min<uint64_t>(payload_left_, total - i);
        if (checking_ && !utf8_.feed_masked(buf + i, static_cast<size_t>(n), key_, static_cast<size_t>(payload_done_ & 3))) {
          return refuse();
        }
        payload_done_ += n;
        payload_left_ -= n;
        i += static_cast<size_t>(n);
        if (payload_left_ == 0 && !frame_done()) return refuse();
        break;
      }
    }
  }
  out.deliver = hold == npos ? total : hold;
  out.hold = total - out.deliver;
  return out;
}

bool StreamGuard::frame_header(size_t frame_start, size_t max_hold, size_t* hold) {
  const size_t header = hdr_len_;
  hdr_len_ = 0;
  const uint8_t b0 = hdr_[0], b1 = hdr_[1];
  const bool masked = (b1 & 0x80) != 0;
  const bool rsv1 = (b0 & 0x40) != 0;
  const uint8_t opcode = b0 & 0x0F;
  if (!masked || (b0 & 0x30) != 0) return false;  // the reader closes on these itself
  uint64_t length = b1 & 0x7F;
  if (length == 126) {
    length = (static_cast<uint64_t>(hdr_[2]) << 8) | hdr_[3];
  } else if (length == 127) {
    length = 0;
    for (int k = 0; k < 8; ++k) length = (length << 8) | hdr_[2 + k];
    if (length >> 62) return false;
  }
  fin_ = (b0 & 0x80) != 0;
  if (opcode >= 8) {
    if (!fin_ || length > 125 || opcode > 10) return false;
    checking_ = false;
  } else if (opcode == 1 || opcode == 2) {
    if (in_message_) return false;
    message_text_ = opcode == 1 && !rsv1;  // a compressed message is checked by the reader once inflated
    in_message_ = !fin_;
    utf8_.reset();
    checking_ = message_text_;
  } else if (opcode == 0) {
    if (!in_message_ || rsv1) return false;
    in_message_ = !fin_;
    checking_ = message_text_;
  } else {
    return false;
  }
  std::memcpy(key_, hdr_ + header - 4, 4);
  payload_left_ = length;
  payload_done_ = 0;
  streaming_ = checking_ && (length > max_hold || header + length > max_hold);
  // Only a text frame small enough to hold is held; everything else goes on as it comes.
  *hold = (checking_ && !streaming_) ? frame_start : static_cast<size_t>(-1);
  phase_ = Phase::kFramePayload;
  return true;
}

}  // namespace umbra::net
