/* stb_image_write_impl.h - stb_image_write's implementation, file-local
 * (static), for the file that encodes JPEGs (figures.c) and for tests that
 * write image fixtures. Include it from one .c file each. */
#ifndef CLIPSCORE_STB_IMAGE_WRITE_IMPL_H
#define CLIPSCORE_STB_IMAGE_WRITE_IMPL_H

/* stb_image_write 1.16's JPEG bit writer shifts set bits out of a signed
 * int, which UBSan reports; two's-complement wrapping is what it means. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("shift-base"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("wrapv")
#endif
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#endif
