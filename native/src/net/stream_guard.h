// Follows what a client sends on one connection (HTTP/1.1 requests, then WebSocket frames once the
// server has accepted an upgrade) and hands the transport's reader (the bundled uWebSockets.js)
// only what it reads correctly:
//  - a request line whole, never cut inside (it answers 505 to a request line cut after the
//    method's space or anywhere from the space before the version to its LF);
//  - valid forms it mishandles, rewritten to forms it reads: empty lines before a request (it
//    waits on them), chunk extensions (it waits) and trailer fields (505) taken out, a target in
//    absolute form (http://host/path, which a server must accept; 505) handed on as /path, lines
//    ended by LF alone (505) handed on ended by CRLF;
//  - a text frame whose payload is UTF-8 (it drops a connection that sends one that is not,
//    without a close frame). A text frame that is not is handed on as a close frame from the
//    client with code 1007 instead, which the library answers with the same code and reason;
//  - an HTTP/1.0 request (the reader answers 505 to any version but 1.1), its head held whole and
//    handed on as HTTP/1.1 with `Connection: close` (net/http10_head.h), so the server answers it
//    as a 1.0 client reads and then closes; one with Transfer-Encoding is answered 400 (RFC 9112
//    sec 6.1: its framing is faulty), and one whose head is over kMaxHeaderBytes 431, as the
//    reader refuses a 1.1 head too large;
//  - a Connection value of five bytes other than `close` (the reader closes after answering any
//    five-byte value), handed on with a comma after it: a header line cut across reads is held whole;
//  - with pipelining on, one request at a time: a request behind one not yet answered is held
//    unread (the reader closes a connection whose next request it reads while one is running)
//    until answer_done() says that answer is out (AnswerFollower, over what the server writes).
// Bytes are held back (never reordered, and never dropped but for the rewrites above) until the
// unit they belong to is whole. A request it would leave unanswered until its idle timeout (a
// header line with no colon, whitespace in or before a header name, a folded line, a control
// character, no Host) is answered 400 here, and one whose line names no version (HTTP/0.9's form)
// 505, and the connection ends. A request whose framing
// headers two readers could read differently (two Content-Length values, Content-Length with
// Transfer-Encoding, ...) is handed on up to the end of its headers and nothing after it: the
// server refuses it on its headers (400) and closes, and no byte that one reader would take for a
// body and another for a request is ever read. What the guard cannot follow exactly (TLS, bytes
// sent before an upgrade was answered) it stops following and passes on as is.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace umbra::net {

// Checks UTF-8 a piece at a time: a sequence may be cut between pieces.
class Utf8Stream {
 public:
  // False once the bytes so far cannot be UTF-8 (stays false until reset).
  bool feed(const uint8_t* p, size_t n);
  // Unmasks with the WebSocket key (`phase` = bytes of the payload before `p`, mod 4) while checking.
  bool feed_masked(const uint8_t* p, size_t n, const uint8_t key[4], size_t phase);
  // True when no sequence is left open.
  bool complete() const { return need_ == 0 && ok_; }
  bool ok() const { return ok_; }
  void reset() {
    need_ = 0;
    lo_ = 0x80;
    hi_ = 0xBF;
    ok_ = true;
  }

 private:
  bool byte(uint8_t b);
  uint8_t need_ = 0, lo_ = 0x80, hi_ = 0xBF;
  bool ok_ = true;
};

// What to do with a buffer after a step.
struct GuardStep {
  // Bytes from the buffer's start to hand to the reader now (the buffer may have been rewritten).
  size_t deliver = 0;
  // Bytes after those to keep for the next read: a unit not yet whole.
  size_t hold = 0;
  // The connection ends after `deliver`: report end of stream on the next read.
  bool end = false;
  // The held bytes are a pipelined request, not yet read: it waits for the answer to the one
  // before it (see StreamGuard::pipeline), and is read from its start once that is out.
  bool paused = false;
  // Set with `end` when the request being read is malformed in a way the reader would never
  // answer (it waits for more until its idle timeout): the reason, to be answered for it with
  // `refusal_status` (400, or 505 for a request line that names no version).
  const char* refusal = nullptr;
  int refusal_status = 400;
};

class StreamGuard {
 public:
  // A request line longer than this is handed on as it comes (the reader refuses it).
  static constexpr size_t kMaxRequestLine = 16 * 1024;
  // Request headers beyond this are not followed (the reader refuses them long before).
  static constexpr size_t kMaxHeaderBytes = 64 * 1024;
  // The refusal (431) of an HTTP/1.0 head larger than kMaxHeaderBytes, worded as the reader's own.
  static constexpr const char* kHeadTooLarge =
      "the request line and headers are larger than the server reads; send large values in the body";
  // The reason the client's 1007 close frame carries (and the library echoes).
  static constexpr const char* kInvalidTextReason = "a text frame's payload is not valid UTF-8";

  // `buf[0, seen)` are bytes held from the last step, `buf[seen, total)` new ones; `capacity` is
  // the buffer's size (a replacement close frame is written in it); `max_hold` bounds what is held.
  GuardStep step(uint8_t* buf, size_t seen, size_t total, size_t capacity, size_t max_hold);

