// Device discovery, device memory with byte accounting, and the per-worker Stream (a CUDA
// stream with its own pinned staging and device scratch). Plain C++ so the N-API binding can
// include it. Everything that talks to CUDA throws CudaError (never aborts); cuda_availability
// never throws at all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace umbra::cuda {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Availability {
  bool available = false;
  int device_count = 0;
  int runtime_version = 0;  // e.g. 13000
  int driver_version = 0;  // 0 when no driver is installed
  std::string reason;  // why not available ("" when available)
};
// Cheap after the first call. Never throws.
Availability cuda_availability();

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;
  int multiprocessors = 0;
  size_t total_memory = 0, free_memory = 0, l2_bytes = 0, shared_per_block_optin = 0;
};
// Throws CudaError when no device is usable.
std::vector<DeviceInfo> cuda_devices();

// Bytes currently held by DeviceBuffers (all devices, this process).
uint64_t cuda_bytes_in_use();

// Owns one cudaMalloc allocation on one device. Blocks on allocation and release.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(int device, size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  void release();  // frees now; idempotent

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

// Scratch slot the kernels themselves use (split-K partial sums, selection histograms).
constexpr int kKernelWorkspaceSlot = 7;

// One stream per worker. Not thread-safe by itself: callers hold lock() for a whole operation
// (stage uploads, launch, stage downloads, finish). Staged copies go through pinned memory so
// they are asynchronous DMA; finish() waits and copies the downloads out to their host targets.
class Stream {
 public:
  explicit Stream(int device);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  int device() const { return device_; }
  void* native() const { return stream_; }  // cudaStream_t
  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mutex_); }
  void activate() const;  // cudaSetDevice for the calling thread

  // Device scratch that persists between operations (grown on demand; contents undefined).
  void* scratch(int slot, size_t bytes);
  // Bumped whenever a scratch slot is reallocated: work captured into a CUDA graph holds the old
  // addresses and must be captured again (see plan.cu).
  uint64_t scratch_generation() const { return scratch_generation_; }
  // Copies `bytes` from host `src` to device `dst` (asynchronous after the memcpy into pinned memory).
  void stage_upload(void* dst, const void* src, size_t bytes);
  // Copies device `src` to host `dst` once finish() runs.
  void stage_download(void* dst, const void* src, size_t bytes);
  // Waits for the stream, then completes staged downloads. Throws on any asynchronous error.
  void finish();
  void synchronize();

  static constexpr int kSlots = 8;  // kernels keep the last one for their own workspace

 private:
  void* pinned_take(size_t bytes);
  struct PendingDownload {
    void* host;
    const void* pinned;
    size_t bytes;
  };
  int device_;
  void* stream_ = nullptr;
  std::mutex mutex_;
  DeviceBuffer scratch_[kSlots];
  void* pinned_ = nullptr;
  size_t pinned_bytes_ = 0, pinned_used_ = 0;
  std::vector<PendingDownload> downloads_;
  uint64_t scratch_generation_ = 0;
};

// Page-locked host memory (cudaHostAlloc), so copies from and to it are asynchronous DMA and can
// be captured into a CUDA graph. Blocks on allocation and release; release never throws.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace umbra::cuda
