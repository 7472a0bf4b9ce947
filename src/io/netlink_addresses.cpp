#include "io/netlink_addresses.hpp"

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>

#include "core/common/assert.hpp"
#include "io/errno_text.hpp"

namespace keel::io {

namespace {

constexpr std::size_t kReceiveBufferBytes = 64 * 1024;   // a dump batch of many addresses
constexpr int kDumpAttempts = 3;                         // retries of an interrupted dump
constexpr std::uint32_t kInfiniteLifetime = 0xffffffff;  // INFINITY_LIFE_TIME in the kernel

// Room for one request: a header, ifaddrmsg or ifinfomsg, and a few small attributes.
struct RequestBuffer {
  alignas(nlmsghdr) std::array<char, 512> bytes{};
  char* data() { return bytes.data(); }
};

std::uint8_t family_of(const asio::ip::address& address) {
  return address.is_v4() ? AF_INET : AF_INET6;
}

std::uint8_t max_prefix(const asio::ip::address& address) { return address.is_v4() ? 32 : 128; }

// Appends the address bytes as attribute `type`.
void put_address(nlmsghdr* message, std::uint16_t type, const asio::ip::address& address) {
  if (address.is_v4()) {
    const auto bytes = address.to_v4().to_bytes();
    mnl_attr_put(message, type, bytes.size(), bytes.data());
  } else {
    const auto bytes = address.to_v6().to_bytes();
    mnl_attr_put(message, type, bytes.size(), bytes.data());
  }
}

std::optional<asio::ip::address> read_address(const nlattr* attribute, std::uint8_t family) {
  const auto size = mnl_attr_get_payload_len(attribute);
  const auto* data = static_cast<const unsigned char*>(mnl_attr_get_payload(attribute));
  if (family == AF_INET && size == 4) {
    asio::ip::address_v4::bytes_type bytes;
    std::memcpy(bytes.data(), data, bytes.size());
    return asio::ip::address_v4(bytes);
  }
  if (family == AF_INET6 && size == 16) {
    asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), data, bytes.size());
    return asio::ip::address_v6(bytes);
  }
  return std::nullopt;
}

// Attributes of one message, indexed by type (types beyond the table are ignored).
template <std::size_t N>
struct AttributeTable {
  std::array<const nlattr*, N> at{};

  static int collect(const nlattr* attribute, void* data) {
    auto* table = static_cast<AttributeTable*>(data);
    const auto type = mnl_attr_get_type(attribute);
    if (type < N) table->at[type] = attribute;
    return MNL_CB_OK;
  }
};

std::optional<InterfaceAddress> decode_address(const nlmsghdr* message) {
  if (message->nlmsg_type != RTM_NEWADDR) return std::nullopt;
  if (mnl_nlmsg_get_payload_len(message) < sizeof(ifaddrmsg)) return std::nullopt;
  const auto* header = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(message));
  if (header->ifa_family != AF_INET && header->ifa_family != AF_INET6) return std::nullopt;
  AttributeTable<__IFA_MAX> table;
  if (mnl_attr_parse(message, sizeof(ifaddrmsg), AttributeTable<__IFA_MAX>::collect, &table) !=
      MNL_CB_OK) {
    return std::nullopt;
  }
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on a point-to-point link.
  const nlattr* own = table.at[IFA_LOCAL] ? table.at[IFA_LOCAL] : table.at[IFA_ADDRESS];
  if (own == nullptr) return std::nullopt;
  auto address = read_address(own, header->ifa_family);
  if (!address) return std::nullopt;
  InterfaceAddress entry;
  entry.prefix = IpPrefix{*address, header->ifa_prefixlen};
  entry.interface_index = static_cast<int>(header->ifa_index);
  entry.flags = header->ifa_flags;
  if (table.at[IFA_FLAGS] && mnl_attr_validate(table.at[IFA_FLAGS], MNL_TYPE_U32) == 0) {
    entry.flags = mnl_attr_get_u32(table.at[IFA_FLAGS]);
  }
  if (table.at[IFA_PROTO] && mnl_attr_validate(table.at[IFA_PROTO], MNL_TYPE_U8) == 0) {
    entry.protocol = mnl_attr_get_u8(table.at[IFA_PROTO]);
  }
  if (table.at[IFA_LABEL] && mnl_attr_validate(table.at[IFA_LABEL], MNL_TYPE_NUL_STRING) == 0) {
    entry.label = mnl_attr_get_str(table.at[IFA_LABEL]);
  }
  return entry;
}

