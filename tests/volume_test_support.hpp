// A hand-driven world for two volume Replicas: in-memory disks, persisted metadata, a link that
// carries messages in order, and knobs to hold any of them, so that a test can stop the world at
// the interesting moment. Everything runs in one thread, deterministically.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "core/volume/replica.hpp"

namespace keel::volume::testing {

constexpr std::uint64_t kTestVolumeBytes = 16u << 20;  // four activity-log extents

inline ReplicaConfig test_config(NodeId self, NodeId peer, Mode mode = Mode::Sync) {
  ReplicaConfig config;
  config.self = self;
  config.peer = peer;
  config.size_bytes = kTestVolumeBytes;
  config.volume_digest = 0x5eed;
  config.mode = mode;
  config.resync_rate_bytes_s = 0;
  config.activity_log_extents = 2;
  config.resync_chunk_bytes = 64u << 10;
  config.resync_in_flight_chunks = 4;
  config.max_unacked_epoch_writes = 64;
  config.generation_seed = 1000 + self;
  return config;
}

inline Payload pattern(std::size_t bytes, std::uint8_t seed) {
  auto data = std::make_shared<Bytes>(bytes);
  for (std::size_t i = 0; i < bytes; ++i) {
    (*data)[i] = static_cast<std::byte>((i * 131 + seed * 7 + 1) & 0xff);
  }
  return data;
}

struct Node {
  ReplicaConfig config;
  std::optional<Replica> replica;
  Bytes disk;
  // What survives a crash.
  PersistentState saved_state;
  std::map<std::uint64_t, std::array<std::byte, kBitmapPageBytes>> saved_pages;
  std::vector<std::uint64_t> saved_extents;
  // Work the replica asked for, executed by the world.
  std::deque<Action> disk_queue;
  std::deque<Persist> persist_queue;
  bool hold_disk = false;
  bool hold_persist = false;
  bool close_requested = false;
  int fail_next_write = 0;  // error for the next DiskWrite executed
  int fail_next_read = 0;   // error for the next DiskRead executed
  int fail_next_flush = 0;  // error for the next DiskFlush executed
  std::vector<std::pair<RequestId, int>> completed;
  std::vector<Generation> outdate_requests;
  Generation outdated_as_of = 0;  // the ring's record about this node's copy
  std::vector<Notice> notices;
  std::vector<DiskWrite> disk_writes;  // executed, in order
  std::uint64_t flushes = 0;
  std::size_t persists = 0;                // Persist actions executed
  std::size_t data_flushing_persists = 0;  // of those, with flush_data_first
  Replica& r() { return *replica; }
  bool has_completed(RequestId request) const {
    return std::any_of(completed.begin(), completed.end(),
                       [&](const auto& c) { return c.first == request; });
  }
  int error_of(RequestId request) const {
    for (const auto& c : completed) {
      if (c.first == request) return c.second;
    }
    return -1;
  }
  bool noticed(const std::string& text) const {
    return std::any_of(notices.begin(), notices.end(),
                       [&](const Notice& n) { return n.text.find(text) != std::string::npos; });
  }
};

class World {
 public:
  explicit World(Mode mode = Mode::Sync) {
    for (int i = 0; i < 2; ++i) {
      Node& n = nodes_[i];
      n.config = test_config(static_cast<NodeId>(i + 1), static_cast<NodeId>(2 - i), mode);
      n.disk.assign(kTestVolumeBytes, std::byte{0});
      n.saved_state.generations.current = 0x1111;  // created together, identical (all zero)
      n.saved_state.disk = DiskState::UpToDate;
      rebuild(i);
    }
  }

  Node& a() { return nodes_[0]; }
  Node& b() { return nodes_[1]; }
  Node& node(int i) { return nodes_[i]; }
  bool hold_wire[2] = {false, false};  // messages to node i wait
  bool answer_outdate = true;          // the ring records outdating at once

  // Restarts node i from what it persisted (a crash loses everything else).
  void rebuild(int i) {
    Node& n = nodes_[i];
    DirtyBitmap bitmap(kTestVolumeBytes);
    for (const auto& [page, bytes] : n.saved_pages) bitmap.load_page(page, bytes);
    n.replica.emplace(n.config, n.saved_state, std::move(bitmap), n.saved_extents);
    // The ring remembers what it recorded and tells a restarted node again.
    if (n.outdated_as_of != 0) n.r().on_told_outdated(n.outdated_as_of);
    n.disk_queue.clear();
    n.persist_queue.clear();
    n.close_requested = false;
  }

  void crash(int i) {
    if (connected_) disconnect();
    rebuild(i);
  }

  void connect() {
    connected_ = true;
    wire_[0].clear();
    wire_[1].clear();
    nodes_[0].r().on_peer_connected();
    nodes_[1].r().on_peer_connected();
  }

  void disconnect() {
    connected_ = false;
    wire_[0].clear();
    wire_[1].clear();
    nodes_[0].r().on_peer_disconnected();
    nodes_[1].r().on_peer_disconnected();
  }

  bool connected() const { return connected_; }
  std::size_t in_wire(int i) const { return wire_[i].size(); }

