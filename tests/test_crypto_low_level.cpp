// HMAC, PBKDF2 and tokens on the default build: SHA-256 from precomputed states
// through OpenSSL's low-level compression function.
#define IWSEC_EXPECT_LOW_LEVEL 1
#define IWSEC_PATH_NAME "low-level SHA-256 path"
#include "support/crypto_path_checks.hpp"
