// Text helpers for error messages: "did you mean" suggestions and number formatting.
#pragma once

#include <string>
#include <vector>

namespace coatnet::text {

// Levenshtein distance; used to suggest the closest known key or name.
size_t edit_distance(const std::string& a, const std::string& b);

// The candidate closest to `word`, or "" when none is plausibly a typo of it.
std::string closest(const std::string& word, const std::vector<std::string>& candidates);

// "  (did you mean 'x'?)" or "" — ready to append to a message.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

std::string join(const std::vector<std::string>& parts, const std::string& sep);
std::vector<std::string> split(const std::string& s, char sep);

// 25036820 -> "25,036,820"
std::string thousands(long long v);

}  // namespace coatnet::text
