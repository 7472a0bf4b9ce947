#include "agent/control_protocol.hpp"

#include <sodium.h>

#include "core/common/assert.hpp"

namespace keel::agent {

using nlohmann::json;

namespace {

constexpr int kBase64Variant = sodium_base64_VARIANT_ORIGINAL;

// The length of the UTF-8 sequence starting with `lead`, or 0 if it cannot start one.
std::size_t sequence_length(std::uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

// Whether `second` may follow `lead` (excludes overlong forms, surrogates and code points above
// U+10FFFF); later continuation bytes only need to be 10xxxxxx.
bool second_byte_ok(std::uint8_t lead, std::uint8_t second) {
  if (lead == 0xe0) return second >= 0xa0 && second <= 0xbf;
  if (lead == 0xed) return second >= 0x80 && second <= 0x9f;
  if (lead == 0xf0) return second >= 0x90 && second <= 0xbf;
  if (lead == 0xf4) return second >= 0x80 && second <= 0x8f;
  return (second & 0xc0) == 0x80;
}

json members_json(const std::vector<NodeId>& members) { return json(members); }

}  // namespace

std::optional<std::string> request_structure_error(std::string_view line) {
  std::size_t depth = 0;
  std::size_t structure_bytes = 0;
  for (std::size_t at = 0; at < line.size(); ++at) {
    const char c = line[at];
    if (c == '"') {
      // To the closing quote. An escape's second character never closes the string; the rest of
      // an escape (\uXXXX) holds no quote or backslash.
      for (++at; at < line.size() && line[at] != '"'; ++at) {
        if (line[at] == '\\') ++at;
      }
      continue;
    }
    if (++structure_bytes > kMaxRequestStructureBytes) {
      return "a request may hold at most " + std::to_string(kMaxRequestStructureBytes) +
             " bytes outside its strings";
    }
    if (c == '[' || c == '{') {
      if (++depth > kMaxRequestDepth) {
        return "a request may nest arrays and objects at most " + std::to_string(kMaxRequestDepth) +
               " deep";
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // more closings than openings: the parser refuses the line at the first
    }
  }
  return std::nullopt;
}

std::string to_line(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json ok_reply() { return json{{"ok", true}}; }

json error_reply(const std::string& message) { return json{{"ok", false}, {"error", message}}; }

json view_event(const ring::View& view) {
  json event{{"event", "view"},
             {"kind", view.regular() ? "regular" : "transitional"},
             {"ring", to_string(view.ring)}};
  event["previous_ring"] =
      view.previous_ring.valid() ? json(to_string(view.previous_ring)) : json(nullptr);
  event["members"] = members_json(view.members);
  return event;
}

json group_view_event(const ring::GroupView& view) {
  return json{{"event", "group_view"},
              {"group", view.group},
              {"members", members_json(view.members)},
              {"joined", members_json(view.joined)},
              {"left", members_json(view.left)}};
}

json message_event(const ring::GroupMessage& message, const ring::DeliveredMessage& carrier) {
  json event{{"event", "message"},       {"group", message.group},
             {"origin", message.origin}, {"ring", to_string(carrier.ring)},
             {"seq", carrier.seq},       {"index", carrier.index},
             {"safe", message.safe}};
  put_payload(event, message.payload);
  return event;
}

std::optional<Bytes> request_payload(const json& request, std::string& error) {
  const auto text = request.find("message");
  const auto encoded = request.find("message_base64");
  if ((text == request.end()) == (encoded == request.end())) {
    error = "give exactly one of \"message\" and \"message_base64\"";
    return std::nullopt;
  }
  if (text != request.end()) {
    if (!text->is_string()) {
      error = "\"message\" must be a string";
      return std::nullopt;
    }
    const std::string& value = text->get_ref<const std::string&>();
    return Bytes(value.begin(), value.end());
  }
  if (!encoded->is_string()) {
    error = "\"message_base64\" must be a string";
    return std::nullopt;
  }
  auto decoded = base64_decode(encoded->get_ref<const std::string&>());
  if (!decoded) error = "\"message_base64\" is not valid base64";
  return decoded;
}

void put_payload(json& object, std::span<const std::uint8_t> payload) {
  if (valid_utf8(payload)) {
    object["message"] = std::string(payload.begin(), payload.end());
  } else {
    object["message_base64"] = base64_encode(payload);
  }
}

std::optional<Bytes> event_payload(const json& event) {
  std::string ignored;
  return request_payload(event, ignored);
}

bool valid_utf8(std::span<const std::uint8_t> bytes) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    const std::size_t length = sequence_length(bytes[i]);
    if (length == 0 || i + length > bytes.size()) return false;
    if (length > 1 && !second_byte_ok(bytes[i], bytes[i + 1])) return false;
    for (std::size_t k = 2; k < length; ++k) {
      if ((bytes[i + k] & 0xc0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

std::string base64_encode(std::span<const std::uint8_t> bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), kBase64Variant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), kBase64Variant);
  KEEL_ASSERT(!out.empty() && out.back() == '\0');
  out.pop_back();
  return out;
}

std::optional<Bytes> base64_decode(const std::string& text) {
  Bytes out(text.size() / 4 * 3 + 3);
  std::size_t length = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &length, &end,
                        kBase64Variant) != 0 ||
      end != text.data() + text.size()) {
    return std::nullopt;
  }
  out.resize(length);
  return out;
}

}  // namespace keel::agent