  // The server's answer to the upgrade request the guard is waiting on: 101 or anything else.
  void upgrade_answered(bool switched);

  // Pipelining: with it on, a request that arrives behind one not yet answered is held, not handed
  // on, until answer_done() says the answer before it is out. The reader (uWebSockets.js) closes a
  // connection whose next request it reads while one is still running; held here, it never does.
  void pipeline(bool on) { pipeline_ = on; }
  // A request read (its line at least) is not answered yet: the next one would wait.
  bool awaiting_answer() const { return pipeline_ && answered_ < started_; }
  // Whether the request being answered is a HEAD (its answer has a head and no body).
  bool answering_head() const { return head_request_; }
  // A final answer went out (an answer may go before its request's body is read: a refusal).
  void answer_done() {
    if (answered_ < started_) ++answered_;
  }
  bool awaiting_upgrade() const { return phase_ == Phase::kAwaitUpgrade; }
  // Following no more (the rest is handed on as it comes).
  bool passing() const { return phase_ == Phase::kPass; }
  void stop() { phase_ = Phase::kPass; }

  // How many request lines and text frames had to be held whole, and text frames refused.
  uint64_t lines_held() const { return lines_held_; }
  // Pipelined requests held behind one not yet answered.
  uint64_t requests_held() const { return requests_held_; }
  // HTTP/1.0 requests handed on as HTTP/1.1.
  uint64_t http10_rewritten() const { return http10_rewritten_; }
  uint64_t frames_held() const { return frames_held_; }
  uint64_t frames_refused() const { return frames_refused_; }

 private:
  enum class Phase : uint8_t {
    kRequestLine,
    kHeaders,
    kBody,
    kChunkSize,
    kChunkData,
    kChunkEnd,
    kTrailers,
    kAwaitUpgrade,
    kFrameHeader,
    kFramePayload,
    kPass,
    kDrop,
    kEnded,
  };

  // Appends [p, p+n) to the line being read (kept up to kLineKept bytes).
  void take_line(const uint8_t* p, size_t n);
  // Checks a header line as read; returns why it is malformed, or nullptr.
  const char* header_line();
  void end_of_headers();
  bool chunk_size_line();
  // Parses the frame header in hdr_ once whole; false when the stream stops being followed.
  bool frame_header(size_t frame_start, size_t max_hold, size_t* hold);
  // Writes the client's 1007 close frame at buf+at; its length, or 0 where it does not fit.
  static size_t write_close_frame(uint8_t* buf, size_t at, size_t capacity);

  static constexpr size_t kLineKept = 256;
  static constexpr size_t npos = static_cast<size_t>(-1);

  Phase phase_ = Phase::kRequestLine;
  // HTTP: the line being read.
  uint8_t line_[kLineKept];
  size_t line_len_ = 0;
  // The line so far holds a control character (NUL, a CR not before its LF, ...), or ends in a CR.
  bool line_ctl_ = false, line_cr_ = false;
  bool host_seen_ = false;
  size_t header_bytes_ = 0;
  int64_t content_length_ = -1;
  bool chunked_ = false, coding_seen_ = false, upgrade_ = false;
  // The request's framing cannot be followed (the reader refuses or closes on it): pass it on.
  bool bad_ = false;
  // Its framing is refused on its headers (two lengths, a length that is not a number, a coding
  // other than chunked alone, a length and a coding): the head alone goes on, nothing after it.
  bool refused_ = false;
  uint64_t remaining_ = 0;
  uint8_t chunk_end_seen_ = 0;
  size_t chunk_digits_ = 0;
  // Bytes that arrived after an upgrade request before its answer: frames cannot be followed.
  bool early_bytes_ = false;
  // WebSocket: the frame header being read, the frame, and the message it belongs to.
  uint8_t hdr_[14];
  uint8_t hdr_len_ = 0;
  uint8_t key_[4];
  uint64_t payload_left_ = 0;
  uint64_t payload_done_ = 0;
  bool fin_ = false;
  bool checking_ = false;   // this frame's payload is text being checked
  bool streaming_ = false;  // ... and too large to hold: handed on as it is checked
  bool in_message_ = false;
  bool message_text_ = false;
  Utf8Stream utf8_;
  uint64_t lines_held_ = 0, frames_held_ = 0, frames_refused_ = 0;
  bool pipeline_ = false, head_request_ = false;
  // The request at the start of what is held has been counted as held.
  bool holding_ = false;
  uint64_t requests_held_ = 0;
  // Requests whose line was read, and final answers that went out.
  uint64_t started_ = 0, answered_ = 0;
  // The request being read is HTTP/1.0: its head is held from its start until the empty line, then
  // rewritten whole. `http10_line_`: its request line's length (with CRLF, in origin form).
  bool http10_ = false;
  size_t http10_line_ = 0;
  // A 1.1 request's Connection value is five bytes but not `close`: where the value ends in its
  // line, or npos (the reader takes any five-byte value for `close`).
  size_t connection_end_ = npos;
  // The authority of its target when that came in absolute form (the Host it may lack).
  uint8_t authority_[kLineKept];
  size_t authority_len_ = 0;
  uint64_t http10_rewritten_ = 0;
};

