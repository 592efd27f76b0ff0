/* test_pixels.h - one decoded image against expected pixels, for the
 * decoder tests (test_decoders.c, test_formats.c): size, channels, the
 * palette flag and every byte, the first differing byte named. */
#ifndef CLIPSCORE_TEST_PIXELS_H
#define CLIPSCORE_TEST_PIXELS_H

#include "image.h"
#include "test.h"

static inline void check_image_pixels(const char *what, const cs_image *img, int w, int h, int ch,
                                      int palette, const unsigned char *want) {
    CHECK_MSG(img->w == w && img->h == h && img->channels == ch && img->palette == palette,
              "%s: %dx%d, %d channels, palette %d; want %dx%d, %d, %d", what, img->w, img->h,
              img->channels, img->palette, w, h, ch, palette);
    if (img->w != w || img->h != h || img->channels != ch) return;
    size_t total = (size_t)w * h * ch, i = 0;
    while (i < total && img->px[i] == want[i]) i++;
    CHECK_MSG(i == total, "%s: byte %zu is %d, want %d", what, i, i < total ? img->px[i] : 0,
              i < total ? want[i] : 0);
}

#endif