// The extended ACK's text (NETLINK_EXT_ACK), if the kernel gave one.
std::string kernel_message(const nlmsghdr* message) {
  if ((message->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return {};
  const auto* error = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(message));
  std::size_t offset = sizeof(nlmsgerr);
  if ((message->nlmsg_flags & NLM_F_CAPPED) == 0) offset += error->msg.nlmsg_len - sizeof(nlmsghdr);
  if (mnl_nlmsg_get_payload_len(message) < offset) return {};
  AttributeTable<NLMSGERR_ATTR_MAX + 1> table;
  mnl_attr_parse(message, static_cast<unsigned>(offset),
                 AttributeTable<NLMSGERR_ATTR_MAX + 1>::collect, &table);
  const nlattr* text = table.at[NLMSGERR_ATTR_MSG];
  if (text == nullptr || mnl_attr_validate(text, MNL_TYPE_NUL_STRING) != 0) return {};
  return mnl_attr_get_str(text);
}

std::string describe_error(int error, const std::string& detail) {
  std::string text;
  switch (error) {
    case EPERM:
    case EACCES:
      text = "not permitted (changing addresses needs CAP_NET_ADMIN)";
      break;
    case ENODEV:
      text = "no such interface";
      break;
    default:
      text = errno_text(error);
  }
  return detail.empty() ? text : text + ": " + detail;
}

}  // namespace

// What one request got back: data messages go to on_message; the ACK's errno lands in error.
struct NetlinkAddresses::Reply {
  std::function<void(const nlmsghdr*)> on_message;
  int error = 0;
  std::string detail;  // the kernel's extended ACK text
  bool interrupted = false;
};

Result<IpPrefix> parse_prefix(const std::string& text) {
  const auto slash = text.find('/');
  if (slash == std::string::npos) return Error{"'" + text + "' has no prefix length (/N)"};
  asio::error_code error;
  const auto address = asio::ip::make_address(text.substr(0, slash), error);
  if (error) return Error{"'" + text + "' is not an IP address with a prefix length"};
  unsigned length = 0;
  const char* first = text.data() + slash + 1;
  const char* last = text.data() + text.size();
  const auto [end, parse_error] = std::from_chars(first, last, length);
  if (first == last || parse_error != std::errc{} || end != last || length > max_prefix(address)) {
    return Error{"'" + text + "' has a bad prefix length"};
  }
  return IpPrefix{address, static_cast<std::uint8_t>(length)};
}

std::string to_string(const IpPrefix& prefix) {
  return prefix.address.to_string() + "/" + std::to_string(prefix.prefix_length);
}

bool kernel_release_at_least(const std::string& release, int major, int minor) {
  int found[2] = {0, 0};
  const char* at = release.data();
  const char* end = release.data() + release.size();
  for (int part = 0; part < 2; ++part) {
    if (part == 1) {
      if (at == end || *at != '.') return false;
      ++at;
    }
    const auto [next, error] = std::from_chars(at, end, found[part]);
    if (error != std::errc{}) return false;
    at = next;
  }
  return found[0] > major || (found[0] == major && found[1] >= minor);
}

