#include "core/common/median.hpp"

#include <gtest/gtest.h>

namespace keel {
namespace {

TEST(MedianTest, TakesTheMiddleValueOfAnOddCount) { EXPECT_DOUBLE_EQ(median({5, 1, 3}), 3); }

TEST(MedianTest, AveragesTheMiddleTwoOfAnEvenCount) { EXPECT_DOUBLE_EQ(median({4, 1, 3, 2}), 2.5); }

TEST(MedianTest, IsZeroForNoValues) { EXPECT_DOUBLE_EQ(median({}), 0); }

}  // namespace
}  // namespace keel
