#pragma once
/// @file
/// @brief iwsec: the Infoworks REST API v3 security endpoints for any
/// cpp-httplib service. Include this one header.

#include "version.hpp"
#include "build_info.hpp"
#include "clock.hpp"
#include "errors.hpp"
#include "signer.hpp"
#include "keyring.hpp"
#include "password.hpp"
#include "user_store.hpp"
#include "json_file_user_store.hpp"
#include "revocation_store.hpp"
#include "lockout.hpp"
#include "lock_journal.hpp"
#include "metrics.hpp"
#include "observe.hpp"
#include "audit.hpp"
#include "options.hpp"
#include "routes.hpp"
#include "hardening.hpp"
#include "access_log.hpp"
#include "audit_file.hpp"
#include "operations_routes.hpp"
