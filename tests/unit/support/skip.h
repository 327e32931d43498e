// skip.h: how a unit test says "this machine cannot run me" (Catch2 2.13 has no SKIP).
//
// VNOPFS_SKIP(reason) writes "SKIP: reason" to std::cerr, which Catch2's JUnit reporter keeps in the test
// case's <system-err>, and returns from the test case. scripts/test counts such a case as skipped (not
// passed), prints the reason, and under CI=true counts it as failed when its own probe (one that does not
// use the code under test) says the machine has what the reason names. So a reason must name the missing
// capability in the words scripts/test knows: "io_uring", "O_DIRECT", "root", "/dev/fuse". Skip only
// for a capability the machine lacks; an open failure of something it has is a test failure.
#pragma once

#include <iostream>

#define VNOPFS_SKIP(reason)                         \
  do {                                              \
    std::cerr << "SKIP: " << reason << std::endl;   \
    return;                                         \
  } while (0)
