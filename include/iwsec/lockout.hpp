/// @brief Brute-force defence (modelled on Keycloak's), all parts at once: includes client_address.hpp, lockout_policy.hpp, lockout_interface.hpp and lockout_tracker.hpp.
/// @file
/// Failed credential checks are counted per account and per client, and
/// temporary locks answered 429. Each part is a header of its own; this one
/// keeps `#include <iwsec/lockout.hpp>` working.
#pragma once

#include "client_address.hpp"
#include "lockout_policy.hpp"
#include "lockout_interface.hpp"
#include "lockout_tracker.hpp"
