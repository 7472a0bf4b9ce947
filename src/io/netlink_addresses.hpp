// NetlinkAddresses: adds, deletes and lists IP addresses on an interface through rtnetlink
// (libmnl, NETLINK_ROUTE), so that floating IPs never depend on running ip(8).
//
// keel's mark: every address keel adds carries IFA_PROTO = kKeelAddressProtocol (Linux 6.1 and
// later keep the byte and report it in dumps). After a restart the agent lists an interface and
// finds the addresses it already holds (marked) and adopts them instead of deleting and re-adding
// them (no flap); marked addresses it should no longer hold are stale and it deletes them; an
// unmarked address is someone else's and keel leaves it alone. On a kernel without IFA_PROTO the
// byte is dropped and nothing reads as keel's: mark_supported() says which (see
// docs/vip-kernel.md).
//
// Requests are synchronous: one request, then its ACK or error matched by sequence number and
// port id (replies to an earlier request that timed out are skipped). rtnetlink answers in
// microseconds; a receive timeout (kRequestTimeoutMs) bounds the wait if it ever does not.
//
// Addresses are idempotent to change: adding one already there reports kAlreadyPresent, and
// deleting one already gone reports kAlreadyGone; neither is an error.
//
// The socket lives in the network namespace of the thread that called open(); interface names
// are resolved through the same socket, so the object may then be used from any one thread.
//
// Thread-safety: none; one thread at a time.
#pragma once

#include <asio/ip/address.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/common/result.hpp"

struct mnl_socket;

namespace keel::io {

// IFA_PROTO value on keel's addresses. The kernel uses 0-3 (IFAPROT_UNSPEC, _KERNEL_LO,
// _KERNEL_RA, _KERNEL_LL); userspace may pick any other byte. 75 is ASCII 'K'.
constexpr std::uint8_t kKeelAddressProtocol = 75;
constexpr int kRequestTimeoutMs = 1000;

// An address with its prefix length, e.g. 198.18.0.10/24 or fd00::10/64.
struct IpPrefix {
  asio::ip::address address;
  std::uint8_t prefix_length = 0;

  bool operator==(const IpPrefix&) const = default;
};

// "198.18.0.10/24" -> IpPrefix; an error names what is wrong.
Result<IpPrefix> parse_prefix(const std::string& text);
std::string to_string(const IpPrefix& prefix);

// One address as a dump reports it.
struct InterfaceAddress {
  IpPrefix prefix;
  int interface_index = 0;
  std::optional<std::uint8_t> protocol;  // IFA_PROTO, when the kernel reported one
  std::uint32_t flags = 0;               // IFA_F_* (IFA_FLAGS when present)
  std::string label;                     // IFA_LABEL (IPv4 only)

  bool keel_owned() const { return protocol == kKeelAddressProtocol; }
};

// Linux 6.1 is the first to keep IFA_PROTO with an address.
constexpr int kMarkKernelMajor = 6;
constexpr int kMarkKernelMinor = 1;

// Whether a kernel release ("6.1.0-18-amd64", as uname(2) gives it) is at least major.minor;
// false when it cannot be read.
bool kernel_release_at_least(const std::string& release, int major, int minor);

enum class AddOutcome { kAdded, kAlreadyPresent };
enum class DeleteOutcome { kDeleted, kAlreadyGone };

class NetlinkAddresses {
 public:
  // Opens and binds an rtnetlink socket in the calling thread's network namespace.
  static Result<std::unique_ptr<NetlinkAddresses>> open();
  ~NetlinkAddresses();
  NetlinkAddresses(const NetlinkAddresses&) = delete;
  NetlinkAddresses& operator=(const NetlinkAddresses&) = delete;

  // The index of interface `name`, or an error if there is none.
  Result<int> interface_index(const std::string& name);

  // Adds `prefix` to the interface, marked as keel's. IPv6 addresses skip duplicate address
  // detection (IFA_F_NODAD) and are deprecated (preferred lifetime 0, so never picked as a source
  // address), see the .cpp. kAlreadyPresent if the address was there (marked or not: list()
  // tells).
  Result<AddOutcome> add(int interface_index, const IpPrefix& prefix);
  Result<AddOutcome> add(const std::string& interface, const IpPrefix& prefix);

  // Deletes `prefix` from the interface; kAlreadyGone if it was not there.
  Result<DeleteOutcome> remove(int interface_index, const IpPrefix& prefix);
  Result<DeleteOutcome> remove(const std::string& interface, const IpPrefix& prefix);

  // Every IPv4 and IPv6 address on the interface.
  Result<std::vector<InterfaceAddress>> list(int interface_index);
  Result<std::vector<InterfaceAddress>> list(const std::string& interface);
  // Every IPv4 and IPv6 address of the namespace, on every interface (one dump).
  Result<std::vector<InterfaceAddress>> list_all();

  // The name of interface `interface_index`, or an error if there is none.
  Result<std::string> interface_name(int interface_index);

  // Whether this kernel keeps keel's mark: adds `probe` to the interface, lists it and deletes
  // it again. The agent asks once at start on an address it is about to take anyway.
  Result<bool> mark_supported(int interface_index, const IpPrefix& probe);

 private:
  explicit NetlinkAddresses(mnl_socket* socket);

  struct Reply;
  struct Link;
  Result<Ok> request(void* message, Reply& reply);
  // Asks for one interface by index, or by `name` when the index is 0; `which` names it in errors.
  Result<Link> get_link(int interface_index, const std::string& name, const std::string& which);
  Result<Ok> change(int message_type, int interface_index, const IpPrefix& prefix, Reply& reply);

  mnl_socket* socket_;
  std::uint32_t port_id_;
  std::uint32_t sequence_;
  std::vector<char> buffer_;
};

}  // namespace keel::io
