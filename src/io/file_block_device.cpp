#include "io/file_block_device.hpp"

#include <cerrno>

#include "core/common/assert.hpp"

namespace keel::io {

FileBlockDevice::FileBlockDevice(BlockFile& file, bool read_only)
    : file_(file), writable_(!read_only && !file.read_only()) {}

void FileBlockDevice::read(std::uint64_t offset, std::uint32_t length, std::byte* into, Done done) {
  file_.read(offset, length, into, std::move(done));
}

void FileBlockDevice::write(std::uint64_t offset, volume::Payload data, bool fua, Done done) {
  KEEL_ASSERT(writable_);  // the server answers EPERM itself on a read-only export
  file_.write(offset, std::move(data), fua, std::move(done));
}

void FileBlockDevice::flush(Done done) { file_.flush(std::move(done)); }

void FileBlockDevice::trim(std::uint64_t offset, std::uint32_t length, bool fua, Done done) {
  KEEL_ASSERT(writable_);
  file_.write_zeroes(offset, length, /*may_unmap=*/true, fua, std::move(done));
}

void FileBlockDevice::write_zeroes(std::uint64_t offset, std::uint32_t length, bool fua,
                                   Done done) {
  KEEL_ASSERT(writable_);
  file_.write_zeroes(offset, length, /*may_unmap=*/false, fua, std::move(done));
}

}  // namespace keel::io
