/// @brief Users and their store, all parts at once: includes user.hpp, user_store_interface.hpp, accounts.hpp and memory_user_store.hpp.
/// @file
/// Each part is a header of its own; this one keeps `#include <iwsec/user_store.hpp>` working.
#pragma once

#include "user.hpp"
#include "user_store_interface.hpp"
#include "accounts.hpp"
#include "memory_user_store.hpp"
