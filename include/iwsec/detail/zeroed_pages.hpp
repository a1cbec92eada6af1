/// @brief detail::zeroed_pages: zero-filled memory straight from the kernel, given back whole.
/// @file
#pragma once

#include <cstddef>
#include <new>
#include <utility>

#include <sys/mman.h>

namespace iwsec {
namespace detail {

/// @brief Zero-filled pages straight from the kernel, given back whole when
/// freed: a large table costs memory only while it is in use.
class zeroed_pages {
 public:
  zeroed_pages() = default;
  explicit zeroed_pages(std::size_t bytes) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = p;
#ifdef MADV_HUGEPAGE
    // A large table is probed at random: huge pages spare most TLB misses.
    if (bytes >= (std::size_t{4} << 20)) ::madvise(p, bytes, MADV_HUGEPAGE);
#endif
  }
  zeroed_pages(zeroed_pages&& o) noexcept : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  zeroed_pages& operator=(zeroed_pages&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  zeroed_pages(const zeroed_pages&) = delete;
  zeroed_pages& operator=(const zeroed_pages&) = delete;
  ~zeroed_pages() { release(); }
  void* data() const noexcept { return data_; }

 private:
  void release() noexcept {
    if (data_) ::munmap(data_, bytes_);
    data_ = nullptr;
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace detail
}  // namespace iwsec
