// Sealing and opening packets (layout and rules in sealed_packet.hpp), and the key file.
//
// Opening checks, in order: length, magic and version (malformed); the AEAD tag over header and
// ciphertext (forged); the sender against the configured nodes (unknown_sender); the sender
// against the node configured at the packet's source address (wrong_address); the replay window
// (replayed). Only a packet that passed all of them changes the window. The sender checks come
// after authentication so that unknown_sender and wrong_address count only authentic packets,
// from a host holding the cluster key that this host's config does not list or places elsewhere:
// a config that differs between hosts, or a captured packet sent again from another address,
// each worth a distinct counter.
#include "io/sealed_packet.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

#include "io/unique_fd.hpp"

namespace keel::io {
namespace {

constexpr std::uint16_t kSealMagic = 0x4b53;  // "KS"
constexpr std::uint8_t kSealVersion = 1;
constexpr std::size_t kHeaderBytes = 2 + 1 + 4 + 8 + 8;
constexpr std::size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr std::size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr std::size_t kWindowCounters = 1024;
constexpr std::size_t kKeyHexDigits = 2 * kClusterKeyBytes;
constexpr std::size_t kMaxKeyFileBytes = 256;  // a key file is 65 bytes; more is not a key file

static_assert(kClusterKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(kSealOverheadBytes == kHeaderBytes + kNonceBytes + kTagBytes);

void ensure_sodium() { KEEL_ASSERT(sodium_init() >= 0); }

struct Header {
  std::uint16_t magic = 0;
  std::uint8_t version = 0;
  NodeId sender = kNoNode;
  std::uint64_t epoch = 0;
  std::uint64_t counter = 0;
};

void encode_header(const Header& header, Bytes& out) {
  ByteWriter writer(out);
  writer.u16(header.magic);
  writer.u8(header.version);
  writer.u32(header.sender);
  writer.u64(header.epoch);
  writer.u64(header.counter);
  KEEL_ASSERT(writer.size() == kHeaderBytes);
}

Header decode_header(std::span<const std::uint8_t> bytes) {
  KEEL_ASSERT(bytes.size() >= kHeaderBytes);
  ByteReader reader(bytes.first(kHeaderBytes));
  Header header;
  header.magic = reader.u16();
  header.version = reader.u8();
  header.sender = reader.u32();
  header.epoch = reader.u64();
  header.counter = reader.u64();
  KEEL_ASSERT(reader.at_end());
  return header;
}

}  // namespace

PacketSealer::PacketSealer(const ClusterKey& key, NodeId self, std::uint64_t epoch)
    : key_(key), self_(self), epoch_(epoch) {
  ensure_sodium();
  KEEL_ASSERT(self != kNoNode);
  static_assert(kNoncePrefixBytes + 8 == kNonceBytes);
  randombytes_buf(nonce_prefix_.data(), nonce_prefix_.size());
}

Bytes PacketSealer::seal(std::span<const std::uint8_t> plaintext) {
  Bytes out;
  seal_into(plaintext, out);
  return out;
}

void PacketSealer::seal_into(std::span<const std::uint8_t> plaintext, Bytes& out) {
  KEEL_ASSERT(counter_ < std::numeric_limits<std::uint64_t>::max());
  ++counter_;
  out.clear();
  out.reserve(kSealOverheadBytes + plaintext.size());
  encode_header(Header{kSealMagic, kSealVersion, self_, epoch_, counter_}, out);
  out.resize(kHeaderBytes + kNonceBytes + plaintext.size() + kTagBytes);
  // The nonce: this sealer's random prefix, then the packet's counter (unique per packet).
  std::uint8_t* nonce = out.data() + kHeaderBytes;
  std::memcpy(nonce, nonce_prefix_.data(), nonce_prefix_.size());
  for (std::size_t i = 0; i < 8; ++i) {
    nonce[nonce_prefix_.size() + i] = static_cast<std::uint8_t>(counter_ >> (56 - 8 * i));
  }
  unsigned long long sealed_bytes = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + kNonceBytes, &sealed_bytes, plaintext.data(),
                                             plaintext.size(), out.data(), kHeaderBytes, nullptr,
                                             nonce, key_.data());
  KEEL_ASSERT(sealed_bytes == plaintext.size() + kTagBytes);
}

PacketOpener::PacketOpener(const ClusterKey& key, std::vector<NodeId> known)
    : key_(key), known_(std::move(known)) {
  ensure_sodium();
  std::sort(known_.begin(), known_.end());
}

namespace {

using Bitmap = std::array<std::uint64_t, 16>;
static_assert(std::tuple_size_v<Bitmap> * 64 == kWindowCounters);

bool test_bit(const Bitmap& bits, std::uint64_t index) {
  KEEL_ASSERT(index < kWindowCounters);
  return (bits[index / 64] >> (index % 64)) & 1u;
}

void set_bit(Bitmap& bits, std::uint64_t index) {
  KEEL_ASSERT(index < kWindowCounters);
  bits[index / 64] |= std::uint64_t{1} << (index % 64);
}

// Moves every bit `shift` places up (towards older counters); bits past the end fall off.
void shift_up(Bitmap& bits, std::uint64_t shift) {
  if (shift >= kWindowCounters) {
    bits.fill(0);
    return;
  }
  const std::size_t words = shift / 64;
  const unsigned offset = shift % 64;
  for (std::size_t i = bits.size(); i-- > 0;) {
    std::uint64_t word = i >= words ? bits[i - words] << offset : 0;
    if (offset != 0 && i >= words + 1) word |= bits[i - words - 1] >> (64 - offset);
    bits[i] = word;
  }
}

// Admits a sender's (epoch, counter) into its window, or says why the packet is a replay.
// (A template only because the window type is private to PacketOpener.)
template <typename Window>
std::optional<std::string> admit(Window& window, NodeId sender, std::uint64_t epoch,
                                 std::uint64_t counter) {
  if (epoch < window.epoch) {
    return fmt::format("replayed packet from node {}: epoch {} is older than its epoch {}", sender,
                       epoch, window.epoch);
  }
  if (epoch > window.epoch || window.floor_only) {  // the sender restarted: a fresh window
    window.floor_only = false;
    window.epoch = epoch;
    window.highest = counter;
    window.seen.fill(0);
    return std::nullopt;
  }
  if (counter > window.highest) {
    const std::uint64_t shift = counter - window.highest;
    shift_up(window.seen, shift);
    if (shift <= kWindowCounters) set_bit(window.seen, shift - 1);  // the old highest
    window.highest = counter;
    return std::nullopt;
  }
  const std::uint64_t age = window.highest - counter;  // 0 is the highest itself
  if (age > kWindowCounters) {
    return fmt::format("replayed packet from node {}: counter {} is below the window ({} to {})",
                       sender, counter, window.highest - kWindowCounters, window.highest);
  }
  if (age == 0 || test_bit(window.seen, age - 1)) {
    return fmt::format("replayed packet from node {}: counter {} was seen before", sender, counter);
  }
  set_bit(window.seen, age - 1);
  return std::nullopt;
}

}  // namespace

void PacketOpener::set_epoch_floor(NodeId sender, std::uint64_t epoch) {
  ReplayWindow& window = windows_[sender];
  if (window.epoch > epoch) return;
  window = ReplayWindow{epoch, 0, {}, /*floor_only=*/true};
}

Result<OpenedPacket> PacketOpener::open(std::span<const std::uint8_t> sealed, NodeId source_node) {
  if (sealed.size() < kSealOverheadBytes) {
    ++stats_.malformed;
    return Error{fmt::format("malformed packet: {} bytes, shorter than the {}-byte seal",
                             sealed.size(), kSealOverheadBytes)};
  }
  const Header header = decode_header(sealed);
  if (header.magic != kSealMagic || header.version != kSealVersion) {
    ++stats_.malformed;
    return Error{fmt::format("malformed packet: magic {:#06x} version {} (want {:#06x} version {})",
                             header.magic, header.version, kSealMagic, kSealVersion)};
  }
  const auto nonce = sealed.subspan(kHeaderBytes, kNonceBytes);
  const auto ciphertext = sealed.subspan(kHeaderBytes + kNonceBytes);
  OpenedPacket opened{header.sender, Bytes(ciphertext.size() - kTagBytes)};
  unsigned long long plain_bytes = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          opened.plaintext.data(), &plain_bytes, nullptr, ciphertext.data(), ciphertext.size(),
          sealed.data(), kHeaderBytes, nonce.data(), key_.data()) != 0) {
    ++stats_.forged;
    return Error{
        fmt::format("forged packet claiming sender {}: authentication failed (wrong "
                    "cluster key or altered bytes)",
                    header.sender)};
  }
  KEEL_ASSERT(plain_bytes == opened.plaintext.size());
  if (!std::binary_search(known_.begin(), known_.end(), header.sender)) {
    ++stats_.unknown_sender;
    return Error{
        fmt::format("packet from node {}, which is not in the configuration", header.sender)};
  }
  if (header.sender != source_node) {
    ++stats_.wrong_address;
    return Error{fmt::format("packet from node {} sent from {}", header.sender,
                             source_node == kNoNode
                                 ? std::string("an address no node has")
                                 : fmt::format("node {}'s address", source_node))};
  }
  const auto window = windows_.find(header.sender);
  if (window == windows_.end()) {
    windows_.emplace(header.sender, ReplayWindow{header.epoch, header.counter, {}});
    opened.new_epoch = true;
  } else {
    const bool raised = header.epoch > window->second.epoch;
    if (auto replay = admit(window->second, header.sender, header.epoch, header.counter)) {
      ++stats_.replayed;
      return Error{std::move(*replay)};
    }
    opened.new_epoch = raised;
  }
  opened.epoch = header.epoch;
  ++stats_.opened;
  return opened;
}

