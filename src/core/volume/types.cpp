#include "core/volume/types.hpp"

namespace keel::volume {

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
