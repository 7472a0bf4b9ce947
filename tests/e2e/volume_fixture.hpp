// VolumeLab: the e2e tests' backends. Three lab hosts: h1 and h2 hold the copies of volume
// "data" (64 MiB, synchronous), h3 only completes the majority. Each copy's backing file, metadata
// and NBD socket live in its host's lab directory; `keel volume create` runs on h1 and h2 before
// the agents start. The helpers drive the real CLI and real NBD clients (nbdcopy, qemu-io,
// nbdfuse), and StackMount puts a real ext4 on an export: nbdfuse -> losetup -> mount.
//
// Thread-safety: GoogleTest runs one test at a time.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lab/process.hpp"
#include "lab_fixture.hpp"

namespace keel::lab::testing {

constexpr const char* kVolume = "data";
constexpr std::uint64_t kVolumeBytes = 64ull << 20;

class VolumeLab : public LabFixture {
 protected:
  void SetUp() override;

  std::string keel() const { return KEEL_BINARY; }
  std::string nbd_socket(int host) const;
  std::string backing(int host) const;
  std::string nbd_uri(int host) const;  // nbd+unix:///data?socket=...

  // `keel volume ARGS --socket hI/keel.sock`: stdout, or the failure (exit code and stderr).
  Result<std::string> volume_command(int host, std::vector<std::string> args);
  nlohmann::json status(int host);
  // Polls `keel volume status --json` on `host` until `predicate` holds (or fails the test).
  void wait_status(int host, const std::function<bool(const nlohmann::json&)>& predicate,
                   const std::string& what, milliseconds timeout = milliseconds{20000});
  void wait_connected_in_sync(int primary, int secondary);

  // Writes `bytes` of a pattern at `offset` through the export of `host` (qemu-io, with a flush).
  void write_pattern(int host, std::uint64_t offset, std::uint64_t bytes, int pattern);
  // `keel volume verify` on the primary: runs to the end and finds no difference.
  void verify_clean(int primary);
  // Whether both backing files are byte-identical.
  bool copies_identical();

  // Set before SetUp() (in a fixture's constructor): both backing files hold different data
  // before `keel volume create`, h1's also kept as kept_data(), and nothing is promoted.
  bool existing_data_ = false;
  std::string kept_data() const;
  // Set before SetUp(): called for h1 and h2 before `keel volume create` runs there (a backing
  // that already exists makes that copy Inconsistent, to be synced from the other).
  std::function<Result<Ok>(const LabState& state, int host)> prepare_backing_;
  // Set before SetUp(): where each copy's metadata goes ({host}: the host's lab directory).
  std::string metadata_path_ = "{host}/data.keelmeta";
  // Set before SetUp(): more lines for the [[volume]] section.
  std::string volume_settings_;
};

// A real filesystem on an export: nbdfuse exposes it as a file, a loop device turns that into a
// block device, ext4 goes on it. Everything is undone in reverse by the destructor, lazily when
// the export is gone (the primary was killed).
class StackMount {
 public:
  StackMount(const std::string& work_dir, const std::string& nbd_socket);
  ~StackMount();
  StackMount(const StackMount&) = delete;
  StackMount& operator=(const StackMount&) = delete;

  Result<Ok> up(bool make_filesystem);
  const std::string& mount_point() const { return mount_point_; }
  void tear_down();

 private:
  std::string fuse_dir_;
  std::string mount_point_;
  std::string socket_;
  ProcessId nbdfuse_;
  std::string loop_;
  bool mounted_ = false;
};

}  // namespace keel::lab::testing
