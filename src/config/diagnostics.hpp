// Helpers for parse_config()'s messages: a collector that keeps the problem nearest the top of
// the file, and the "did you mean" guess for misspelt names.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/common/result.hpp"

namespace keel::config::detail {

constexpr int kNoLine = 0;  // a problem with no place in the file (a missing section)

// Collects problems and reports the one nearest the top of the file as
// "source:line: message" (or "source: message" for kNoLine). A missing key is reported only
// when nothing else is wrong, because it is often the consequence of another problem: the
// misspelt key reported as unknown.
class Problems {
 public:
  explicit Problems(std::string source) : source_(std::move(source)) {}

  void add(int line, std::string message) {
    ++count_;
    keep(first_, line, std::move(message));
  }
  void add_missing(int line, std::string message) {
    ++count_;
    keep(first_missing_, line, std::move(message));
  }
  bool any() const { return first_.has_value() || first_missing_.has_value(); }
  // How many problems were added so far (a reader checks whether its own fields were fine).
  std::size_t count() const { return count_; }
  Error first() const;

 private:
  struct Entry {
    int line;
    std::string message;
  };
  static void keep(std::optional<Entry>& first, int line, std::string message);

  std::string source_;
  std::optional<Entry> first_;
  std::optional<Entry> first_missing_;
  std::size_t count_ = 0;
};

struct TextPosition {
  int line = 1;    // from 1
  int column = 1;  // from 1, in characters
};

// The first byte outside the ASCII range that is not inside a TOML comment (a UTF-8 byte order
// mark at the very start is allowed), or nothing. keel refuses such text before toml++ sees it:
// toml++ 3.3 reaches undefined behaviour on some non-ASCII characters where it expects
// whitespace (its issues #190 and #295). A string may still carry UTF-8 through \u escapes.
std::optional<TextPosition> find_non_ascii_outside_comments(std::string_view text);

constexpr std::size_t kMaxNameBytes = 64;

// Whether a cluster or node name is 1 to kMaxNameBytes characters of [A-Za-z0-9._-].
bool valid_name(std::string_view name);

// A name from the file as it may appear in a message: at most 100 bytes, control characters
// (which quoted TOML keys may hold) replaced by '?'.
std::string printable(std::string_view name);

// Edit distance counting insertions, deletions, substitutions and swaps of neighbours as one.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate a misspelt name most likely meant: the nearest within two edits (one for names
// shorter than four characters), or nothing.
std::optional<std::string_view> closest(std::string_view typo,
                                        const std::vector<std::string_view>& candidates);

}  // namespace keel::config::detail
