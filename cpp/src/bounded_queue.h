// A closable, fixed-capacity queue between two pipeline threads: producers block (or drop the
// oldest item) when it is full, so memory cannot grow with the input's length.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>

namespace emaseg::detail {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}

  // Waits while full. Returns false, dropping `item`, once the queue is closed.
  bool push(T item) {
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [this] { return closed_ || items_.size() < capacity_; });
    if (closed_) return false;
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return true;
  }

  // Never waits: when full, discards the oldest item to make room. Returns how many items
  // were discarded (0 or 1); a closed queue discards `item` itself.
  std::size_t push_drop_oldest(T item) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return 1;
    std::size_t dropped = 0;
    while (items_.size() >= capacity_) {
      items_.pop_front();
      ++dropped;
    }
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return dropped;
  }

  // Waits while empty and open; remaining items are still handed out after close().
  // std::nullopt means closed and drained.
  std::optional<T> pop() {
    std::unique_lock<std::mutex> lock(mutex_);
    not_empty_.wait(lock, [this] { return closed_ || !items_.empty(); });
    if (items_.empty()) return std::nullopt;
    std::optional<T> item(std::move(items_.front()));
    items_.pop_front();
    not_full_.notify_one();
    return item;
  }

  // Wakes every waiter; later pushes fail.
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }

 private:
  const std::size_t capacity_;
  std::mutex mutex_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<T> items_;
  bool closed_ = false;
};

}  // namespace emaseg::detail
