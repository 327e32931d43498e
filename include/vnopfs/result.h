// result.h: errors are errno values (XNU's VNOP contracts); nothing below src/fuse/ throws.
//
// Most calls return `int` (0 or an errno), as XNU's VNOPs do. Where a call produces a value, it returns
// Result<T>: a value or an errno, never both. TRY() propagates the errno of a failed call.
#pragma once

#include <cassert>
#include <cerrno>
#include <utility>
#include <variant>

namespace vnopfs {

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose, as ErrorOr
  static Result error(int err) {
    assert(err != 0);
    return Result(Err{err});
  }
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  int err() const { return ok() ? 0 : std::get<1>(v_).e; }
  T& value() & { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  struct Err { int e; };
  explicit Result(Err e) : v_(e) {}
  std::variant<T, Err> v_;
};

}  // namespace vnopfs

// TRY(expr): expr is an int errno call; return it from the enclosing function when non-zero.
#define TRY(expr)                      \
  do {                                 \
    if (int _try_err = (expr)) return _try_err; \
  } while (0)