  // One unit of work; false when nothing can move.
  bool step() {
    for (int i = 0; i < 2; ++i) collect(i);
    // A closing side's last messages (a Refuse) still reach the peer, as over TCP.
    for (int i = 0; i < 2; ++i) {
      if (nodes_[i].close_requested && wire_[1 - i].empty()) {
        nodes_[0].close_requested = nodes_[1].close_requested = false;
        if (connected_) disconnect();
        return true;
      }
    }
    for (int i = 0; i < 2; ++i) {
      if (!nodes_[i].hold_persist && !nodes_[i].persist_queue.empty()) return persist_one(i);
    }
    for (int i = 0; i < 2; ++i) {
      if (!nodes_[i].hold_disk && !nodes_[i].disk_queue.empty()) return disk_one(i);
    }
    for (int i = 0; i < 2; ++i) {
      if ((!hold_wire[i] || nodes_[1 - i].close_requested) && !wire_[i].empty()) {
        PeerMessage message = std::move(wire_[i].front());
        wire_[i].pop_front();
        nodes_[i].r().on_peer_message(message);
        return true;
      }
    }
    for (int i = 0; i < 2; ++i) {
      Node& n = nodes_[i];
      if (answer_outdate && !n.outdate_requests.empty()) {
        const Generation generation = n.outdate_requests.front();
        n.outdate_requests.erase(n.outdate_requests.begin());
        n.r().on_peer_outdated_recorded(generation);
        nodes_[1 - i].outdated_as_of = generation;  // the ring tells the peer, now and later
        nodes_[1 - i].r().on_told_outdated(generation);
        return true;
      }
    }
    return false;
  }

  void run(int limit = 1'000'000) {
    int steps = 0;
    while (step()) ASSERT_LT(++steps, limit) << "the world does not settle";
  }

  // Executes node i's oldest queued disk operation (even while held).
  bool disk_one(int i) {
    Node& n = nodes_[i];
    if (n.disk_queue.empty()) return false;
    Action action = std::move(n.disk_queue.front());
    n.disk_queue.pop_front();
    if (const auto* w = std::get_if<DiskWrite>(&action)) {
      int error = 0;
      std::swap(error, n.fail_next_write);
      if (error == 0) std::memcpy(n.disk.data() + w->offset, w->data->data(), w->data->size());
      n.disk_writes.push_back(*w);
      n.r().on_disk_done(w->io, error);
    } else if (const auto* z = std::get_if<DiskZero>(&action)) {
      std::fill_n(n.disk.begin() + static_cast<std::ptrdiff_t>(z->offset), z->length, std::byte{0});
      n.r().on_disk_done(z->io, 0);
    } else if (const auto* f = std::get_if<DiskFlush>(&action)) {
      int error = 0;
      std::swap(error, n.fail_next_flush);
      if (error == 0) ++n.flushes;
      n.r().on_disk_done(f->io, error);
    } else if (const auto* rd = std::get_if<DiskRead>(&action)) {
      int error = 0;
      std::swap(error, n.fail_next_read);
      const auto begin = n.disk.begin() + static_cast<std::ptrdiff_t>(rd->offset);
      auto data = error != 0 ? nullptr : std::make_shared<Bytes>(begin, begin + rd->length);
      n.r().on_disk_read_done(rd->io, error, std::move(data));
    }
    return true;
  }

  bool same_disks() const { return nodes_[0].disk == nodes_[1].disk; }

 private:
  void collect(int i) {
    Node& n = nodes_[i];
    for (Action& action : n.r().take_actions()) {
      if (auto* p = std::get_if<Persist>(&action)) {
        n.persist_queue.push_back(std::move(*p));
      } else if (auto* s = std::get_if<SendToPeer>(&action)) {
        if (connected_) wire_[1 - i].push_back(std::move(s->message));
      } else if (std::holds_alternative<ClosePeer>(action)) {
        n.close_requested = true;
      } else if (auto* c = std::get_if<Complete>(&action)) {
        n.completed.emplace_back(c->request, c->error);
      } else if (auto* o = std::get_if<RecordPeerOutdated>(&action)) {
        n.outdate_requests.push_back(o->generation);
      } else if (auto* note = std::get_if<Notice>(&action)) {
        n.notices.push_back(*note);
      } else {
        n.disk_queue.push_back(std::move(action));
      }
    }
  }

  bool persist_one(int i) {
    Node& n = nodes_[i];
    Persist p = std::move(n.persist_queue.front());
    n.persist_queue.pop_front();
    for (std::uint64_t page : p.bitmap_pages) {
      n.r().bitmap().page_bytes(page, n.saved_pages[page]);
    }
    n.saved_state = p.state;
    n.saved_extents = p.activity_extents;
    ++n.persists;
    if (p.flush_data_first) ++n.data_flushing_persists;
    n.r().on_persisted(p.id, 0);
    return true;
  }

  Node nodes_[2];
  std::deque<PeerMessage> wire_[2];
  bool connected_ = false;
};

// Both connected and in sync, `primary` promoted.
inline void start_connected(World& world, int primary = 0) {
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.node(primary).r().promote(false).ok());
  world.run();
  EXPECT_TRUE(world.node(primary).r().serves_io());
}

}  // namespace keel::volume::testing
