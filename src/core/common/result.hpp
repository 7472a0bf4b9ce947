// Result<T>: a value or an operating error, for code that must not throw across a protocol
// boundary (wire decoding, config validation). The error is a short human-readable message.
//
// Thread-safety: a plain value type.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "core/common/assert.hpp"

namespace keel {

struct Error {
  std::string message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : state_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return ok(); }

  T& value() & {
    KEEL_ASSERT(ok());
    return std::get<T>(state_);
  }
  const T& value() const& {
    KEEL_ASSERT(ok());
    return std::get<T>(state_);
  }
  T&& value() && {
    KEEL_ASSERT(ok());
    return std::get<T>(std::move(state_));
  }
  const Error& error() const {
    KEEL_ASSERT(!ok());
    return std::get<Error>(state_);
  }

 private:
  std::variant<T, Error> state_;
};

struct Ok {};

}  // namespace keel
