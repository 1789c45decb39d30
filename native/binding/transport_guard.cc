// The transport guard: Umbra's own reading of what clients send, placed between the bundled
// uWebSockets.js and the socket (see native/src/net/stream_guard.h for what it fixes and why).
//
// The library's compiled module calls the C library's recv/send/writev/accept4/close through its
// own import table (its GOT). `guardTransport()` points those entries of that one module at the
// functions below, which keep a GuardedReader per accepted connection; every other module,
// Node's included, still calls the C library directly. Its libuv uv_poll_start is followed too:
// the guard then knows each socket's poll, and once the answer before a held pipelined request is
// written (send/writev, read by an AnswerFollower) it asks for writable, which a socket is at
// once, and reports that event to the library as readable: the library reads the held request. Linux (ELF) only; elsewhere it reports
// why it is not installed and the library runs as shipped.
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "common.h"
#include "net/stream_guard.h"

#if defined(__linux__) && defined(__ELF__) && (defined(__x86_64__) || defined(__aarch64__))
#define UMBRA_TRANSPORT_GUARD 1
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#endif

namespace umbra_binding {

namespace {

struct Counts {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> lines_held{0};
  std::atomic<uint64_t> frames_held{0};
  std::atomic<uint64_t> frames_refused{0};
  std::atomic<uint64_t> pages_rewritten{0};
  std::atomic<uint64_t> requests_refused{0};
  std::atomic<uint64_t> requests_held{0};
  std::atomic<uint64_t> http10_rewritten{0};
};
Counts counts;

#if UMBRA_TRANSPORT_GUARD

// libuv's poll entry points, declared here (the addon builds against Node-API headers only) and
// found in the process at install: the library watches each socket through a uv_poll_t.
struct uv_poll_s;
using uv_poll_cb = void (*)(uv_poll_s*, int status, int events);
using uv_poll_start_fn = int (*)(uv_poll_s*, int events, uv_poll_cb);
using uv_fileno_fn = int (*)(const void* handle, int* fd);
constexpr int kUvReadable = 1, kUvWritable = 2;  // UV_READABLE, UV_WRITABLE
uv_poll_start_fn real_poll_start = nullptr;
uv_fileno_fn real_fileno = nullptr;
// The library's poll callback (one function for every socket).
std::atomic<uv_poll_cb> library_poll_cb{nullptr};
// Whether held pipelined requests can be woken (the poll hook is in place).
std::atomic<bool> pipelining{false};
extern "C" void guarded_poll_cb(uv_poll_s* handle, int status, int events);

// An accepted connection's reader, and what of its guard's counts is already in `counts`.
struct Connection {
  umbra::net::GuardedReader reader;
  // The server's answers, followed to know when a held pipelined request may be read.
  umbra::net::AnswerFollower answers;
  // The library's poll of this socket, the events it asked for, and whether a read is due.
  uv_poll_s* poll = nullptr;
  int wanted = 0;
  bool wake = false;
  // Ended by the guard (after an answer that says `Connection: close`): its FIN is sent, and what
  // the client still sends is read and dropped until it closes.
  bool closing = false;
  uint64_t lines = 0, frames = 0, refused = 0, held = 0, http10 = 0;

  Connection() { reader.guard().pipeline(pipelining.load(std::memory_order_relaxed)); }

