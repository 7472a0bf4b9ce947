// BlockDevice: what the NBD server (io/nbd_server.hpp) serves. The volume service implements it
// by routing writes through replication; FileBlockDevice (io/file_block_device.hpp) is one plain
// copy on a file, for tests and as a baseline.
//
// Every operation completes exactly once through its `Done`, always on the io_context the server
// runs on, never from inside the call itself (so a caller may issue the next request from a
// completion without recursion). The error is 0 or an errno value (EIO, ENOSPC, ESHUTDOWN,
// EPERM...); nothing throws across this boundary. Ranges are within size_bytes() (the server
// checks before calling).
//
// Thread-safety: called on the server's io_context thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "core/volume/types.hpp"

namespace keel::io {

class BlockDevice {
 public:
  using Done = std::function<void(int error)>;  // 0, or an errno value

  virtual ~BlockDevice() = default;

  virtual std::uint64_t size_bytes() const = 0;
  virtual bool writable() const = 0;
  // A flush on any connection covers writes completed on all of them (NBD's CAN_MULTI_CONN).
  virtual bool can_multi_conn() const = 0;
  // Empty when the device may serve; otherwise why not, for the client (e.g. "volume data: this
  // node is secondary; the primary is b1"). Asked at every NBD_OPT_GO.
  virtual std::string unavailable_reason() const = 0;

  // A descriptor whose bytes at [offset, offset + length) are this device's, for the server to
  // send from directly (sendfile: one copy, no buffer); -1 when the read must go through read().
  // Asked for large reads only; the descriptor stays open while the server runs.
  virtual int read_descriptor(std::uint64_t offset, std::uint32_t length) {
    (void)offset;
    (void)length;
    return -1;
  }
  // `into` holds `length` bytes and stays valid until `done` runs.
  virtual void read(std::uint64_t offset, std::uint32_t length, std::byte* into, Done done) = 0;
  // `fua`: the data is on stable storage when `done` runs.
  virtual void write(std::uint64_t offset, volume::Payload data, bool fua, Done done) = 0;
  // Every write completed before the call is on stable storage when `done` runs.
  virtual void flush(Done done) = 0;
  // The range may be deallocated, but must read back as zeroes afterwards (deterministic, so that
  // both copies of a mirrored volume stay identical).
  virtual void trim(std::uint64_t offset, std::uint32_t length, bool fua, Done done) = 0;
  virtual void write_zeroes(std::uint64_t offset, std::uint32_t length, bool fua, Done done) = 0;
};

}  // namespace keel::io
