// `keel volume create NAME`: this host's copy of a volume, before the agent serves it.
//
// A backing file that does not exist is created (all zeroes, its space reserved on the
// filesystem; see io::BlockFile) and its copy starts UpToDate
// with the volume's "empty" generation (a digest of its name and size), the same on both nodes,
// so two new copies connect InSync without copying anything. A backing file or device that
// already exists may hold anything: its copy starts Inconsistent, and the first connection copies
// the other node's copy over it (or, if neither is consistent, `keel volume promote --force`
// on the node whose data is wanted makes it the source).
#pragma once

#include <string>

namespace keel::cli {

struct VolumeCreateOptions {
  std::string config = "/etc/keel/keel.toml";
  std::string node;
  std::string volume;
  bool force = false;
};

// Exit code: 0 done, 1 refused or failed (the reason printed on stderr).
int create_volume(const VolumeCreateOptions& options);

}  // namespace keel::cli
