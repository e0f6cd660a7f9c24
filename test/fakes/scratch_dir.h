// ScratchDirTest: a gtest fixture base with a fresh scratch directory per test.
#pragma once

// A gtest fixture base with a fresh scratch directory per test:
// /tmp/kvcri-unit-XXXXXX in dir_, removed with its contents afterwards.

#include <stdlib.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace kvcri::testing {

class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kvcri-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    EXPECT_FALSE(ec) << "remove " << dir_ << ": " << ec.message();
  }

  std::filesystem::path dir_;
};

}  // namespace kvcri::testing
