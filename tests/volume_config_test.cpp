// Tests for the [[volume]] sections of parse_config(): a full volume lands in the right fields,
// defaults fill the rest, and each kind of mistake is reported with the line to fix.
#include "config/volume_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"

namespace keel::config {
namespace {

using ::testing::HasSubstr;

// Three nodes on lines 1-14 (b1 id 1, b2 id 2, b3 id 3); a test's text starts on line 18.
std::string with_volumes(const std::string& volumes) {
  return "[cluster]\n"                 // 1
         "name = \"store\"\n"          // 2
         "[[node]]\n"                  // 3
         "id = 1\n"                    // 4
         "name = \"b1\"\n"             // 5
         "address = \"198.18.0.1\"\n"  // 6
         "[[node]]\n"                  // 7
         "id = 2\n"                    // 8
         "name = \"b2\"\n"             // 9
         "address = \"198.18.0.2\"\n"  // 10
         "[[node]]\n"                  // 11
         "id = 3\n"                    // 12
         "name = \"b3\"\n"             // 13
         "address = \"198.18.0.3\"\n"  // 14
         "\n"                          // 15
         "\n"                          // 16
         "\n" +                        // 17
         volumes;
}

std::string volume_error_of(const std::string& volumes) {
  auto parsed = parse_config(with_volumes(volumes), "keel.toml");
  return parsed.ok() ? "(parsed without error)" : parsed.error().message;
}

// The least a volume needs, five lines (18-22 for a first volume); the keys in `rest` follow
// (from line 23).
std::string volume(const std::string& name, const std::string& rest = "") {
  return "[[volume]]\n" + ("name = \"" + name + "\"\n") +
         "nodes = [\"b2\", \"b1\"]\n"
         "size = \"2GiB\"\n" +
         ("backing = \"/var/lib/keel/volumes/" + name + ".img\"\n") + rest;
}

TEST(VolumeConfig, FullVolumeIsRead) {
  auto parsed = parse_config(with_volumes(volume("data",
                                                 "metadata = \"/srv/data.meta\"\n"
                                                 "mode = \"async\"\n"
                                                 "replication_port = 7790\n"
                                                 "resync_rate = \"40MiB\"\n"
                                                 "nbd_socket = \"/run/nbd/data.sock\"\n"
                                                 "nbd_listen = \"[2001:db8:0::10]:10809\"\n"
                                                 "activity_log_extents = 256\n"
                                                 "busy_poll_us = 0\n"
                                                 "write_cache = false\n"
                                                 "[volume.backing_on]\n"
                                                 "b1 = \"/dev/vdb\"\n"
                                                 "[volume.metadata_on]\n"
                                                 "b1 = \"/var/lib/keel/data.keelmeta\"\n")),
                             "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed.value().volumes.size(), 1u);
  const VolumeConfig& data = parsed.value().volumes[0];
  EXPECT_EQ(data.name, "data");
  EXPECT_EQ(data.nodes, (std::array<NodeId, 2>{2, 1}));  // in the order written
  EXPECT_EQ(data.size_bytes, 2ull << 30);
  EXPECT_EQ(data.backing_for(2), "/var/lib/keel/volumes/data.img");
  EXPECT_EQ(data.backing_for(1), "/dev/vdb");
  EXPECT_EQ(data.metadata_for(2), "/srv/data.meta");
  EXPECT_EQ(data.metadata_for(1), "/var/lib/keel/data.keelmeta");
  EXPECT_EQ(data.mode, volume::Mode::Async);
  EXPECT_EQ(data.replication_port, 7790);
  EXPECT_EQ(data.resync_rate_bytes_s, 40ull << 20);
  EXPECT_EQ(data.nbd_socket, "/run/nbd/data.sock");
  ASSERT_TRUE(data.nbd_listen.has_value());
  EXPECT_EQ(data.nbd_listen->host, "2001:db8::10");
  EXPECT_EQ(data.nbd_listen->port, 10809);
  EXPECT_EQ(data.activity_log_extents, 256u);
  EXPECT_EQ(data.busy_poll_us, 0u);
  EXPECT_FALSE(data.write_cache);
  EXPECT_EQ(data.peer_of(1), 2u);
  EXPECT_EQ(parsed.value().volume_by_name("data"), &data);
  EXPECT_EQ(parsed.value().volume_by_name("other"), nullptr);
}

// Listeners that cannot take one address and port do not clash.
TEST(VolumeConfig, ListenersThatCannotMeetAreAccepted) {
  // An IPv4 wildcard leaves IPv6 addresses free (keel binds "::" dual stack, not "0.0.0.0").
  auto parsed = parse_config(
      with_volumes(
          volume("data", "nbd_listen = \"0.0.0.0:10809\"\n") +
          volume("logs", "replication_port = 7790\nnbd_listen = \"[2001:db8::10]:10809\"\n")),
      "keel.toml");
  EXPECT_TRUE(parsed.ok()) << parsed.error().message;
}

TEST(VolumeConfig, DefaultsFillTheRest) {
  auto parsed = parse_config(with_volumes("[[volume]]\n"
                                          "name = \"data\"\n"
                                          "nodes = [\"b1\", \"b3\"]\n"
                                          "size = 1073741824\n"
                                          "backing = \"/var/lib/keel/data.img\"\n"),
                             "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const VolumeConfig& data = parsed.value().volumes[0];
  EXPECT_EQ(data.size_bytes, 1ull << 30);
  EXPECT_EQ(data.metadata_for(3), "/var/lib/keel/data.img.keelmeta");
  EXPECT_EQ(data.mode, volume::Mode::Sync);
  EXPECT_EQ(data.replication_port, kDefaultReplicationPort);
  EXPECT_EQ(data.resync_rate_bytes_s, 100ull << 20);
  EXPECT_EQ(data.nbd_socket, "/run/keel/nbd-data.sock");
  EXPECT_FALSE(data.nbd_listen.has_value());
  EXPECT_EQ(data.activity_log_extents, 1237u);
  EXPECT_EQ(data.busy_poll_us, kDefaultBusyPollUs);
  EXPECT_TRUE(data.write_cache);
  EXPECT_TRUE(parse_config(with_volumes(""), "keel.toml").value().volumes.empty());
}

TEST(VolumeConfig, SizesAreReadAndWritten) {
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("8K"), 8192u);
  EXPECT_EQ(parse_size("8KiB"), 8192u);
  EXPECT_EQ(parse_size("3M"), 3ull << 20);
  EXPECT_EQ(parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_size("64TiB"), 64ull << 40);
  EXPECT_FALSE(parse_size("").has_value());
  EXPECT_FALSE(parse_size("2GB").has_value());
  EXPECT_FALSE(parse_size("2 GiB").has_value());
  EXPECT_FALSE(parse_size("-1").has_value());
  EXPECT_FALSE(parse_size("GiB").has_value());
  EXPECT_FALSE(parse_size("99999999999T").has_value());  // overflows 64 bits
  EXPECT_EQ(format_size(2ull << 30), "2 GiB");
  EXPECT_EQ(format_size(1536ull << 10), "1536 KiB");
  EXPECT_EQ(format_size(4097), "4097 bytes");
  EXPECT_EQ(format_size(0), "0 bytes");
}

TEST(VolumeConfig, DigestFollowsEverySetting) {
  auto parsed = parse_config(with_volumes(volume("data")), "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const std::vector<VolumeConfig> volumes = parsed.value().volumes;
  std::vector<VolumeConfig> changed = volumes;
  EXPECT_EQ(volumes_digest(volumes), volumes_digest(changed));
  changed[0].resync_rate_bytes_s = 0;
  EXPECT_NE(volumes_digest(volumes), volumes_digest(changed));
  changed = volumes;
  changed[0].backing[1] = "/dev/vdc";
  EXPECT_NE(volumes_digest(volumes), volumes_digest(changed));
  EXPECT_NE(volumes_digest(volumes), volumes_digest({}));
}

struct BadVolume {
  const char* name;
  std::string text;  // from line 18
  const char* message;
};

// Each mistake, and the message it gets with its line.
const BadVolume kBadVolumes[] = {
    {"UnknownKey", volume("data", "mod = \"sync\"\n"),
     "keel.toml:23: unknown key 'mod' in [[volume]] (did you mean mode?)"},
    {"BadName", volume("da ta"),
     "keel.toml:19: [[volume]] name \"da ta\" must be 1 to 64 characters"},
    {"OneNode", "[[volume]]\nname = \"data\"\nnodes = [\"b1\"]\nsize = 4096\nbacking = \"/x\"\n",
     "keel.toml:20: [[volume]] \"data\": nodes must name exactly two nodes (it names 1)"},
    {"SameNodeTwice",
     "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b1\"]\nsize = 4096\nbacking = \"/x\"\n",
     "keel.toml:20: [[volume]] \"data\": nodes names \"b1\" twice"},
    {"UnknownNode",
     "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b4\"]\nsize = 4096\nbacking = \"/x\"\n",
     "keel.toml:20: [[volume]] \"data\": no node is named \"b4\" (did you mean b1?)"},
    // Once crashed: the unknown second node was left as node 0, whose name the device's
    // metadata message then looked up.
    {"UnknownSecondNodeBesideADevice",
     "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"zz\"]\nsize = \"1GiB\"\n"
     "backing = \"/dev/vdb\"\n",
     "keel.toml:20: [[volume]] \"data\": no node is named \"zz\""},
    {"NoSize", "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b2\"]\nbacking = \"/x\"\n",
     "keel.toml:18: [[volume]] \"data\" has no size; add size = \"10GiB\""},
    {"SizeNotASize",
     "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b2\"]\nsize = \"2GB\"\nbacking = \"/x\"\n",
     "keel.toml:21: [[volume]] \"data\": size \"2GB\" is not a size"},
    {"SizeNotAligned",
     "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b2\"]\nsize = 5000\nbacking = \"/x\"\n",
     "keel.toml:21: [[volume]] \"data\": size 5000 bytes is not a multiple of 4096 bytes"},
    {"SizeZero",
     "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b2\"]\nsize = \"0G\"\nbacking = \"/x\"\n",
     "keel.toml:21: [[volume]] \"data\": size must be more than 0"},
    {"SizeTooLarge",
     "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b2\"]\nsize = \"65T\"\nbacking = \"/x\"\n",
     "keel.toml:21: [[volume]] \"data\": size 65 TiB is more than the 64 TiB a volume may have"},
    {"SizeWrongType",
     "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b2\"]\nsize = true\nbacking = \"/x\"\n",
     "keel.toml:21: [[volume]] \"data\": size must be an integer or a string like \"2GiB\", not a "
     "boolean"},
    {"NoBacking", "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b2\"]\nsize = 4096\n",
     "keel.toml:18: [[volume]] \"data\" has no backing for every node"},
    {"BackingForOneNodeOnly",
     "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b2\"]\nsize = 4096\n"
     "backing_on.b1 = \"/dev/vdb\"\nmetadata_on.b1 = \"/m\"\n",
     "keel.toml:18: [[volume]] \"data\" has no backing for every node"},
    {"RelativeBacking", volume("data", "backing_on.b1 = \"data.img\"\n"),
     "keel.toml:23: [[volume]] \"data\": backing_on b1 \"data.img\" must be an absolute path"},
    {"BackingOnOtherNode", volume("data", "[volume.backing_on]\nb3 = \"/dev/vdb\"\n"),
     "keel.toml:24: [[volume]] \"data\" backing_on: node \"b3\" is not one of the volume's nodes"},
    {"BackingOnUnknownNode", volume("data", "[volume.backing_on]\nbb1 = \"/dev/vdb\"\n"),
     "keel.toml:24: [[volume]] \"data\" backing_on: no node is named \"bb1\" (did you mean b1?)"},
    {"ControlCharacterInBackingOn",
     volume("data", "[volume.backing_on]\nb1 = \"/srv/b\\u0007.img\"\n"),
     "keel.toml:24: [[volume]] \"data\" backing_on b1 must not contain control characters"},
    {"ControlCharacterInMetadataOn",
     volume("data", "[volume.metadata_on]\nb2 = \"/srv/m\\u001b[2J\"\n"),
     "keel.toml:24: [[volume]] \"data\" metadata_on b2 must not contain control characters"},
    {"BackingOnNotATable", volume("data", "backing_on = \"/dev/vdb\"\n"),
     "keel.toml:23: [[volume]] \"data\": backing_on must be a table ([volume.backing_on]), not a "
     "string"},
    {"DeviceWithoutMetadata", volume("data", "[volume.backing_on]\nb1 = \"/dev/vdb\"\n"),
     "keel.toml:24: [[volume]] \"data\": the backing /dev/vdb on node \"b1\" is a device, and the "
     "default metadata path /dev/vdb.keelmeta would be in /dev; set metadata_on b1 = "
     "\"/var/lib/keel/data.keelmeta\""},
    {"MetadataIsBacking", volume("data", "metadata = \"/var/lib/keel/volumes/data.img\"\n"),
     "keel.toml:23: [[volume]] \"data\": metadata /var/lib/keel/volumes/data.img on node \"b2\" "
     "is also its backing; they must be separate files"},
    {"BadMode", volume("data", "mode = \"synch\"\n"),
     "keel.toml:23: [[volume]] \"data\": mode \"synch\" is not one of sync, async (did you mean "
     "sync?)"},
    {"BadPort", volume("data", "replication_port = 0\n"),
     "keel.toml:23: [[volume]] \"data\" replication_port must be between 1 and 65535 (got 0)"},
    {"BadRate", volume("data", "resync_rate = \"2TiB\"\n"),
     "keel.toml:23: [[volume]] \"data\": resync_rate is at most 1 TiB per second"},
    {"BadExtents", volume("data", "activity_log_extents = 4097\n"),
     "keel.toml:23: [[volume]] \"data\" activity_log_extents must be between 9 and 4096 (got "
     "4097)"},
    {"BadBusyPoll", volume("data", "busy_poll_us = 1001\n"),
     "keel.toml:23: [[volume]] \"data\" busy_poll_us must be between 0 and 1000 (got 1001)"},
    {"BadWriteCache", volume("data", "write_cache = \"no\"\n"),
     "keel.toml:23: [[volume]] \"data\" write_cache must be true or false, not a string"},
    {"RelativeSocket", volume("data", "nbd_socket = \"nbd.sock\"\n"),
     "keel.toml:23: [[volume]] \"data\": nbd_socket must be an absolute path of at most 107 bytes"},
    {"SocketIsADirectory", volume("data", "nbd_socket = \"/run/keel/\"\n"),
     "keel.toml:23: [[volume]] \"data\": nbd_socket \"/run/keel/\" names a directory; give the "
     "socket a file name"},
    {"NoExport", volume("data", "nbd_socket = \"\"\n"),
     "keel.toml:23: [[volume]] \"data\": with nbd_socket = \"\" and no nbd_listen the volume has "
     "no NBD export; set one of them"},
    {"BadListen", volume("data", "nbd_listen = \"2001:db8::1:10809\"\n"),
     "keel.toml:23: [[volume]] \"data\": nbd_listen \"2001:db8::1:10809\" is not ADDRESS:PORT"},
    {"ListenWithoutPort", volume("data", "nbd_listen = \"198.18.0.10\"\n"),
     "keel.toml:23: [[volume]] \"data\": nbd_listen \"198.18.0.10\" is not ADDRESS:PORT"},
    {"NotAnArrayOfTables", "[volume]\nname = \"data\"\n",
     "keel.toml:18: volume must be written as [[volume]] sections"},
    {"SameName",
     volume("data") + "[[volume]]\nname = \"data\"\nnodes = [\"b1\", \"b3\"]\nsize = 4096\n"
                      "backing = \"/y\"\nnbd_socket = \"/run/y.sock\"\nreplication_port = 7790\n",
     // The second volume starts on line 23.
     "keel.toml:24: [[volume]] \"data\": another volume has this name (line 18)"},
    {"SamePort", volume("data") + volume("logs"),
     "keel.toml:23: [[volume]] \"logs\": replication_port 7789 is also used by volume \"data\" "
     "(line 18); give each volume its own port"},
    {"SameSocket",
     volume("data") + volume("logs",
                             "replication_port = 7790\n"
                             "nbd_socket = \"/run/keel/nbd-data.sock\"\n"),
     "keel.toml:29: [[volume]] \"logs\": nbd_socket /run/keel/nbd-data.sock is also used by "
     "volume \"data\" (line 18)"},
    {"SameListen",
     volume("data", "nbd_listen = \"198.18.0.10:10809\"\n") +
         volume("logs", "replication_port = 7790\nnbd_listen = \"198.18.0.10:10809\"\n"),
     "keel.toml:30: [[volume]] \"logs\": nbd_listen port 10809 on 198.18.0.10 is also used by "
     "volume \"data\" (line 18)"},
    // A wildcard takes the port on every address of the node, and "::" on IPv4 ones too.
    {"ListenWildcardOnASharedNode",
     volume("data", "nbd_listen = \"198.18.0.10:10809\"\n") +
         volume("logs", "replication_port = 7790\nnbd_listen = \"[::]:10809\"\n"),
     "keel.toml:30: [[volume]] \"logs\": nbd_listen port 10809 on :: is also used by volume "
     "\"data\" (line 18) (on 198.18.0.10)"},
    {"ListenOnTheReplicationPort", volume("data", "nbd_listen = \"0.0.0.0:7789\"\n"),
     "keel.toml:23: [[volume]] \"data\": nbd_listen 0.0.0.0 port 7789 is also its own "
     "replication_port on node \"b1\" (198.18.0.1); give them different ports"},
    {"ListenOnAnotherVolumesReplicationPort",
     volume("data") + volume("logs", "replication_port = 7790\nnbd_listen = \"198.18.0.2:7789\"\n"),
     "keel.toml:29: [[volume]] \"logs\": nbd_listen 198.18.0.2 port 7789 is also the "
     "replication_port of volume \"data\" (line 18) on node \"b2\" (198.18.0.2)"},
    {"SameBacking",
     volume("data") + "[[volume]]\nname = \"logs\"\nnodes = [\"b1\", \"b3\"]\nsize = 4096\n"
                      "backing = \"/var/lib/keel/volumes/data.img\"\nreplication_port = 7790\n",
     "keel.toml:27: [[volume]] \"logs\": backing /var/lib/keel/volumes/data.img on node \"b1\" "
     "is also the backing of volume \"data\" (line 18)"},
    {"MetadataIsOtherBacking",
     volume("data") + volume("logs",
                             "replication_port = 7790\n"
                             "metadata_on.b2 = \"/var/lib/keel/volumes/data.img\"\n"),
     "keel.toml:29: [[volume]] \"logs\": metadata /var/lib/keel/volumes/data.img on node \"b2\" "
     "is also the backing of volume \"data\" (line 18)"},
    // Paths are compared as spelt without "//", "/./" and "dir/..".
    {"SameBackingSpeltAnotherWay",
     volume("data") + "[[volume]]\nname = \"logs\"\nnodes = [\"b1\", \"b3\"]\nsize = 4096\n"
                      "backing = \"/var/lib/keel//volumes/./data.img\"\nreplication_port = 7790\n",
     "keel.toml:27: [[volume]] \"logs\": backing /var/lib/keel//volumes/./data.img on node \"b1\" "
     "is also the backing of volume \"data\" (line 18)"},
    {"MetadataIsBackingSpeltAnotherWay",
     volume("data", "metadata = \"/var/lib/keel/./tmp/../volumes//data.img\"\n"),
     "keel.toml:23: [[volume]] \"data\": metadata /var/lib/keel/./tmp/../volumes//data.img on node "
     "\"b2\" is also its backing; they must be separate files"},
    {"DefaultMetadataSpeltAnotherWay",
     volume("data") + volume("logs",
                             "replication_port = 7790\n"
                             "metadata_on.b2 = \"/var/lib/keel/volumes//data.img.keelmeta\"\n"),
     "keel.toml:29: [[volume]] \"logs\": metadata /var/lib/keel/volumes//data.img.keelmeta on "
     "node \"b2\" is also the metadata of volume \"data\" (line 18)"},
    {"SameSocketSpeltAnotherWay",
     volume("data") + volume("logs",
                             "replication_port = 7790\n"
                             "nbd_socket = \"/run//keel/./nbd-data.sock\"\n"),
     "keel.toml:29: [[volume]] \"logs\": nbd_socket /run//keel/./nbd-data.sock is also used by "
     "volume \"data\" (line 18)"},
    {"SocketIsTheControlSocket", volume("data", "nbd_socket = \"/run/keel/./keel.sock\"\n"),
     "keel.toml:23: [[volume]] \"data\": nbd_socket /run/keel/./keel.sock is the agent's control "
     "socket ([agent] control_socket); give the volume a socket of its own"},
    {"SocketIsTheConfiguredControlSocket",
     "[agent]\ncontrol_socket = \"/run/k/agent.sock\"\n" +
         volume("data", "nbd_socket = \"/run/k/agent.sock\"\n"),
     "keel.toml:25: [[volume]] \"data\": nbd_socket /run/k/agent.sock is the agent's control "
     "socket ([agent] control_socket); give the volume a socket of its own"},
};

class BadVolumeTest : public ::testing::TestWithParam<BadVolume> {};

TEST_P(BadVolumeTest, IsReportedWithItsLine) {
  EXPECT_THAT(volume_error_of(GetParam().text), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(VolumeConfig, BadVolumeTest, ::testing::ValuesIn(kBadVolumes),
                         [](const auto& test) { return std::string(test.param.name); });

TEST(VolumeConfig, UnknownKeyOutsideVolumeIsPlaced) {
  EXPECT_THAT(volume_error_of("[[volumes]]\nname = \"data\"\n"),
              HasSubstr("keel.toml:18: unknown section [[volumes]] (did you mean [[volume]]?)"));
}

}  // namespace
}  // namespace keel::config
