// The same checks with OpenSSL's deprecated API hidden (OPENSSL_NO_DEPRECATED
// makes <openssl/macros.h> define OPENSSL_NO_DEPRECATED_3_0, so SHA256_Transform
// is not even declared): iwsec must build and give identical results on EVP.
// This translation unit is its own program, so the two paths never meet.
#define OPENSSL_NO_DEPRECATED
#define IWSEC_EXPECT_LOW_LEVEL 0
#define IWSEC_PATH_NAME "EVP path (OPENSSL_NO_DEPRECATED)"
#include "support/crypto_path_checks.hpp"