namespace {

std::string mode_text(mode_t mode) { return fmt::format("{:04o}", mode & 07777); }

Result<Ok> check_key_file_stat(const std::string& path, const struct stat& info) {
  if (!S_ISREG(info.st_mode)) return Error{fmt::format("key file {} is not a regular file", path)};
  const mode_t others = info.st_mode & 077;
  if (others == 0) return Ok{};
  const char* what = (others & 044) != 0   ? "readable"
                     : (others & 022) != 0 ? "writable"
                                           : "accessible";
  return Error{fmt::format("key file {} is {} by others (mode {}); run chmod 600 on it", path, what,
                           mode_text(info.st_mode))};
}

Result<ClusterKey> decode_key(const std::string& path, std::string& text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  const auto bad_digit = std::find_if(text.begin(), text.end(), [](char c) {
    return !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
  });
  if (bad_digit != text.end() || text.size() != kKeyHexDigits) {
    return Error{fmt::format(
        "key file {} must hold {} hex digits and a newline (as written by "
        "keel keygen); it holds {} characters{}",
        path, kKeyHexDigits, text.size(), bad_digit != text.end() ? ", not all hex digits" : "")};
  }
  ClusterKey key{};
  std::size_t key_bytes = 0;
  const int decoded = sodium_hex2bin(key.data(), key.size(), text.data(), text.size(), nullptr,
                                     &key_bytes, nullptr);
  KEEL_ASSERT(decoded == 0 && key_bytes == kClusterKeyBytes);
  return key;
}

Result<Ok> write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t wrote = ::write(fd, data, size);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) return Error{std::strerror(errno)};
    data += wrote;
    size -= static_cast<std::size_t>(wrote);
  }
  return Ok{};
}

