// The world of the MPI test binary (coatnet_dist_tests), for test files beside test_dist.cpp.
#pragma once

#include "dist/world.h"

coatnet::dist::World& test_world();
