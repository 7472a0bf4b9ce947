#include "core/volume/types.hpp"

#include <cstdint>
#include <cstring>
#include <limits>
#include <new>

namespace keel::volume {

void* allocate_page_aligned(std::size_t bytes) {
  static_assert((kPageAlignBytes & (kPageAlignBytes - 1)) == 0 && kPageAlignBytes >= sizeof(void*));
  if (bytes > std::numeric_limits<std::size_t>::max() - kPageAlignBytes) throw std::bad_alloc();
  // operator new's blocks are aligned to at least a pointer, so the first page boundary past
  // the stored address is at most one page in: bytes + one page always holds the block.
  std::byte* const heap_block = static_cast<std::byte*>(::operator new(bytes + kPageAlignBytes));
  const auto past_address = reinterpret_cast<std::uintptr_t>(heap_block) + sizeof(void*);
  const std::uintptr_t aligned = (past_address + kPageAlignBytes - 1) & ~(kPageAlignBytes - 1);
  std::byte* const block = heap_block + (aligned - reinterpret_cast<std::uintptr_t>(heap_block));
  std::memcpy(block - sizeof(void*), &heap_block, sizeof(void*));
  return block;
}

void free_page_aligned(void* block) noexcept {
  if (block == nullptr) return;
  void* heap_block = nullptr;
  std::memcpy(&heap_block, static_cast<std::byte*>(block) - sizeof(void*), sizeof(void*));
  ::operator delete(heap_block);
}

std::string_view to_string(Role role) {
  switch (role) {
    case Role::Secondary:
      return "Secondary";
    case Role::Primary:
      return "Primary";
  }
  return "?";
}

std::string_view to_string(DiskState state) {
  switch (state) {
    case DiskState::Inconsistent:
      return "Inconsistent";
    case DiskState::Outdated:
      return "Outdated";
    case DiskState::UpToDate:
      return "UpToDate";
  }
  return "?";
}

std::string_view to_string(LinkState state) {
  switch (state) {
    case LinkState::StandAlone:
      return "StandAlone";
    case LinkState::Connecting:
      return "Connecting";
    case LinkState::Connected:
      return "Connected";
    case LinkState::SyncSource:
      return "SyncSource";
    case LinkState::SyncTarget:
      return "SyncTarget";
    case LinkState::SplitBrain:
      return "SplitBrain";
    case LinkState::Unrelated:
      return "Unrelated";
  }
  return "?";
}

std::string_view to_string(Mode mode) {
  switch (mode) {
    case Mode::Sync:
      return "sync";
    case Mode::Async:
      return "async";
  }
  return "?";
}

}  // namespace keel::volume
