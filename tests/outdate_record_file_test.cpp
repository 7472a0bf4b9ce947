// The outdate records kept in the agent's state directory (src/io/outdate_record_file.hpp): what
// is written reads back the same; no file is no records; a damaged file is an error naming the
// line.
#include "io/outdate_record_file.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace keel::io {
namespace {

class OutdateRecordFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/keel-outdate-records-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  void write_text(const std::string& text) {
    std::ofstream(dir_ + "/" + kOutdateRecordsFile) << text;
  }
  std::string dir_;
};

TEST_F(OutdateRecordFileTest, WhatIsWrittenReadsBack) {
  const std::vector<volume::OutdateRecord> records{
      {"data", 2, 0xfedcba9876543210ull, 1},
      {"uploads-2", 5, 1, 4},
  };
  ASSERT_TRUE(write_outdate_records(dir_, records).ok());
  auto read = read_outdate_records(dir_);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read.value(), records);

  ASSERT_TRUE(write_outdate_records(dir_, {}).ok());  // the last record cleared
  read = read_outdate_records(dir_);
  ASSERT_TRUE(read.ok());
  EXPECT_TRUE(read.value().empty());
}

TEST_F(OutdateRecordFileTest, BlankLinesAreSkipped) {
  write_text("\ndata 2 3 1\n\n");
  auto read = read_outdate_records(dir_);
  ASSERT_TRUE(read.ok()) << read.error().message;
  ASSERT_EQ(read.value().size(), 1u);
  EXPECT_EQ(read.value()[0].generation, 3u);
}

TEST_F(OutdateRecordFileTest, NoFileIsNoRecords) {
  auto read = read_outdate_records(dir_);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_TRUE(read.value().empty());
}

TEST_F(OutdateRecordFileTest, ADamagedLineIsAnErrorNamingIt) {
  for (const std::string bad :
       {"data 2 3\n", "data 2 3 1 9\n", "data x 3 1\n", "data 0 3 1\n", "data 2 3 0\n",
        "data  2 3 1\n", "data 2 99999999999999999999999 1\n", "data 2 -3 1\n", "data 2 3 1 \n"}) {
    write_text("data 2 3 1\n" + bad);
    auto read = read_outdate_records(dir_);
    ASSERT_FALSE(read.ok()) << bad;
    EXPECT_NE(read.error().message.find(std::string(kOutdateRecordsFile) + ":2:"),
              std::string::npos)
        << read.error().message;
  }
}

}  // namespace
}  // namespace keel::io