Result<std::unique_ptr<NetlinkAddresses>> NetlinkAddresses::open() {
  mnl_socket* socket = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (socket == nullptr) return Error{"cannot open an rtnetlink socket: " + errno_text(errno)};
  std::unique_ptr<NetlinkAddresses> self(new NetlinkAddresses(socket));
  if (mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) < 0) {
    return Error{"cannot bind an rtnetlink socket: " + errno_text(errno)};
  }
  self->port_id_ = mnl_socket_get_portid(socket);
  // Extended ACKs carry the kernel's reason for a refusal; capped ACKs do not echo the request.
  int on = 1;
  mnl_socket_setsockopt(socket, NETLINK_EXT_ACK, &on, sizeof on);
  mnl_socket_setsockopt(socket, NETLINK_CAP_ACK, &on, sizeof on);
  timeval timeout{};
  timeout.tv_sec = kRequestTimeoutMs / 1000;
  timeout.tv_usec = (kRequestTimeoutMs % 1000) * 1000;
  if (::setsockopt(mnl_socket_get_fd(socket), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) !=
      0) {
    return Error{"cannot set the rtnetlink receive timeout: " + errno_text(errno)};
  }
  return self;
}

NetlinkAddresses::NetlinkAddresses(mnl_socket* socket)
    : socket_(socket), port_id_(0), sequence_(0), buffer_(kReceiveBufferBytes) {}

NetlinkAddresses::~NetlinkAddresses() { mnl_socket_close(socket_); }

Result<Ok> NetlinkAddresses::request(void* raw, Reply& reply) {
  auto* message = static_cast<nlmsghdr*>(raw);
  const std::uint32_t sequence = ++sequence_;
  message->nlmsg_seq = sequence;
  if (mnl_socket_sendto(socket_, message, message->nlmsg_len) < 0) {
    return Error{"cannot send an rtnetlink request: " + errno_text(errno)};
  }
  for (;;) {
    const ssize_t got = mnl_socket_recvfrom(socket_, buffer_.data(), buffer_.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return Error{"rtnetlink did not answer within " + std::to_string(kRequestTimeoutMs) +
                     " ms"};
      }
      return Error{"cannot receive from rtnetlink: " + errno_text(errno)};
    }
    int left = static_cast<int>(got);
    for (auto* part = reinterpret_cast<const nlmsghdr*>(buffer_.data()); mnl_nlmsg_ok(part, left);
         part = mnl_nlmsg_next(part, &left)) {
      // Late answers to an earlier request that timed out carry an older sequence number.
      if (!mnl_nlmsg_seq_ok(part, sequence) || !mnl_nlmsg_portid_ok(part, port_id_)) continue;
      if (part->nlmsg_flags & NLM_F_DUMP_INTR) reply.interrupted = true;
      if (part->nlmsg_type == NLMSG_ERROR) {
        if (mnl_nlmsg_get_payload_len(part) < sizeof(nlmsgerr)) {
          return Error{"rtnetlink sent a truncated acknowledgement"};
        }
        const auto* error = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(part));
        reply.error = -error->error;
        if (reply.error != 0) reply.detail = kernel_message(part);
        return Ok{};
      }
      if (part->nlmsg_type == NLMSG_DONE) return Ok{};
      if (part->nlmsg_type >= NLMSG_MIN_TYPE && reply.on_message) reply.on_message(part);
    }
  }
}

// One interface as RTM_GETLINK reports it.
struct NetlinkAddresses::Link {
  int index = 0;
  std::string name;
};

Result<NetlinkAddresses::Link> NetlinkAddresses::get_link(int interface_index,
                                                          const std::string& name,
                                                          const std::string& which) {
  RequestBuffer storage;
  nlmsghdr* message = mnl_nlmsg_put_header(storage.data());
  message->nlmsg_type = RTM_GETLINK;
  message->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  auto* link = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(message, sizeof(ifinfomsg)));
  link->ifi_family = AF_UNSPEC;
  link->ifi_index = interface_index;
  if (!name.empty()) mnl_attr_put_strz(message, IFLA_IFNAME, name.c_str());
  Link found;
  Reply reply;
  reply.on_message = [&found](const nlmsghdr* part) {
    if (part->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(part) < sizeof(ifinfomsg)) {
      return;
    }
    found.index = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(part))->ifi_index;
    AttributeTable<IFLA_IFNAME + 1> table;
    if (mnl_attr_parse(part, sizeof(ifinfomsg), AttributeTable<IFLA_IFNAME + 1>::collect, &table) !=
        MNL_CB_OK) {
      return;
    }
    const nlattr* text = table.at[IFLA_IFNAME];
    if (text != nullptr && mnl_attr_validate(text, MNL_TYPE_NUL_STRING) == 0) {
      found.name = mnl_attr_get_str(text);
    }
  };
  if (auto sent = request(message, reply); !sent) return sent.error();
  if (reply.error != 0) return Error{which + ": " + describe_error(reply.error, reply.detail)};
  return found;
}