// Writes, flushes and closes a new key file; the caller removes it on failure.
Result<Ok> fill_key_file(UniqueFd& fd) {
  ClusterKey key{};
  randombytes_buf(key.data(), key.size());
  std::array<char, kKeyHexDigits + 1> hex{};
  sodium_bin2hex(hex.data(), hex.size(), key.data(), key.size());
  sodium_memzero(key.data(), key.size());
  hex.back() = '\n';  // replaces the terminating NUL
  auto written = write_all(fd.get(), hex.data(), hex.size());
  sodium_memzero(hex.data(), hex.size());
  if (!written) return written;
  if (::fchmod(fd.get(), 0600) != 0 || ::fsync(fd.get()) != 0 || fd.close() != 0) {
    return Error{std::strerror(errno)};
  }
  return Ok{};
}

// Makes the new file's directory entry durable too.
void sync_parent(const std::string& path) {
  const auto slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) ::fsync(dir.get());
}

}  // namespace

Result<ClusterKey> read_key_file(const std::string& path) {
  ensure_sodium();
  // O_NONBLOCK: a FIFO put in the key's place must not hang the agent; it is refused below.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) {
    if (errno == ENOENT) {
      return Error{
          fmt::format("key file {} does not exist; create it with keel keygen {} and copy "
                      "it to every host",
                      path, path)};
    }
    return Error{fmt::format("cannot open key file {}: {}", path, std::strerror(errno))};
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return Error{fmt::format("cannot stat key file {}: {}", path, std::strerror(errno))};
  }
  if (auto checked = check_key_file_stat(path, info); !checked) return checked.error();
  std::string text(kMaxKeyFileBytes + 1, '\0');
  std::size_t size = 0;
  while (size < text.size()) {
    const ssize_t got = ::read(fd.get(), text.data() + size, text.size() - size);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      return Error{fmt::format("cannot read key file {}: {}", path, std::strerror(errno))};
    }
    if (got == 0) break;
    size += static_cast<std::size_t>(got);
  }
  text.resize(size);
  auto key = decode_key(path, text);
  sodium_memzero(text.data(), text.size());
  return key;
}

Result<Ok> write_new_key_file(const std::string& path) {
  ensure_sodium();
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) {
    if (errno == EEXIST) {
      return Error{
          fmt::format("key file {} exists; remove it first to make a new key (every host "
                      "must then get the new key)",
                      path)};
    }
    return Error{fmt::format("cannot create key file {}: {}", path, std::strerror(errno))};
  }
  if (auto filled = fill_key_file(fd); !filled) {
    ::unlink(path.c_str());
    return Error{fmt::format("cannot write key file {}: {}", path, filled.error().message)};
  }
  sync_parent(path);
  return Ok{};
}

}  // namespace keel::io
