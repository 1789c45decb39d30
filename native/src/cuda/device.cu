#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#include "cuda_check.cuh"
#include "device.cuh"

namespace umbra::cuda {
namespace {

std::atomic<uint64_t> g_bytes_in_use{0};

// Source paths print from native/ on, whatever directory the build ran in.
const char* short_path(const char* file) {
  const char* p = std::strstr(file, "native/");
  return p != nullptr ? p : file;
}

}  // namespace

void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line) {
  throw CudaError(std::string("CUDA error: ") + call + " failed with " + cudaGetErrorName(error) + " (" +
                  cudaGetErrorString(error) + ") at " + short_path(file) + ":" + std::to_string(line));
}

Availability cuda_availability() {
  static const Availability cached = [] {
    Availability a;
    cudaRuntimeGetVersion(&a.runtime_version);
    if (cudaDriverGetVersion(&a.driver_version) != cudaSuccess) a.driver_version = 0;
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear it so later calls see their own errors
      a.reason = std::string("cudaGetDeviceCount returned ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
      if (a.driver_version == 0) a.reason += "; no NVIDIA driver is installed";
      return a;
    }
    if (count == 0) {
      a.reason = "the driver reports zero CUDA devices";
      return a;
    }
    a.device_count = count;
    a.available = true;
    return a;
  }();
  return cached;
}

std::vector<DeviceInfo> cuda_devices() {
  const Availability a = cuda_availability();
  if (!a.available) throw CudaError("no CUDA device: " + a.reason);
  std::vector<DeviceInfo> out;
  for (int d = 0; d < a.device_count; ++d) {
    cudaDeviceProp p{};
    UMBRA_CUDA_CHECK(cudaGetDeviceProperties(&p, d));
    DeviceInfo info;
    info.index = d;
    info.name = p.name;
    info.major = p.major;
    info.minor = p.minor;
    info.multiprocessors = p.multiProcessorCount;
    info.total_memory = p.totalGlobalMem;
    info.l2_bytes = static_cast<size_t>(p.l2CacheSize);
    info.shared_per_block_optin = p.sharedMemPerBlockOptin;
    UMBRA_CUDA_CHECK(cudaSetDevice(d));
    size_t free_bytes = 0, total = 0;
    UMBRA_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    info.free_memory = free_bytes;
    out.push_back(std::move(info));
  }
  return out;
}

uint64_t cuda_bytes_in_use() { return g_bytes_in_use.load(); }

DeviceBuffer::DeviceBuffer(int device, size_t bytes) : bytes_(bytes), device_(device) {
  if (bytes == 0) return;
  UMBRA_CUDA_CHECK(cudaSetDevice(device));
  UMBRA_CUDA_CHECK(cudaMalloc(&data_, bytes));
  g_bytes_in_use += bytes;
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)), device_(other.device_) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
  }
  return *this;
}

void DeviceBuffer::release() {
  if (data_ == nullptr) return;
  // Runs from destructors and finalizers: a failure here cannot be thrown, and a failed free on
  // a broken context loses nothing more than the context already has.
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device_);
  cudaFree(data_);
  cudaSetDevice(previous);
  g_bytes_in_use -= bytes_;
  data_ = nullptr;
  bytes_ = 0;
}

Stream::Stream(int device) : device_(device) {
  const Availability a = cuda_availability();
  if (!a.available) throw CudaError("no CUDA device: " + a.reason);
  if (device < 0 || device >= a.device_count)
    throw std::invalid_argument("CUDA device " + std::to_string(device) + " does not exist (this host has " +
                                std::to_string(a.device_count) + ")");
  UMBRA_CUDA_CHECK(cudaSetDevice(device));
  cudaStream_t s = nullptr;
  UMBRA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = s;
}

Stream::~Stream() {
  cudaSetDevice(device_);
  if (stream_ != nullptr) {
    cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
    cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  }
  if (pinned_ != nullptr) cudaFreeHost(pinned_);
}

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  UMBRA_CUDA_CHECK(cudaHostAlloc(&data_, bytes, cudaHostAllocPortable));
}

PinnedBuffer::~PinnedBuffer() {
  if (data_ != nullptr) cudaFreeHost(data_);
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFreeHost(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void Stream::activate() const { UMBRA_CUDA_CHECK(cudaSetDevice(device_)); }

void* Stream::scratch(int slot, size_t bytes) {
  if (slot < 0 || slot >= kSlots) throw std::invalid_argument("Stream::scratch: slot out of range");
  if (scratch_[slot].bytes() < bytes) {
    synchronize();  // the old buffer may still be in use by queued work
    const size_t grown = std::max(bytes, scratch_[slot].bytes() + scratch_[slot].bytes() / 2);
    scratch_[slot] = DeviceBuffer();
    ++scratch_generation_;
    scratch_[slot] = DeviceBuffer(device_, grown);
  }
  return scratch_[slot].data();
}

void* Stream::pinned_take(size_t bytes) {
  const size_t aligned = (bytes + 255) & ~size_t(255);
  if (pinned_used_ + aligned > pinned_bytes_) {
    // Finish what is in flight (and deliver its downloads) before replacing the arena.
    finish();
    if (aligned > pinned_bytes_) {
      if (pinned_ != nullptr) UMBRA_CUDA_CHECK(cudaFreeHost(pinned_));
      pinned_ = nullptr;
      pinned_bytes_ = 0;
      const size_t size = std::max<size_t>(aligned, size_t(1) << 20);
      UMBRA_CUDA_CHECK(cudaHostAlloc(&pinned_, size, cudaHostAllocPortable));
      pinned_bytes_ = size;
    }
  }
  void* p = static_cast<char*>(pinned_) + pinned_used_;
  pinned_used_ += aligned;
  return p;
}

void Stream::stage_upload(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  activate();
  void* staging = pinned_take(bytes);
  std::memcpy(staging, src, bytes);
  UMBRA_CUDA_CHECK(cudaMemcpyAsync(dst, staging, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream_)));
}

void Stream::stage_download(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  activate();
  void* staging = pinned_take(bytes);
  UMBRA_CUDA_CHECK(cudaMemcpyAsync(staging, src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream_)));
  downloads_.push_back({dst, staging, bytes});
}

void Stream::synchronize() {
  activate();
  UMBRA_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
}

void Stream::finish() {
  try {
    synchronize();
  } catch (...) {
    downloads_.clear();
    pinned_used_ = 0;
    throw;
  }
  for (const auto& d : downloads_) std::memcpy(d.host, d.pinned, d.bytes);
  downloads_.clear();
  pinned_used_ = 0;
}

}  // namespace umbra::cuda