Result<int> NetlinkAddresses::interface_index(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Error{"'" + name + "' is not an interface name"};
  }
  const std::string which = "interface '" + name + "'";
  auto found = get_link(0, name, which);
  if (!found) return found.error();
  if (found.value().index <= 0) return Error{which + ": rtnetlink returned no index"};
  return found.value().index;
}

Result<std::string> NetlinkAddresses::interface_name(int interface_index) {
  const std::string which = "interface " + std::to_string(interface_index);
  auto found = get_link(interface_index, "", which);
  if (!found) return found.error();
  if (found.value().name.empty()) return Error{which + ": rtnetlink returned no name"};
  return found.value().name;
}

Result<Ok> NetlinkAddresses::change(int message_type, int interface_index, const IpPrefix& prefix,
                                    Reply& reply) {
  KEEL_ASSERT(message_type == RTM_NEWADDR || message_type == RTM_DELADDR);
  if (prefix.prefix_length > max_prefix(prefix.address)) {
    return Error{to_string(prefix) + ": bad prefix length"};
  }
  RequestBuffer storage;
  nlmsghdr* message = mnl_nlmsg_put_header(storage.data());
  message->nlmsg_type = static_cast<std::uint16_t>(message_type);
  message->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  if (message_type == RTM_NEWADDR) message->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
  auto* header = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(message, sizeof(ifaddrmsg)));
  header->ifa_family = family_of(prefix.address);
  header->ifa_prefixlen = prefix.prefix_length;
  header->ifa_scope = RT_SCOPE_UNIVERSE;
  header->ifa_index = static_cast<std::uint32_t>(interface_index);
  if (prefix.address.is_v4()) put_address(message, IFA_LOCAL, prefix.address);
  put_address(message, IFA_ADDRESS, prefix.address);
  if (message_type == RTM_NEWADDR) {
    mnl_attr_put_u8(message, IFA_PROTO, kKeelAddressProtocol);
    if (prefix.address.is_v6()) {
      // No duplicate address detection: placement already gave this address to exactly one
      // host. With DAD the address would stay tentative (unusable, not announced) for a second
      // or more after a takeover, and during a planned move, where the new holder announces
      // before the old one releases, DAD would see the old holder and fail the address for good.
      header->ifa_flags = IFA_F_NODAD;
      mnl_attr_put_u32(message, IFA_FLAGS, IFA_F_NODAD);
      // Deprecated from the start (preferred lifetime 0, valid for ever): source address
      // selection passes it over for the host's own address (RFC 6724 rule 3), so none of this
      // host's own connections leave from an address that may move to another host at any
      // moment, while connections to it are accepted as usual.
      ifa_cacheinfo lifetimes{};
      lifetimes.ifa_prefered = 0;
      lifetimes.ifa_valid = kInfiniteLifetime;
      mnl_attr_put(message, IFA_CACHEINFO, sizeof lifetimes, &lifetimes);
    }
  }
  return request(message, reply);
}

Result<AddOutcome> NetlinkAddresses::add(int interface_index, const IpPrefix& prefix) {
  Reply reply;
  if (auto sent = change(RTM_NEWADDR, interface_index, prefix, reply); !sent) return sent.error();
  if (reply.error == 0) return AddOutcome::kAdded;
  if (reply.error == EEXIST) return AddOutcome::kAlreadyPresent;
  return Error{"cannot add " + to_string(prefix) + " to interface " +
               std::to_string(interface_index) + ": " + describe_error(reply.error, reply.detail)};
}

