// Precompiled for the test binaries: the host headers and GoogleTest.
#pragma once
#include "host.hpp"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
