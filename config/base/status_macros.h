// RETURN_IF_ERROR and ASSIGN_OR_RETURN for absl::Status and absl::StatusOr.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns the status of `expr` from the enclosing function when it is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    if (absl::Status kvcri_status_ = (expr);           \
        !kvcri_status_.ok()) {                         \
      return kvcri_status_;                            \
    }                                                  \
  } while (0)

#define KVCRI_CONCAT_INNER(a, b) a##b
#define KVCRI_CONCAT(a, b) KVCRI_CONCAT_INNER(a, b)

#define KVCRI_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()

// Binds the value of a StatusOr `expr` to `lhs`, or returns its status.
#define ASSIGN_OR_RETURN(lhs, expr) \
  KVCRI_ASSIGN_OR_RETURN_IMPL(KVCRI_CONCAT(kvcri_statusor_, __LINE__), lhs, expr)