// Follows what the server writes on one connection (its HTTP/1.1 answers, as the send calls
// write them) to tell when each final answer is out: interim 1xx answers are skipped; an answer to
// HEAD, a 204 and a 304 end with their head; others with their Content-Length or last chunk; one
// that says `Connection: close` ends the connection (closed()). An answer it cannot follow (101,
// no length, a head over kMaxHead) ends the following: off() is true.
class AnswerFollower {
 public:
  static constexpr size_t kMaxHead = 16 * 1024;
  // Reads written bytes; returns how many final answers ended in them. `head_request`: whether
  // the answer that starts next answers a HEAD.
  int feed(const uint8_t* p, size_t n, bool head_request);
  bool off() const { return state_ == State::kOff; }
  // A final answer that says `Connection: close` is out: the connection ends after it.
  bool closed() const { return closed_; }

 private:
  enum class State : uint8_t { kHead, kBody, kChunkSize, kChunkData, kChunkEnd, kTrailers, kOff };
  // The head is whole in head_: what follows it.
  bool head_done(bool head_request);
  // A final answer ended.
  void end_answer() {
    ++ended_;
    if (close_) closed_ = true;
  }
  int ended_ = 0;
  State state_ = State::kHead;
  std::vector<uint8_t> head_;
  uint64_t remaining_ = 0;
  size_t chunk_line_ = 0;   // bytes of the chunk-size or trailer line so far
  uint64_t chunk_size_ = 0;
  bool chunk_digits_ = true;
  // The final answer being written says `Connection: close`; one such answer is out.
  bool close_ = false, closed_ = false;
};

// One connection's reads through a guard: what recv() hands the reader in place of the socket's
// bytes. `source(dst, cap)` reads like recv (bytes, 0 at the end, -1 with errno set).
class GuardedReader {
 public:
  // The most a unit may hold; a text frame over it is checked as it goes on instead.
  static constexpr size_t kMaxHold = 256 * 1024;
  // Bytes of the buffer a read leaves free, where it is large: an HTTP/1.0 head grows by its
  // `Connection: close` and the Host it may lack (at most 283 bytes) when handed on.
  static constexpr size_t kRewriteRoom = 512;

  template <typename Source>
  long read(uint8_t* buf, size_t len, Source&& source) {
    if (ended_) return 0;
    const size_t seen = held_.size();
    if (seen >= len) {  // a reader with a smaller buffer than ever held: stop following
      guard_.stop();
      std::memcpy(buf, held_.data(), len);
      held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(len));
      return static_cast<long>(len);
    }
    if (seen > 0) std::memcpy(buf, held_.data(), seen);
    const size_t room = len - seen;
    long n = source(buf + seen, room > 2 * kRewriteRoom ? room - kRewriteRoom : room);
    bool woken = false;
    if (n < 0) {
      // A held pipelined request is read on a wake with nothing new on the socket.
      const bool again = errno == EAGAIN || errno == EWOULDBLOCK;
      if (!again) held_.clear();
      if (!(again && paused_ && seen > 0)) return n;
      n = 0;
      woken = true;
    } else if (n == 0 && paused_) {
      // The client ended with requests held: it is gone, as the reader takes an end (it closes
      // the connection and drops what is running), and what it pipelined is not read.
      held_.clear();
      paused_ = false;
      ended_ = true;
      return 0;
    }
    if (n == 0 && !woken) {  // the client ended: what was held goes on, then the end
      if (seen == 0) return 0;
      held_.clear();
      guard_.stop();
      return static_cast<long>(seen);
    }
    // Held bytes of a paused request were never read by the guard: they are read again from their start.
    const size_t scanned = paused_ ? 0 : seen;
    const GuardStep s = guard_.step(buf, scanned, seen + static_cast<size_t>(n), len, std::min(kMaxHold, len / 2));
    held_.assign(buf + s.deliver, buf + s.deliver + s.hold);
    paused_ = s.paused && s.hold > 0;
    if (s.end) ended_ = true;
    if (s.refusal != nullptr) {
      refusal_ = s.refusal;
      refusal_status_ = s.refusal_status;
    }
    if (s.deliver == 0) {
      if (s.end) return 0;
      errno = EAGAIN;  // nothing whole yet: the reader waits for the socket again
      return -1;
    }
    return static_cast<long>(s.deliver);
  }

  StreamGuard& guard() { return guard_; }
  size_t held() const { return held_.size(); }
  // A pipelined request is held, waiting for the answer before it.
  bool paused() const { return paused_; }
  // The reason of a refusal to answer for the client (once), or nullptr; its status in `status`.
  const char* take_refusal(int* status) {
    const char* r = refusal_;
    refusal_ = nullptr;
    *status = refusal_status_;
    return r;
  }

 private:
  StreamGuard guard_;
  std::vector<uint8_t> held_;
  bool ended_ = false, paused_ = false;
  const char* refusal_ = nullptr;
  int refusal_status_ = 400;
};

}  // namespace umbra::net