Result<DeleteOutcome> NetlinkAddresses::remove(int interface_index, const IpPrefix& prefix) {
  Reply reply;
  if (auto sent = change(RTM_DELADDR, interface_index, prefix, reply); !sent) return sent.error();
  if (reply.error == 0) return DeleteOutcome::kDeleted;
  // IPv4 and IPv6 both answer EADDRNOTAVAIL for an address that is not there.
  if (reply.error == EADDRNOTAVAIL || reply.error == ENOENT || reply.error == ESRCH) {
    return DeleteOutcome::kAlreadyGone;
  }
  return Error{"cannot delete " + to_string(prefix) + " from interface " +
               std::to_string(interface_index) + ": " + describe_error(reply.error, reply.detail)};
}

Result<std::vector<InterfaceAddress>> NetlinkAddresses::list(int interface_index) {
  auto all = list_all();
  if (!all) return all.error();
  std::vector<InterfaceAddress> found = std::move(all).value();
  std::erase_if(found, [interface_index](const InterfaceAddress& entry) {
    return entry.interface_index != interface_index;
  });
  return found;
}

Result<std::vector<InterfaceAddress>> NetlinkAddresses::list_all() {
  for (int attempt = 0; attempt < kDumpAttempts; ++attempt) {
    RequestBuffer storage;
    nlmsghdr* message = mnl_nlmsg_put_header(storage.data());
    message->nlmsg_type = RTM_GETADDR;
    message->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    auto* header = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(message, sizeof(ifaddrmsg)));
    header->ifa_family = AF_UNSPEC;
    std::vector<InterfaceAddress> found;
    Reply reply;
    reply.on_message = [&found](const nlmsghdr* part) {
      if (auto entry = decode_address(part)) found.push_back(*entry);
    };
    if (auto sent = request(message, reply); !sent) return sent.error();
    if (reply.error != 0) {
      return Error{"cannot list addresses: " + describe_error(reply.error, reply.detail)};
    }
    if (!reply.interrupted) return found;
  }
  return Error{"cannot list addresses: the dump was interrupted by changes " +
               std::to_string(kDumpAttempts) + " times"};
}

Result<AddOutcome> NetlinkAddresses::add(const std::string& interface, const IpPrefix& prefix) {
  auto index = interface_index(interface);
  if (!index) return index.error();
  auto added = add(index.value(), prefix);
  if (!added) return Error{added.error().message + " ('" + interface + "')"};
  return added;
}

Result<DeleteOutcome> NetlinkAddresses::remove(const std::string& interface,
                                               const IpPrefix& prefix) {
  auto index = interface_index(interface);
  if (!index) return index.error();
  auto removed = remove(index.value(), prefix);
  if (!removed) return Error{removed.error().message + " ('" + interface + "')"};
  return removed;
}

Result<std::vector<InterfaceAddress>> NetlinkAddresses::list(const std::string& interface) {
  auto index = interface_index(interface);
  if (!index) return index.error();
  return list(index.value());
}

Result<bool> NetlinkAddresses::mark_supported(int interface_index, const IpPrefix& probe) {
  auto added = add(interface_index, probe);
  if (!added) return added.error();
  auto listed = list(interface_index);
  std::optional<bool> marked;
  if (listed) {
    for (const InterfaceAddress& entry : listed.value()) {
      if (entry.prefix.address == probe.address) marked = entry.keel_owned();
    }
  }
  if (added.value() == AddOutcome::kAdded) {
    if (auto removed = remove(interface_index, probe); !removed) return removed.error();
  }
  if (!listed) return listed.error();
  if (!marked) return Error{"the probe address " + to_string(probe) + " did not show in a dump"};
  if (added.value() == AddOutcome::kAlreadyPresent && !*marked) {
    return Error{"the probe address " + to_string(probe) +
                 " was already present without keel's mark: cannot tell"};
  }
  return *marked;
}

}  // namespace keel::io