  // Adds what the guard counted since the last call (a few compares on a read that held nothing).
  void publish() {
    const auto& g = reader.guard();
    if (g.lines_held() != lines) counts.lines_held.fetch_add(g.lines_held() - lines, std::memory_order_relaxed);
    if (g.frames_held() != frames) counts.frames_held.fetch_add(g.frames_held() - frames, std::memory_order_relaxed);
    if (g.frames_refused() != refused) counts.frames_refused.fetch_add(g.frames_refused() - refused, std::memory_order_relaxed);
    if (g.requests_held() != held) counts.requests_held.fetch_add(g.requests_held() - held, std::memory_order_relaxed);
    if (g.http10_rewritten() != http10) counts.http10_rewritten.fetch_add(g.http10_rewritten() - http10, std::memory_order_relaxed);
    lines = g.lines_held();
    frames = g.frames_held();
    refused = g.frames_refused();
    held = g.requests_held();
    http10 = g.http10_rewritten();
  }
};

// One connection per accepted descriptor: a two-level table so that lookups take no lock (a
// descriptor belongs to one event loop at a time; accept4 and close order its slot).
constexpr int kChunkBits = 12;
constexpr int kChunks = 256;  // descriptors below 2^20 are followed
std::atomic<std::atomic<Connection*>*> table[kChunks];

std::atomic<Connection*>* slot(int fd, bool create) {
  if (fd < 0 || fd >= (kChunks << kChunkBits)) return nullptr;
  auto& chunk = table[fd >> kChunkBits];
  auto* c = chunk.load(std::memory_order_acquire);
  if (c == nullptr) {
    if (!create) return nullptr;
    auto* fresh = new std::atomic<Connection*>[1 << kChunkBits]();
    if (chunk.compare_exchange_strong(c, fresh, std::memory_order_acq_rel)) {
      c = fresh;
    } else {
      delete[] fresh;
    }
  }
  return &c[fd & ((1 << kChunkBits) - 1)];
}

void forget(int fd) {
  auto* s = slot(fd, false);
  if (s == nullptr) return;
  delete s->exchange(nullptr, std::memory_order_acq_rel);
}

Connection* connection_of(int fd) {
  auto* s = slot(fd, false);
  return s == nullptr ? nullptr : s->load(std::memory_order_acquire);
}

// Sends the FIN after what was written (never inside an answer: the caller knows one ended). The
// library learns of the end when the client closes in turn (its read then ends).
void end_connection(int fd, Connection* c) {
  c->closing = true;
  ::shutdown(fd, SHUT_WR);
}

// Where the library's module lies: an answer it writes from its own read-only data is one of its
// fixed error pages (its answers to requests are built in buffers on the heap).
std::atomic<uintptr_t> module_lo{0}, module_hi{0};

bool library_page(const void* buf, size_t len) {
  const auto p = reinterpret_cast<uintptr_t>(buf);
  if (p < module_lo.load(std::memory_order_relaxed) || p >= module_hi.load(std::memory_order_relaxed)) return false;
  const auto* b = static_cast<const char*>(buf);
  return len >= 12 && std::memcmp(b, "HTTP/1.1 ", 9) == 0 && (b[9] == '4' || b[9] == '5');
}

std::string json_answer(const std::string& status_line, const std::string& error) {
  const std::string body = "{\"error\":\"" + error + "\"}";
  return status_line + "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

// The library's error page as Umbra answers errors: the same status, a JSON body.
std::string json_page(const char* page, size_t len) {
  const char* eol = static_cast<const char*>(memmem(page, len, "\r\n", 2));
  const std::string status_line(page, eol != nullptr ? static_cast<size_t>(eol - page) : 12);
  const std::string code(page + 9, 3);
  std::string error;
  if (code == "400") {
    error = "the request could not be read as HTTP/1.1: a malformed request line, header, Content-Length or chunk "
            "size, or Content-Length together with Transfer-Encoding";
  } else if (code == "431") {
    error = "the request line and headers are larger than the server reads; send large values in the body";
  } else if (code == "505") {
    error = "the request line could not be read, or names a version other than HTTP/1.1 or HTTP/1.0; the REST API "
            "speaks HTTP/1.1 and HTTP/1.0 (gRPC clients use the gRPC port)";
  } else {
    error = "the request was refused by the HTTP transport: " + status_line.substr(9);
  }
  return json_answer(status_line, error);
}

void answered(int fd, const void* buf, size_t len) {
  if (len < 12) return;
  auto* c = connection_of(fd);
  if (c == nullptr || !c->reader.guard().awaiting_upgrade()) return;
  const auto* b = static_cast<const char*>(buf);
  if (std::memcmp(b, "HTTP/1.1 ", 9) != 0) return;
  c->reader.guard().upgrade_answered(std::memcmp(b + 9, "101", 3) == 0);
}

// The library polls `c`'s socket for what it asked, plus writable while a read is due: a socket
// that can be written is reported at once, and the poll callback then reads the held request.
void repoll(Connection* c) {
  if (c->poll == nullptr || real_poll_start == nullptr) return;
  real_poll_start(c->poll, c->wake ? c->wanted | kUvWritable : c->wanted, guarded_poll_cb);
}

// Bytes the server wrote on `fd`: an answer that ends there lets a held request be read.
void wrote(int fd, const uint8_t* p, size_t n) {
  auto* c = connection_of(fd);
  if (c == nullptr || c->answers.off()) return;
  auto& guard = c->reader.guard();
  const int ended = c->answers.feed(p, n, guard.answering_head());
  for (int k = 0; k < ended; ++k) guard.answer_done();
  // An answer that says `Connection: close` ends the connection, whatever the library does (it
  // keeps one open after an answer to HEAD).
  if (c->answers.closed() && !c->closing) end_connection(fd, c);
  if (c->answers.off()) {
    // Answers it cannot follow (a 101 among them: frames follow): nothing more is held, and what
    // is held goes on.
    guard.pipeline(false);
  } else if (ended == 0) {
    return;
  }
  // A held request may now be read.
  if (c->reader.paused() && !guard.awaiting_answer()) {
    c->wake = true;
    repoll(c);
  }
}

void written(int fd, const struct iovec* iov, int count, ssize_t n) {
  for (int k = 0; k < count && n > 0; ++k) {
    const size_t part = std::min(static_cast<size_t>(n), iov[k].iov_len);
    wrote(fd, static_cast<const uint8_t*>(iov[k].iov_base), part);
    n -= static_cast<ssize_t>(part);
  }
}

extern "C" {

ssize_t umbra_guard_recv(int fd, void* buf, size_t len, int flags) {
  auto* c = flags == 0 ? connection_of(fd) : nullptr;
  if (c == nullptr) return ::recv(fd, buf, len, flags);
  if (c->closing) {
    // A lingering close: closing with bytes unread would reset the connection, and the client
    // could lose the answer before it. Ends when the client closes (or the library's idle timeout).
    ssize_t k;
    while ((k = ::recv(fd, buf, len, 0)) > 0) {
    }
    return k;
  }
  const long n = c->reader.read(static_cast<uint8_t*>(buf), len, [fd](uint8_t* dst, size_t cap) -> long {
    return ::recv(fd, dst, cap, 0);
  });
  const int saved = errno;
  int status = 400;
  if (const char* why = c->reader.take_refusal(&status)) {
    // A request the library would leave unanswered: the refusal goes out before the end it is
    // handed (as the library writes its own error pages, straight to the socket).
    const std::string answer = status == 505   ? json_answer("HTTP/1.1 505 HTTP Version Not Supported", why)
                               : status == 431 ? json_answer("HTTP/1.1 431 Request Header Fields Too Large", why)
                                               : json_answer("HTTP/1.1 400 Bad Request", std::string("malformed request: ") + why);
    if (::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL) > 0) counts.requests_refused.fetch_add(1, std::memory_order_relaxed);
  }
  c->publish();
  errno = saved;
  return n;
}

ssize_t umbra_guard_send(int fd, const void* buf, size_t len, int flags) {
  if (library_page(buf, len)) {
    const std::string page = json_page(static_cast<const char*>(buf), len);
    const ssize_t n = ::send(fd, page.data(), page.size(), flags);
    if (n < 0) return n;
    counts.pages_rewritten.fetch_add(1, std::memory_order_relaxed);
    // The library closes the connection after its page, whatever was written.
    return static_cast<size_t>(n) == page.size() ? static_cast<ssize_t>(len) : 0;
  }
  answered(fd, buf, len);
  const ssize_t n = ::send(fd, buf, len, flags);
  if (n > 0) {
    const int saved = errno;
    wrote(fd, static_cast<const uint8_t*>(buf), static_cast<size_t>(n));
    errno = saved;
  }
  return n;
}

ssize_t umbra_guard_writev(int fd, const struct iovec* iov, int count) {
  if (count > 0 && iov[0].iov_len > 0) answered(fd, iov[0].iov_base, iov[0].iov_len);
  const ssize_t n = ::writev(fd, iov, count);
  if (n > 0) {
    const int saved = errno;
    written(fd, iov, count, n);
    errno = saved;
  }
  return n;
}

// The library's poll callback for a connection: a due read is reported as readable (once).
void guarded_poll_cb(uv_poll_s* handle, int status, int events) {
  const uv_poll_cb library = library_poll_cb.load(std::memory_order_relaxed);
  int fd = -1;
  Connection* c = real_fileno != nullptr && real_fileno(handle, &fd) == 0 ? connection_of(fd) : nullptr;
  if (c != nullptr && c->poll == handle && c->wake) {
    c->wake = false;
    repoll(c);
    if ((c->wanted & kUvWritable) == 0) events &= ~kUvWritable;
    if ((c->wanted & kUvReadable) != 0) events |= kUvReadable;
  }
  if (library != nullptr && (events != 0 || status < 0)) library(handle, status, events);
}

int umbra_guard_uv_poll_start(uv_poll_s* handle, int events, uv_poll_cb cb) {
  uv_poll_cb expected = nullptr;
  library_poll_cb.compare_exchange_strong(expected, cb, std::memory_order_relaxed);
  int fd = -1;
  Connection* c = real_fileno(handle, &fd) == 0 ? connection_of(fd) : nullptr;
  if (c == nullptr || cb != library_poll_cb.load(std::memory_order_relaxed)) return real_poll_start(handle, events, cb);
  c->poll = handle;
  c->wanted = events;
  // A held request whose turn came while the library was not reading (paused) is read once it reads again.
  if ((events & kUvReadable) != 0 && c->reader.paused() && !c->reader.guard().awaiting_answer()) c->wake = true;
  return real_poll_start(handle, c->wake ? events | kUvWritable : events, guarded_poll_cb);
}

int umbra_guard_accept4(int fd, struct sockaddr* addr, socklen_t* addrlen, int flags) {
  const int client = ::accept4(fd, addr, addrlen, flags);
  if (client >= 0) {
    auto* s = slot(client, true);
    if (s != nullptr) {
      auto* old = s->exchange(new Connection(), std::memory_order_acq_rel);
      delete old;  // a descriptor closed by another road: its old reader is stale
      counts.connections.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return client;
}

int umbra_guard_close(int fd) {
  forget(fd);
  return ::close(fd);
}

}  // extern "C"

struct Hook {
  const char* symbol;
  void* target;
};

const Hook kHooks[] = {
    {"recv", reinterpret_cast<void*>(&umbra_guard_recv)},
    {"send", reinterpret_cast<void*>(&umbra_guard_send)},
    {"writev", reinterpret_cast<void*>(&umbra_guard_writev)},
    {"accept4", reinterpret_cast<void*>(&umbra_guard_accept4)},
    {"close", reinterpret_cast<void*>(&umbra_guard_close)},
};

// Hooked where the module imports it and libuv's functions are found: pipelined requests are then
// held until the answer before them is out (without it, the library closes such a connection).
const Hook kPipelineHooks[] = {
    {"uv_poll_start", reinterpret_cast<void*>(&umbra_guard_uv_poll_start)},
};

struct Found {
  std::string name;
  ElfW(Addr) base = 0;
  const ElfW(Phdr)* phdr = nullptr;
  ElfW(Half) phnum = 0;
  int matches = 0;
};

// The library's module: the one loaded object named uws_<platform>_<arch>_<abi>.node.
int find_library(struct dl_phdr_info* info, size_t, void* data) {
  auto* found = static_cast<Found*>(data);
  if (info->dlpi_name == nullptr) return 0;
  const char* slash = std::strrchr(info->dlpi_name, '/');
  const char* base = slash != nullptr ? slash + 1 : info->dlpi_name;
  const size_t n = std::strlen(base);
  if (std::strncmp(base, "uws_", 4) != 0 || n < 9 || std::strcmp(base + n - 5, ".node") != 0) return 0;
  ++found->matches;
  found->name = info->dlpi_name;
  found->base = info->dlpi_addr;
  found->phdr = info->dlpi_phdr;
  found->phnum = info->dlpi_phnum;
  return 0;
}

#if defined(__x86_64__)
constexpr uint32_t kJumpSlot = R_X86_64_JUMP_SLOT, kGlobDat = R_X86_64_GLOB_DAT;
#else
constexpr uint32_t kJumpSlot = R_AARCH64_JUMP_SLOT, kGlobDat = R_AARCH64_GLOB_DAT;
#endif

struct Installed {
  bool installed = false;
  std::string reason;
  std::string library;
  std::vector<std::string> hooked;
};

std::mutex install_mutex;
Installed install_state;

Installed install() {
  Found found;
  dl_iterate_phdr(find_library, &found);
  Installed out;
  if (found.matches == 0) {
    out.reason = "uWebSockets.js is not loaded in this process";
    return out;
  }
  if (found.matches > 1) {
    out.reason = "more than one uWebSockets.js module is loaded";
    return out;
  }
  out.library = found.name;
  const ElfW(Addr) base = found.base;
  auto fix = [base](ElfW(Addr) a) { return a < base ? a + base : a; };
  const ElfW(Dyn)* dyn = nullptr;
  uintptr_t lo = UINTPTR_MAX, hi = 0, relro_lo = 0, relro_hi = 0;
  for (ElfW(Half) i = 0; i < found.phnum; ++i) {
    const ElfW(Phdr)& ph = found.phdr[i];
    if (ph.p_type == PT_DYNAMIC) dyn = reinterpret_cast<const ElfW(Dyn)*>(base + ph.p_vaddr);
    if (ph.p_type == PT_LOAD && (ph.p_flags & PF_W) == 0) {  // code and read-only data
      lo = std::min<uintptr_t>(lo, base + ph.p_vaddr);
      hi = std::max<uintptr_t>(hi, base + ph.p_vaddr + ph.p_memsz);
    }
    if (ph.p_type == PT_GNU_RELRO) {
      relro_lo = base + ph.p_vaddr;
      relro_hi = relro_lo + ph.p_memsz;
    }
  }
  if (dyn == nullptr) {
    out.reason = "the uWebSockets.js module has no dynamic section";
    return out;
  }
  const ElfW(Sym)* symtab = nullptr;
  const char* strtab = nullptr;
  const ElfW(Rela)* jmprel = nullptr;
  const ElfW(Rela)* rela = nullptr;
  size_t jmprel_size = 0, rela_size = 0;
  bool rel_not_rela = false;
  for (const ElfW(Dyn)* d = dyn; d->d_tag != DT_NULL; ++d) {
    switch (d->d_tag) {
      case DT_SYMTAB: symtab = reinterpret_cast<const ElfW(Sym)*>(fix(d->d_un.d_ptr)); break;
      case DT_STRTAB: strtab = reinterpret_cast<const char*>(fix(d->d_un.d_ptr)); break;
      case DT_JMPREL: jmprel = reinterpret_cast<const ElfW(Rela)*>(fix(d->d_un.d_ptr)); break;
      case DT_PLTRELSZ: jmprel_size = d->d_un.d_val; break;
      case DT_RELA: rela = reinterpret_cast<const ElfW(Rela)*>(fix(d->d_un.d_ptr)); break;
      case DT_RELASZ: rela_size = d->d_un.d_val; break;
      case DT_PLTREL: rel_not_rela = d->d_un.d_val != DT_RELA; break;
      default: break;
    }
  }
  if (symtab == nullptr || strtab == nullptr || rel_not_rela) {
    out.reason = "the uWebSockets.js module's import table is not in the expected form";
    return out;
  }
  real_poll_start = reinterpret_cast<uv_poll_start_fn>(dlsym(RTLD_DEFAULT, "uv_poll_start"));
  real_fileno = reinterpret_cast<uv_fileno_fn>(dlsym(RTLD_DEFAULT, "uv_fileno"));
  const long page = sysconf(_SC_PAGESIZE);
  std::vector<std::pair<void**, void*>> patches;
  std::vector<std::string> names;
  auto scan = [&](const ElfW(Rela)* table, size_t bytes) {
    if (table == nullptr) return;
    for (size_t k = 0; k < bytes / sizeof(ElfW(Rela)); ++k) {
      const uint32_t type = ELF64_R_TYPE(table[k].r_info);
      if (type != kJumpSlot && type != kGlobDat) continue;
      const char* name = strtab + symtab[ELF64_R_SYM(table[k].r_info)].st_name;
      for (const Hook& h : kHooks) {
        if (std::strcmp(name, h.symbol) != 0) continue;
        patches.emplace_back(reinterpret_cast<void**>(base + table[k].r_offset), h.target);
        names.emplace_back(h.symbol);
      }
      for (const Hook& h : kPipelineHooks) {
        if (std::strcmp(name, h.symbol) != 0 || real_poll_start == nullptr || real_fileno == nullptr) continue;
        patches.emplace_back(reinterpret_cast<void**>(base + table[k].r_offset), h.target);
        names.emplace_back(h.symbol);
      }
    }
  };
  scan(jmprel, jmprel_size);
  scan(rela, rela_size);
  // All or nothing: a reader that sees recv but not close would keep stale connections.
  for (const Hook& h : kHooks) {
    if (std::find(names.begin(), names.end(), h.symbol) == names.end()) {
      out.reason = std::string("the uWebSockets.js module does not import ") + h.symbol + " as expected";
      return out;
    }
  }
  for (auto& [where, target] : patches) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(where);
    void* start = reinterpret_cast<void*>(a & ~static_cast<uintptr_t>(page - 1));
    const size_t span = (a + sizeof(void*)) - reinterpret_cast<uintptr_t>(start);
    if (mprotect(start, span, PROT_READ | PROT_WRITE) != 0) {
      out.reason = std::string("could not write the module's import table: ") + std::strerror(errno);
      return out;
    }
    __atomic_store_n(where, target, __ATOMIC_RELEASE);
    if (a >= relro_lo && a < relro_hi) mprotect(start, span, PROT_READ);
  }
  module_lo.store(lo);
  module_hi.store(hi);
  pipelining.store(std::find(names.begin(), names.end(), std::string("uv_poll_start")) != names.end());
  out.installed = true;
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  out.hooked = names;
  return out;
}

#endif  // UMBRA_TRANSPORT_GUARD

Napi::Object describe(Napi::Env env, const Installed& s) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("installed", s.installed);
  out.Set("reason", s.reason);
  out.Set("library", s.library);
  Napi::Array hooked = Napi::Array::New(env, s.hooked.size());
  for (size_t i = 0; i < s.hooked.size(); ++i) hooked.Set(static_cast<uint32_t>(i), s.hooked[i]);
  out.Set("hooked", hooked);
#if UMBRA_TRANSPORT_GUARD
  out.Set("pipelining", s.installed && pipelining.load());
#else
  out.Set("pipelining", false);
#endif
  return out;
}

// guardTransport(): installs the guard once per process; later calls report it.
Napi::Value GuardTransport(const Napi::CallbackInfo& info) {
#if UMBRA_TRANSPORT_GUARD
  std::lock_guard<std::mutex> lock(install_mutex);
  // Tried again until it is in place: the library may be loaded after a first call.
  if (!install_state.installed) install_state = install();
  return describe(info.Env(), install_state);
#else
  Installed none;
  none.reason = "the transport guard needs Linux (ELF) on x86-64 or arm64";
  return describe(info.Env(), none);
#endif
}

// transportGuardCounts(): what the guard did so far in this process.
Napi::Value TransportGuardCounts(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("connections", static_cast<double>(counts.connections.load()));
  out.Set("requestLinesHeld", static_cast<double>(counts.lines_held.load()));
  out.Set("textFramesHeld", static_cast<double>(counts.frames_held.load()));
  out.Set("textFramesRefused", static_cast<double>(counts.frames_refused.load()));
  out.Set("errorPagesRewritten", static_cast<double>(counts.pages_rewritten.load()));
  out.Set("requestsRefused", static_cast<double>(counts.requests_refused.load()));
  out.Set("pipelinedHeld", static_cast<double>(counts.requests_held.load()));
  out.Set("http10Rewritten", static_cast<double>(counts.http10_rewritten.load()));
  return out;
}

// streamGuardReads(chunks, upgrade): runs the guard over `chunks` as the socket's successive
// reads, the way recv() does, and returns what the reader would be handed at each read
// ({data} or {wait: true} or {end: true}); `upgrade` ('switch' | 'refuse') answers an upgrade
// request the moment the guard waits on one; a read that ends the stream with a refusal to answer
// is followed by {refused: reason, status}. For tests.
Napi::Value StreamGuardReads(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "streamGuardReads";
  Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, !info[0].IsArray(), "chunks must be an array of Buffers");
  const auto chunks = info[0].As<Napi::Array>();
  const std::string upgrade = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "switch";
  const size_t capacity = info[2].IsNumber() ? to_size(info, 2, kName, "capacity") : 512 * 1024;
  umbra::net::GuardedReader reader;
  std::vector<uint8_t> buf(capacity);
  Napi::Array out = Napi::Array::New(env);
  uint32_t produced = 0;
  auto push = [&](long n) {
    Napi::Object r = Napi::Object::New(env);
    if (n > 0) r.Set("data", Napi::Buffer<uint8_t>::Copy(env, buf.data(), static_cast<size_t>(n)));
    else if (n == 0) r.Set("end", true);
    else r.Set("wait", true);
    out.Set(produced++, r);
  };
  for (uint32_t c = 0; c <= chunks.Length(); ++c) {
    // One read per chunk, then the end of the stream.
    std::vector<uint8_t> chunk;
    if (c < chunks.Length()) {
      const Napi::Value v = chunks.Get(c);
      UMBRA_THROW_IF(env, !v.IsBuffer(), "chunks must be an array of Buffers");
      auto b = v.As<Napi::Buffer<uint8_t>>();
      chunk.assign(b.Data(), b.Data() + b.Length());
    }
    bool given = false;
    const long n = reader.read(buf.data(), buf.size(), [&](uint8_t* dst, size_t cap) -> long {
      if (given) {
        errno = EAGAIN;
        return -1;
      }
      given = true;
      const size_t k = std::min(cap, chunk.size());
      std::memcpy(dst, chunk.data(), k);
      return static_cast<long>(k);
    });
    push(n);
    int status = 400;
    if (const char* why = reader.take_refusal(&status)) {
      Napi::Object r = Napi::Object::New(env);
      r.Set("refused", why);
      r.Set("status", status);
      out.Set(produced++, r);
    }
    if (reader.guard().awaiting_upgrade()) reader.guard().upgrade_answered(upgrade == "switch");
  }
  return out;
}

// answersEnded(chunks, head): the server's writes `chunks`, in order, read by the follower that
// tells when an answer is out; returns how many final answers ended in each chunk, and -1 for a
// chunk from which on it follows no more. `head`: the answers are to HEAD requests. For tests.
Napi::Value AnswersEnded(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "answersEnded";
  Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, !info[0].IsArray(), "chunks must be an array of Buffers");
  const auto chunks = info[0].As<Napi::Array>();
  const bool head = info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  umbra::net::AnswerFollower follower;
  Napi::Array out = Napi::Array::New(env, chunks.Length());
  for (uint32_t c = 0; c < chunks.Length(); ++c) {
    const Napi::Value v = chunks.Get(c);
    UMBRA_THROW_IF(env, !v.IsBuffer(), "chunks must be an array of Buffers");
    auto b = v.As<Napi::Buffer<uint8_t>>();
    const int ended = follower.feed(b.Data(), b.Length(), head);
    out.Set(c, follower.off() ? -1 : ended);
  }
  return out;
}

}  // namespace

void register_transport_guard(Napi::Env env, Napi::Object exports) {
  exports.Set("answersEnded", umbra_binding::function(env, AnswersEnded, "answersEnded"));
  exports.Set("guardTransport", umbra_binding::function(env, GuardTransport, "guardTransport"));
  exports.Set("transportGuardCounts", umbra_binding::function(env, TransportGuardCounts, "transportGuardCounts"));
  exports.Set("streamGuardReads", umbra_binding::function(env, StreamGuardReads, "streamGuardReads"));
}

}  // namespace umbra_binding
