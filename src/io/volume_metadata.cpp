#include "io/volume_metadata.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/common/assert.hpp"
#include "core/common/sizes.hpp"

namespace keel::io {
namespace {

constexpr std::uint64_t kEntriesPerTablePage = kMetadataPageBytes / 4;
constexpr std::uint64_t kReadChunkPages = 64;  // read_bitmap() reads 256 KiB at a time

// Closes a descriptor unless it was released to a VolumeMetadataFile.
class Descriptor {
 public:
  explicit Descriptor(int fd) : fd_(fd) {}
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Error system_error(const std::string& what, const std::string& path) {
  return Error{what + " " + path + ": " + std::strerror(errno)};
}

// False with errno set on a failure; a short read past the end of the file reads zeros.
bool read_at(int fd, void* into, std::size_t size, std::uint64_t offset) {
  auto* bytes = static_cast<std::uint8_t*>(into);
  while (size > 0) {
    const ssize_t got = ::pread(fd, bytes, size, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return false;
    if (got == 0) {
      std::memset(bytes, 0, size);
      return true;
    }
    bytes += got;
    size -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
  return true;
}

bool write_at(int fd, const void* from, std::size_t size, std::uint64_t offset) {
  const auto* bytes = static_cast<const std::uint8_t*>(from);
  while (size > 0) {
    const ssize_t put = ::pwrite(fd, bytes, size, static_cast<off_t>(offset));
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) return false;
    bytes += put;
    size -= static_cast<std::size_t>(put);
    offset += static_cast<std::uint64_t>(put);
  }
  return true;
}

Result<Ok> fsync_directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  const std::string directory = slash == 0 ? "/" : path.substr(0, slash);
  Descriptor fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return system_error("cannot open directory", directory);
  if (::fsync(fd.get()) != 0) return system_error("cannot sync directory", directory);
  return Ok{};
}

// Whether the bits of `page` from block `from` on are all zero.
// A page with its first `blocks` bits set: what a damaged page is reported as.
void fill_dirty(BitmapPage& page, std::uint64_t blocks) {
  page.fill(std::byte{0});
  const auto whole = static_cast<std::size_t>(blocks / 8);
  std::fill_n(page.begin(), whole, std::byte{0xff});
  if (blocks % 8 != 0) page[whole] = static_cast<std::byte>((1u << (blocks % 8)) - 1);
}

}  // namespace

VolumeMetadataFile::VolumeMetadataFile(int fd, std::string path, const MetadataSlot& slot,
                                       int slot_index)
    : fd_(fd),
      path_(std::move(path)),
      header_(slot.header),
      layout_(layout_for(slot.header)),
      sequence_(slot.sequence),
      slot_index_(slot_index),
      state_(slot.state),
      activity_extents_(slot.activity_extents),
      page_checksums_(layout_.bitmap_pages, 0) {}

VolumeMetadataFile::VolumeMetadataFile(VolumeMetadataFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      header_(std::move(other.header_)),
      layout_(other.layout_),
      sequence_(other.sequence_),
      slot_index_(other.slot_index_),
      state_(other.state_),
      activity_extents_(std::move(other.activity_extents_)),
      page_checksums_(std::move(other.page_checksums_)) {}

VolumeMetadataFile& VolumeMetadataFile::operator=(VolumeMetadataFile&& other) noexcept {
  if (this == &other) return *this;
  if (fd_ >= 0) ::close(fd_);
  fd_ = std::exchange(other.fd_, -1);
  path_ = std::move(other.path_);
  header_ = std::move(other.header_);
  layout_ = other.layout_;
  sequence_ = other.sequence_;
  slot_index_ = other.slot_index_;
  state_ = other.state_;
  activity_extents_ = std::move(other.activity_extents_);
  page_checksums_ = std::move(other.page_checksums_);
  return *this;
}

VolumeMetadataFile::~VolumeMetadataFile() {
  if (fd_ >= 0) ::close(fd_);
}

// Why a non-empty file at `path` may not be replaced without force, or Ok.
Result<Ok> VolumeMetadataFile::check_replaceable(const std::string& path, bool force) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return Ok{};
    return system_error("cannot inspect", path);
  }
  if (!S_ISREG(info.st_mode)) return Error{path + " exists and is not a regular file"};
  if (info.st_size == 0 || force) return Ok{};
  Descriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::vector<std::uint8_t> slots(2 * kSlotBytes);
  if (fd.get() < 0 || !read_at(fd.get(), slots.data(), slots.size(), 0)) {
    return system_error("cannot read", path);
  }
  const auto a = std::span<const std::uint8_t>(slots).first(kSlotBytes);
  const auto b = std::span<const std::uint8_t>(slots).last(kSlotBytes);
  if (!has_magic(a) && !has_magic(b)) {
    return Error{path +
                 " exists and is not a keel metadata file; refusing to overwrite it "
                 "without force"};
  }
  std::string volume;
  for (const auto slot : {a, b}) {
    if (auto decoded = decode_slot(slot); decoded.ok()) {
      volume = " for volume \"" + decoded.value().header.volume_name + "\"";
    }
  }
  return Error{path + " already holds keel metadata" + volume +
               " (this copy's state); refusing to overwrite it without force"};
}

Result<VolumeMetadataFile> VolumeMetadataFile::create(const std::string& path,
                                                      const MetadataHeader& header, bool force) {
  KEEL_ASSERT(!header.volume_name.empty() && header.volume_name.size() <= kMaxVolumeNameBytes);
  KEEL_ASSERT(header.node != kNoNode && header.size_bytes > 0);
  KEEL_ASSERT(!path.empty() && path.front() == '/');
  if (auto replaceable = check_replaceable(path, force); !replaceable.ok()) {
    return replaceable.error();
  }
  // Built under another name and renamed into place: a crash leaves the old file or the new.
  const std::string temporary = path + ".new";
  Descriptor fd(
      ::open(temporary.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) return system_error("cannot create metadata file", temporary);
  const MetadataLayout layout = layout_for(header);
  const MetadataSlot slot{1, header, {}, {}};
  const std::vector<std::uint8_t> bytes = encode_slot(slot);
  const bool written = ::fchmod(fd.get(), 0600) == 0 &&
                       ::ftruncate(fd.get(), static_cast<off_t>(layout.file_bytes)) == 0 &&
                       write_at(fd.get(), bytes.data(), bytes.size(), layout.slot_offset(0)) &&
                       ::fsync(fd.get()) == 0;
  if (!written || ::rename(temporary.c_str(), path.c_str()) != 0) {
    Error error = system_error("cannot write metadata file", written ? path : temporary);
    ::unlink(temporary.c_str());
    return error;
  }
  if (auto synced = fsync_directory_of(path); !synced.ok()) return synced.error();
  return VolumeMetadataFile(fd.release(), path, slot, 0);
}

Result<VolumeMetadataFile> VolumeMetadataFile::open(const std::string& path,
                                                    const MetadataHeader& expected) {
  Descriptor fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    if (errno == ENOENT) return Error{"metadata file " + path + " does not exist"};
    return system_error("cannot open metadata file", path);
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return system_error("cannot inspect", path);
  if (!S_ISREG(info.st_mode)) return Error{"metadata file " + path + " is not a regular file"};
  std::vector<std::uint8_t> slots(2 * kSlotBytes);
  if (!read_at(fd.get(), slots.data(), slots.size(), 0)) return system_error("cannot read", path);
  const auto a = std::span<const std::uint8_t>(slots).first(kSlotBytes);
  const auto b = std::span<const std::uint8_t>(slots).last(kSlotBytes);
  if (!has_magic(a) && !has_magic(b)) return Error{path + " is not a keel metadata file"};
  auto slot_a = decode_slot(a);
  auto slot_b = decode_slot(b);
  if (!slot_a.ok() && !slot_b.ok()) {
    return Error{"metadata file " + path + " is damaged: slot A: " + slot_a.error().message +
                 "; slot B: " + slot_b.error().message};
  }
  const bool use_b =
      slot_b.ok() && (!slot_a.ok() || slot_b.value().sequence > slot_a.value().sequence);
  const MetadataSlot& slot = use_b ? slot_b.value() : slot_a.value();
  const MetadataHeader& found = slot.header;
  if (found.volume_name != expected.volume_name) {
    return Error{"metadata file " + path + " is for volume \"" + found.volume_name + "\", not \"" +
                 expected.volume_name + "\""};
  }
  if (found.size_bytes != expected.size_bytes) {
    return Error{"metadata for volume " + found.volume_name + " says size " +
                 format_size(found.size_bytes) + " but the config says " +
                 format_size(expected.size_bytes) + " (" + path + ")"};
  }
  if (found.node != expected.node) {
    return Error{"metadata file " + path + " belongs to node " + std::to_string(found.node) +
                 ", not to this node (" + std::to_string(expected.node) +
                 "); a copy's metadata cannot move between nodes"};
  }
  KEEL_ASSERT(found == expected);  // block and extent sizes are checked by decode_slot()
  VolumeMetadataFile file(fd.release(), path, slot, use_b ? 1 : 0);
  if (static_cast<std::uint64_t>(info.st_size) < file.layout_.file_bytes) {
    return Error{"metadata file " + path + " is truncated: " + std::to_string(info.st_size) +
                 " bytes where volume " + found.volume_name + " needs " +
                 std::to_string(file.layout_.file_bytes)};
  }
  if (auto table = file.read_checksum_table(); !table.ok()) return table.error();
  return file;
}

Result<Ok> VolumeMetadataFile::write_state(const volume::PersistentState& state,
                                           const std::vector<std::uint64_t>& activity_extents) {
  KEEL_ASSERT(activity_extents.size() <= kMaxActivityExtents);
  for (const std::uint64_t extent : activity_extents) KEEL_ASSERT(extent < layout_.extents);
  const MetadataSlot slot{sequence_ + 1, header_, state, activity_extents};
  const std::vector<std::uint8_t> bytes = encode_slot(slot);
  // The other slot: the newest state stays intact on disk until this one is complete.
  const int target = 1 - slot_index_;
  if (!write_at(fd_, bytes.data(), bytes.size(), layout_.slot_offset(target)) ||
      ::fdatasync(fd_) != 0) {
    return system_error("cannot write metadata file", path_);
  }
  sequence_ = slot.sequence;
  slot_index_ = target;
  state_ = state;
  activity_extents_ = activity_extents;
  return Ok{};
}

Result<Ok> VolumeMetadataFile::write_bitmap_pages(
    std::span<const std::pair<std::uint64_t, BitmapPage>> pages) {
  if (pages.empty()) return Ok{};
  std::vector<std::uint64_t> table_pages;
  for (const auto& [page, bytes] : pages) {
    KEEL_ASSERT(page < layout_.bitmap_pages);
    KEEL_ASSERT(bitmap_page_zero_from(bytes, layout_.blocks_in_page(page)));
    if (!write_at(fd_, bytes.data(), bytes.size(), layout_.page_offset(page))) {
      return system_error("cannot write the bitmap in", path_);
    }
    page_checksums_[page] = page_checksum(bytes);
    table_pages.push_back(page / kEntriesPerTablePage);
  }
  std::sort(table_pages.begin(), table_pages.end());
  table_pages.erase(std::unique(table_pages.begin(), table_pages.end()), table_pages.end());
  if (auto written = write_table_pages(table_pages); !written.ok()) return written;
  if (::fdatasync(fd_) != 0) return system_error("cannot write the bitmap in", path_);
  return Ok{};
}

Result<Ok> VolumeMetadataFile::write_bitmap_page(std::uint64_t page, BitmapPageView bytes) {
  std::pair<std::uint64_t, BitmapPage> entry{page, {}};
  std::copy(bytes.begin(), bytes.end(), entry.second.begin());
  return write_bitmap_pages({&entry, 1});
}

Result<Ok> VolumeMetadataFile::write_table_pages(const std::vector<std::uint64_t>& table_pages) {
  std::array<std::uint8_t, kMetadataPageBytes> buffer{};
  for (const std::uint64_t table_page : table_pages) {
    buffer.fill(0);
    const std::uint64_t first = table_page * kEntriesPerTablePage;
    const std::uint64_t end = std::min(first + kEntriesPerTablePage, layout_.bitmap_pages);
    for (std::uint64_t page = first; page < end; ++page) {
      const std::uint32_t entry = page_checksums_[page];
      for (std::size_t i = 0; i < 4; ++i) {
        buffer[(page - first) * 4 + i] = static_cast<std::uint8_t>(entry >> (24 - 8 * i));
      }
    }
    const std::uint64_t offset = layout_.table_offset + table_page * kMetadataPageBytes;
    if (!write_at(fd_, buffer.data(), buffer.size(), offset)) {
      return system_error("cannot write the bitmap checksums in", path_);
    }
  }
  return Ok{};
}

Result<Ok> VolumeMetadataFile::read_checksum_table() {
  std::vector<std::uint8_t> table(layout_.table_bytes);
  if (!read_at(fd_, table.data(), table.size(), layout_.table_offset)) {
    return system_error("cannot read the bitmap checksums in", path_);
  }
  for (std::uint64_t page = 0; page < layout_.bitmap_pages; ++page) {
    std::uint32_t entry = 0;
    for (std::size_t i = 0; i < 4; ++i) entry = (entry << 8) | table[page * 4 + i];
    page_checksums_[page] = entry;
  }
  return Ok{};
}

Result<BitmapReadSummary> VolumeMetadataFile::read_bitmap(const PageVisitor& visit) {
  BitmapReadSummary summary;
  std::vector<std::byte> chunk(kReadChunkPages * kMetadataPageBytes);
  BitmapPage dirty{};
  for (std::uint64_t first = 0; first < layout_.bitmap_pages; first += kReadChunkPages) {
    const std::uint64_t count = std::min(kReadChunkPages, layout_.bitmap_pages - first);
    const std::uint64_t offset = layout_.page_offset(first);
    // Skip what the file system knows is a hole (most of a large volume's bitmap); where it
    // cannot tell (EINVAL), read.
    const off_t data = ::lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
    const bool hole =
        (data < 0 && errno == ENXIO) ||
        (data >= 0 && static_cast<std::uint64_t>(data) >= offset + count * kMetadataPageBytes);
    if (!hole && !read_at(fd_, chunk.data(), count * kMetadataPageBytes, offset)) {
      return system_error("cannot read the bitmap in", path_);
    }
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::uint64_t page = first + i;
      const BitmapPageView bytes(chunk.data() + i * kMetadataPageBytes, kMetadataPageBytes);
      const std::uint32_t checksum = hole ? 0 : page_checksum(bytes);
      const std::uint64_t blocks = layout_.blocks_in_page(page);
      if (checksum != page_checksums_[page] || (!hole && !bitmap_page_zero_from(bytes, blocks))) {
        fill_dirty(dirty, blocks);
        visit(page, dirty);
        ++summary.damaged_pages;
        ++summary.nonzero_pages;
      } else if (!hole && !bitmap_page_zero_from(bytes, 0)) {
        visit(page, bytes);
        ++summary.nonzero_pages;
      }
    }
  }
  return summary;
}

}  // namespace keel::io
