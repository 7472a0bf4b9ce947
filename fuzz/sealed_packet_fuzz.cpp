// libFuzzer target for PacketOpener::open().
//
// Every input is first opened as a packet under a fixed key: open() must never crash, must count
// each packet exactly once, and can only accept what has the sealed size. The first byte then
// picks one of two extra checks:
//   % 4 == 1: the rest is sealed, must open to exactly itself, once; a copy with one byte altered
//             must be refused.
//   % 4 == 2: the rest is a list of (sender, epoch, counter) records, each sealed here (with the
//             documented layout, independently of PacketSealer) and opened, as from its sender's
//             address or (the epoch byte's top bit) another node's; whether each is accepted
//             must match a plain model of the replay rules, where a packet from another node's
//             address is refused and changes nothing.
// Seeds: fuzz/corpus/sealed_packet/.
#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <span>

#include "io/sealed_packet.hpp"

namespace {

using keel::Bytes;
using keel::NodeId;
using keel::io::ClusterKey;
using keel::io::PacketOpener;
using keel::io::PacketSealer;

constexpr std::uint64_t kEpochBase = 1'700'000'000'000'000;
constexpr std::uint64_t kWindow = 1024;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "sealed_packet_fuzz: %s\n", what);
  std::abort();
}

ClusterKey fuzz_key() {
  ClusterKey key;
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(0xa0 + i);
  return key;
}

std::uint64_t total(const keel::io::OpenStats& s) {
  return s.opened + s.malformed + s.forged + s.replayed + s.unknown_sender + s.wrong_address;
}

void open_raw(std::span<const std::uint8_t> input) {
  PacketOpener opener(fuzz_key(), {1, 2, 3});
  auto opened = opener.open(input, 1);
  if (total(opener.stats()) != 1) fail("a packet was not counted exactly once");
  if (opened.ok()) {
    if (opened.value().plaintext.size() + keel::io::kSealOverheadBytes != input.size()) {
      fail("accepted a packet whose size does not match its plaintext");
    }
  } else if (opened.error().message.empty()) {
    fail("refusal without a reason");
  }
}

void round_trip(std::span<const std::uint8_t> plaintext) {
  PacketSealer sealer(fuzz_key(), 2, kEpochBase);
  PacketOpener opener(fuzz_key(), {1, 2, 3});
  const Bytes sealed = sealer.seal(plaintext);
  auto opened = opener.open(sealed, 2);
  if (!opened.ok()) fail("a sealed packet did not open");
  if (opened.value().sender != 2) fail("wrong sender");
  if (opened.value().plaintext != Bytes(plaintext.begin(), plaintext.end())) {
    fail("opened plaintext differs from the sealed one");
  }
  if (opener.open(sealed, 2).ok()) fail("a replayed packet was accepted");
  Bytes altered = sealed;
  altered[plaintext.size() % altered.size()] ^= 0x80;
  PacketOpener fresh(fuzz_key(), {1, 2, 3});
  if (fresh.open(altered, 2).ok()) fail("an altered packet was accepted");
}

// Seals with the documented layout directly, so that any counter can be chosen.
Bytes seal_with(NodeId sender, std::uint64_t epoch, std::uint64_t counter) {
  Bytes out;
  keel::ByteWriter writer(out);
  writer.u16(0x4b53);
  writer.u8(1);
  writer.u32(sender);
  writer.u64(epoch);
  writer.u64(counter);
  const std::size_t header = out.size();
  out.resize(header + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
             crypto_aead_xchacha20poly1305_ietf_ABYTES);
  std::uint8_t* nonce = out.data() + header;
  randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  const ClusterKey key = fuzz_key();
  crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                             nullptr, nullptr, 0, out.data(), header, nullptr,
                                             nonce, key.data());
  return out;
}

// The replay rules as plainly as possible: every counter seen in the current epoch is kept.
struct ModelWindow {
  std::uint64_t epoch = 0;
  std::uint64_t highest = 0;
  std::set<std::uint64_t> seen;
};

bool model_accepts(std::map<NodeId, ModelWindow>& windows, NodeId sender, std::uint64_t epoch,
                   std::uint64_t counter) {
  auto [it, fresh] = windows.try_emplace(sender);
  ModelWindow& w = it->second;
  if (!fresh && epoch < w.epoch) return false;
  if (fresh || epoch > w.epoch) {
    w = ModelWindow{epoch, counter, {counter}};
    return true;
  }
  if (w.seen.count(counter) != 0) return false;
  if (counter < w.highest && w.highest - counter > kWindow) return false;
  w.seen.insert(counter);
  w.highest = std::max(w.highest, counter);
  return true;
}

void replay_model(std::span<const std::uint8_t> records) {
  PacketOpener opener(fuzz_key(), {1, 2, 3});
  std::map<NodeId, ModelWindow> model;
  for (std::size_t i = 0; i + 4 <= records.size() && i < 4 * 256; i += 4) {
    const NodeId sender = 1 + records[i] % 3;
    const std::uint64_t epoch = kEpochBase + records[i + 1] % 3;
    const std::uint64_t counter = std::uint64_t{records[i + 2]} << 8 | records[i + 3];
    const bool elsewhere = (records[i + 1] & 0x80) != 0;
    const NodeId source = elsewhere ? 1 + sender % 3 : sender;  // another node's address
    const bool accepted = opener.open(seal_with(sender, epoch, counter), source).ok();
    if (accepted != (!elsewhere && model_accepts(model, sender, epoch, counter))) {
      fail("the replay window disagrees with the model");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  open_raw(input);
  if (size == 0) return 0;
  if (data[0] % 4 == 1) round_trip(input.subspan(1));
  if (data[0] % 4 == 2) replay_model(input.subspan(1));
  return 0;
}
