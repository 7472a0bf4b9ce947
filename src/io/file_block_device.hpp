// FileBlockDevice: a BlockDevice on one BlockFile, with no replication: one copy of the data.
// Used by tests and as the baseline the replicated volume is measured against.
//
// Trim punches a hole (reads back as zeroes); write_zeroes zeroes without deallocating. FUA and
// flush are fdatasync on the one file, which every connection shares, so CAN_MULTI_CONN holds.
// set_unavailable_reason() lets a test play a secondary.
//
// Thread-safety: none; the io_context thread of the BlockFile. The BlockFile must outlive it.
#pragma once

#include <string>

#include "io/block_device.hpp"
#include "io/block_file.hpp"

namespace keel::io {

class FileBlockDevice final : public BlockDevice {
 public:
  // Writable unless `read_only` or the file was opened read-only.
  explicit FileBlockDevice(BlockFile& file, bool read_only = false);

  void set_unavailable_reason(std::string reason) { unavailable_reason_ = std::move(reason); }

  std::uint64_t size_bytes() const override { return file_.size_bytes(); }
  bool writable() const override { return writable_; }
  bool can_multi_conn() const override { return true; }
  std::string unavailable_reason() const override { return unavailable_reason_; }

  int read_descriptor(std::uint64_t, std::uint32_t) override { return file_.descriptor(); }
  void read(std::uint64_t offset, std::uint32_t length, std::byte* into, Done done) override;
  void write(std::uint64_t offset, volume::Payload data, bool fua, Done done) override;
  void flush(Done done) override;
  void trim(std::uint64_t offset, std::uint32_t length, bool fua, Done done) override;
  void write_zeroes(std::uint64_t offset, std::uint32_t length, bool fua, Done done) override;

 private:
  BlockFile& file_;
  bool writable_;
  std::string unavailable_reason_;
};

}  // namespace keel::io
