/// @brief Revoked access tokens, all parts at once: includes revocation_store_interface.hpp, memory_revocation_store.hpp, revocation_journal.hpp and journal_revocation_store.hpp.
/// @file
/// Each part is a header of its own; this one keeps `#include <iwsec/revocation_store.hpp>` working.
#pragma once

#include "revocation_store_interface.hpp"
#include "memory_revocation_store.hpp"
#include "revocation_journal.hpp"
#include "journal_revocation_store.hpp"
