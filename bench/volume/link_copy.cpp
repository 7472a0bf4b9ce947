#include "link_copy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <thread>

#include "core/volume/types.hpp"
#include "io/unique_fd.hpp"

namespace keel::bench {
namespace {

constexpr std::size_t kLinkPieceBytes = 1u << 20;
static_assert(kLinkPieceBytes >= volume::kPageAlignedFromBytes);

std::string link_error(const std::string& what) { return what + ": " + std::strerror(errno); }

Result<Ok> enter_netns(const std::string& name) {
  const std::string path = "/run/netns/" + name;
  const io::UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (ns.get() < 0) return Error{link_error("cannot open " + path)};
  if (::setns(ns.get(), CLONE_NEWNET) != 0) return Error{link_error("setns " + path)};
  return Ok{};
}

bool send_all(int socket, const std::byte* bytes, std::size_t length) {
  while (length > 0) {
    const ssize_t sent = ::send(socket, bytes, length, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    bytes += sent;
    length -= static_cast<std::size_t>(sent);
  }
  return true;
}

// The receiving side: listens on an ephemeral port (handing the listening socket, which the
// caller owns from then on, through `listening`), takes one connection, writes what arrives into
// `target` and answers one byte once it is durable.
Result<Ok> receive_into(const LinkCopy& copy, std::promise<int>& listening) {
  auto refuse = [&](Error error) {
    listening.set_value(-1);
    return error;
  };
  if (auto entered = enter_netns(copy.receiver_netns); !entered) return refuse(entered.error());
  const io::UniqueFd file(::open(copy.target.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT));
  if (file.get() < 0) return refuse(Error{link_error("cannot open " + copy.target)});
  sockaddr_in address{};
  address.sin_family = AF_INET;
  if (::inet_pton(AF_INET, copy.receiver_address.c_str(), &address.sin_addr) != 1) {
    return refuse(Error{"not an IPv4 address: " + copy.receiver_address});
  }
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return refuse(Error{link_error("socket")});
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener, 1) != 0) {
    const Error error{link_error("cannot listen on " + copy.receiver_address)};
    ::close(listener);
    return refuse(error);
  }
  listening.set_value(listener);
  const io::UniqueFd connection(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (connection.get() < 0) return Error{link_error("accept")};
  volume::Bytes piece(kLinkPieceBytes);  // page-aligned, as O_DIRECT wants
  for (std::uint64_t done = 0; done < copy.bytes;) {
    const auto want =
        static_cast<std::size_t>(std::min<std::uint64_t>(copy.bytes - done, kLinkPieceBytes));
    const ssize_t got = ::recv(connection.get(), piece.data(), want, MSG_WAITALL);
    if (got != static_cast<ssize_t>(want)) return Error{link_error("receiving a piece")};
    if (::pwrite(file.get(), piece.data(), want, static_cast<off_t>(done)) !=
        static_cast<ssize_t>(want)) {
      return Error{link_error(copy.target + ": write")};
    }
    done += want;
  }
  if (::fdatasync(file.get()) != 0) return Error{link_error(copy.target + ": fdatasync")};
  const std::byte done{1};
  if (!send_all(connection.get(), &done, 1)) return Error{link_error("answering")};
  return Ok{};
}

// The sending side: reads `source` piece by piece and sends it; returns the seconds from the
// connection to the receiver's answer.
Result<double> send_from(const LinkCopy& copy, std::uint16_t port) {
  if (auto entered = enter_netns(copy.sender_netns); !entered) return entered.error();
  const io::UniqueFd file(::open(copy.source.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.get() < 0) return Error{link_error("cannot open " + copy.source)};
  const io::UniqueFd connection(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  ::inet_pton(AF_INET, copy.receiver_address.c_str(), &address.sin_addr);
  volume::Bytes piece(kLinkPieceBytes);  // page-aligned, as O_DIRECT wants
  const auto start = std::chrono::steady_clock::now();
  if (connection.get() < 0 ||
      ::connect(connection.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return Error{link_error("cannot connect to " + copy.receiver_address)};
  }
  for (std::uint64_t done = 0; done < copy.bytes;) {
    const auto want =
        static_cast<std::size_t>(std::min<std::uint64_t>(copy.bytes - done, kLinkPieceBytes));
    if (::pread(file.get(), piece.data(), want, static_cast<off_t>(done)) !=
        static_cast<ssize_t>(want)) {
      return Error{link_error("reading " + copy.source)};
    }
    if (!send_all(connection.get(), piece.data(), want)) return Error{link_error("sending")};
    done += want;
  }
  char answer = 0;
  if (::recv(connection.get(), &answer, 1, MSG_WAITALL) != 1) {
    return Error{"the receiver did not confirm the copy"};
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Result<double> link_copy_once(const LinkCopy& copy) {
  std::promise<int> listening;
  std::future<int> listener_made = listening.get_future();
  Result<Ok> received = Ok{};
  std::thread receiver([&] { received = receive_into(copy, listening); });
  const io::UniqueFd listener(listener_made.get());
  Result<double> sent = Error{"the receiver could not listen"};
  sockaddr_in address{};
  socklen_t length = sizeof address;
  if (listener.get() >= 0 &&
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    // On a thread of its own too: setns() must leave the caller's namespace alone.
    std::thread sender([&] { sent = send_from(copy, ntohs(address.sin_port)); });
    sender.join();
  }
  // A sender that never connected leaves the receiver in accept(): this wakes it. One that did
  // has closed its end, which ends the receiver's recv().
  if (!sent && listener.get() >= 0) ::shutdown(listener.get(), SHUT_RDWR);
  receiver.join();
  if (!received) return received.error();
  return sent;
}

}  // namespace

Result<LinkCopySeconds> link_copy(const LinkCopy& copy) {
  if (copy.bytes % volume::kPageAlignBytes != 0) return Error{"the size is not a multiple of 4096"};
  {
    const io::UniqueFd target(
        ::open(copy.target.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (target.get() < 0) return Error{link_error("cannot create " + copy.target)};
    if (const int reserved = ::posix_fallocate(target.get(), 0, static_cast<off_t>(copy.bytes));
        reserved != 0) {
      return Error{copy.target + ": cannot reserve its space: " + std::strerror(reserved)};
    }
  }
  LinkCopySeconds seconds;
  auto fresh = link_copy_once(copy);
  if (!fresh) return fresh.error();
  seconds.new_file = fresh.value();
  auto again = link_copy_once(copy);
  if (!again) return again.error();
  seconds.overwrite = again.value();
  return seconds;
}

}  // namespace keel::bench
