#pragma once
/// @file
/// @brief The library's version: the single source of truth for every build system.

#define IWSEC_VERSION_MAJOR 0
#define IWSEC_VERSION_MINOR 1
#define IWSEC_VERSION_PATCH 0
#define IWSEC_VERSION_STRING "0.1.0"
