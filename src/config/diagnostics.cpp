#include "config/diagnostics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string>

namespace keel::config::detail {
namespace {

constexpr std::size_t kMaxGuessedNameBytes = 100;  // longer than any key; spares quadratic work

// Problems without a line come after those with one.
bool precedes(int line, int other) {
  if (line == kNoLine) return false;
  return other == kNoLine || line < other;
}

// Where find_non_ascii_outside_comments() is in the text. Strings are tracked only so that a '#'
// inside one is not taken for a comment.
enum class Lexeme { plain, comment, basic, literal, multiline_basic, multiline_literal };

bool starts_with_at(std::string_view text, std::size_t at, std::string_view prefix) {
  return text.substr(at, prefix.size()) == prefix;
}

// Advances over one byte (or an escape pair, or a delimiter) from `at`, returning the next
// position and updating the lexeme.
std::size_t step(std::string_view text, std::size_t at, Lexeme& lexeme) {
  const char c = text[at];
  switch (lexeme) {
    case Lexeme::plain:
      if (c == '#') lexeme = Lexeme::comment;
      if (starts_with_at(text, at, R"(""")")) {
        lexeme = Lexeme::multiline_basic;
        return at + 3;
      }
      if (starts_with_at(text, at, "'''")) {
        lexeme = Lexeme::multiline_literal;
        return at + 3;
      }
      if (c == '"') lexeme = Lexeme::basic;
      if (c == '\'') lexeme = Lexeme::literal;
      return at + 1;
    case Lexeme::comment:
      if (c == '\n') lexeme = Lexeme::plain;
      return at + 1;
    case Lexeme::basic:
    case Lexeme::literal:
      if (c == '\n' || c == (lexeme == Lexeme::basic ? '"' : '\'')) lexeme = Lexeme::plain;
      if (c == '\\' && lexeme == Lexeme::basic && at + 1 < text.size() && text[at + 1] != '\n') {
        return at + 2;
      }
      return at + 1;
    case Lexeme::multiline_basic:
    case Lexeme::multiline_literal: {
      const bool basic = lexeme == Lexeme::multiline_basic;
      if (basic && c == '\\') return at + 2;
      const char quote = basic ? '"' : '\'';
      if (!starts_with_at(text, at, std::string(3, quote))) return at + 1;
      lexeme = Lexeme::plain;
      std::size_t end = at + 3;  // up to two more quotes belong to the string
      for (int extra = 0; extra < 2 && end < text.size() && text[end] == quote; ++extra) ++end;
      return end;
    }
  }
  return at + 1;
}

}  // namespace

std::optional<TextPosition> find_non_ascii_outside_comments(std::string_view text) {
  constexpr std::string_view kByteOrderMark = "\xef\xbb\xbf";
  std::size_t at = starts_with_at(text, 0, kByteOrderMark) ? kByteOrderMark.size() : 0;
  Lexeme lexeme = Lexeme::plain;
  TextPosition position;
  while (at < text.size()) {
    const std::size_t next = std::min(step(text, at, lexeme), text.size());
    for (std::size_t i = at; i < next; ++i) {
      const auto byte = static_cast<unsigned char>(text[i]);
      if (byte >= 0x80 && lexeme != Lexeme::comment) return position;
      if (byte == '\n') {
        ++position.line;
        position.column = 1;
      } else if ((byte & 0xc0) != 0x80) {
        ++position.column;
      }
    }
    at = next;
  }
  return std::nullopt;
}

void Problems::keep(std::optional<Entry>& first, int line, std::string message) {
  KEEL_ASSERT(line >= 0);
  if (first && !precedes(line, first->line)) return;
  first = Entry{line, std::move(message)};
}

Error Problems::first() const {
  KEEL_ASSERT(any());
  const Entry& entry = first_ ? *first_ : *first_missing_;
  if (entry.line == kNoLine) return Error{fmt::format("{}: {}", source_, entry.message)};
  return Error{fmt::format("{}:{}: {}", source_, entry.line, entry.message)};
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

std::string printable(std::string_view name) {
  std::string out(name.substr(0, kMaxGuessedNameBytes));
  std::replace_if(
      out.begin(), out.end(), [](char c) { return c < ' ' || c == 0x7f; }, '?');
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::optional<std::string_view> closest(std::string_view typo,
                                        const std::vector<std::string_view>& candidates) {
  if (typo.size() > kMaxGuessedNameBytes) return std::nullopt;
  const std::size_t allowed = typo.size() >= 4 ? 2 : 1;
  std::optional<std::string_view> best;
  std::size_t best_distance = allowed + 1;
  for (auto candidate : candidates) {
    const std::size_t distance = edit_distance(typo, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace keel::config::detail
