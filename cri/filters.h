// CRI list filters: label selectors and ID prefix matching for the List RPCs.
#pragma once

#include <map>
#include <string>

#include "google/protobuf/map.h"

namespace kvcri::cri {

// CRI label selectors: every key in `selector` must be present in `labels`
// with the same value (an empty selector matches everything).
template <typename Labels>
bool MatchesSelector(const Labels& labels,
                     const google::protobuf::Map<std::string, std::string>& selector) {
  for (const auto& [key, value] : selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

// An ID filter matches the full ID or a prefix of it, as crictl sends either.
inline bool MatchesIdFilter(const std::string& id, const std::string& filter) {
  return filter.empty() || id.compare(0, filter.size(), filter) == 0;
}

}  // namespace kvcri::cri
