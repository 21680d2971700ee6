// A read-only array that either owns its elements (while a trace is built) or views
// them in place inside a memory-mapped trace file (when one is loaded): a 1M-token trace
// holds gigabytes of attention rows, and copying them into fresh vectors took most of
// its opening time. The mapping stays alive as long as any column that views it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace memmamba {

// Blocks of 1 MiB and more (a traced run's attention columns) are whole 2 MiB huge pages
// where Linux gives them: first writes to fresh 4 KiB pages (a fault and a zeroed page each)
// were most of the time to build a traced GPU chunk's rows. The last page's unused part is
// the price (at most half of a block). Anything smaller comes from std::allocator.
void* allocate_huge_paged(size_t bytes);
void free_huge_paged(void* p);
// Makes the pages of [data, data + bytes) present and writable without changing what they
// hold (Linux 5.14+; elsewhere nothing), so that later first writes take no faults.
void populate_pages(void* data, size_t bytes);
constexpr size_t kHugePagedBytes = size_t{1} << 20;

// Grows without writing zeros first: a traced GPU chunk appends millions of attention
// entries that are written right after, in parallel; zeroing them on one thread (and taking
// their pages' faults there) cost as much as the rest of building them.
template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  T* allocate(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    if (n * sizeof(T) < kHugePagedBytes) return std::allocator<T>::allocate(n);
    return static_cast<T*>(allocate_huge_paged(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) {
    if (n * sizeof(T) < kHugePagedBytes) return std::allocator<T>::deallocate(p, n);
    free_huge_paged(p);
  }
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <typename U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}  // NOLINT: rebinding
  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
template <typename T>
using ColumnVector = std::vector<T, UninitializedAllocator<T>>;

template <typename T>
class Column {
 public:
  using value_type = T;
  using const_iterator = const T*;

  Column() = default;
  Column(std::initializer_list<T> init) : owned_(init) {}
  Column(const std::vector<T>& values) : owned_(values.begin(), values.end()) {}  // NOLINT: implicit on purpose
  template <typename It>
  Column(It first, It last) : owned_(first, last) {}

  // Views `n` elements at `data`; `keep_alive` owns the memory they live in.
  static Column mapped(const T* data, size_t n, std::shared_ptr<const void> keep_alive) {
    Column c;
    c.view_ = data;
    c.view_size_ = n;
    c.keep_alive_ = std::move(keep_alive);
    return c;
  }

  size_t size() const { return view_ ? view_size_ : owned_.size(); }
  bool empty() const { return size() == 0; }
  const T* data() const { return view_ ? view_ : owned_.data(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size(); }
  const T& operator[](size_t i) const { return data()[i]; }
  const T& front() const { return data()[0]; }
  const T& back() const { return data()[size() - 1]; }
  bool is_mapped() const { return view_ != nullptr; }

  // Building: a mapped column is copied into owned storage first. resize() leaves new
  // elements unwritten (UninitializedAllocator).
  ColumnVector<T>& owned() {
    if (view_) {
      owned_.assign(view_, view_ + view_size_);
      view_ = nullptr;
      view_size_ = 0;
      keep_alive_.reset();
    }
    return owned_;
  }
  void push_back(const T& value) { owned().push_back(value); }
  void reserve(size_t n) { owned().reserve(n); }
  void clear() { owned().clear(); }

  std::vector<T> to_vector() const { return std::vector<T>(begin(), end()); }
  friend bool operator==(const Column& a, const Column& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!(a[i] == b[i])) return false;
    return true;
  }
  friend bool operator!=(const Column& a, const Column& b) { return !(a == b); }

 private:
  ColumnVector<T> owned_;
  const T* view_ = nullptr;
  size_t view_size_ = 0;
  std::shared_ptr<const void> keep_alive_;
};

}  // namespace memmamba
