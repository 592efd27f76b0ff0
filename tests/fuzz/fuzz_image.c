/* fuzz_image.c - fuzzes image sniffing and decoding (image.h) for every
 * format: the input is an image file, loaded from memory with a 4-megapixel
 * limit (so running out of memory on a valid huge image is not the finding),
 * then preprocessed to 224 x 224 as CLIP does and thumbnailed for figures.
 *
 * Invariants: a decoded image has a sane size and 1-4 channels and all its
 * bytes are readable; preprocessing succeeds with finite values inside the
 * range normalisation allows; the thumbnail is RGB and fits its box. */
#include <math.h>
#include <string.h>

#include "fuzz_common.h"
#include "image.h"

#define MAX_PIXELS (4 << 20)
#define THUMB 48

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

static float out[3 * 224 * 224];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cs_image img;
    cs_error e = {0};
    int rc = cs_image_load_memory(data, size, "fuzz", MAX_PIXELS, &img, &e);
    if (rc) {
        FUZZ_CHECK_ERROR(rc, e);
        FUZZ_CHECK(img.px == NULL, "pixels returned on failure");
        return 0;
    }
    FUZZ_CHECK(img.w >= 1 && img.h >= 1 && (int64_t)img.w * img.h <= MAX_PIXELS,
               "decoded %dx%d over the limit", img.w, img.h);
    FUZZ_CHECK(img.channels >= 1 && img.channels <= 4 && img.px, "%d channels", img.channels);
    size_t bytes = (size_t)img.w * img.h * (size_t)img.channels;
    unsigned sum = 0;
    for (size_t i = 0; i < bytes; i++) sum += img.px[i];
    (void)sum;

    cs_preprocess_cfg cfg = cs_preprocess_default();
    rc = cs_image_preprocess(&img, &cfg, out, &e);
    if (rc) {
        /* Only an extreme aspect ratio (long side past 2^24) may refuse. */
        FUZZ_CHECK_ERROR(rc, e);
        FUZZ_CHECK(rc == CLIPSCORE_ELIMIT || rc == CLIPSCORE_ENOMEM, "preprocess: %s", e.msg);
    } else {
        for (int c = 0; c < 3; c++) {
            float lo = (0 - cfg.mean[c]) / cfg.std[c] - 1e-3f;
            float hi = (1 - cfg.mean[c]) / cfg.std[c] + 1e-3f;
            for (int i = 0; i < 224 * 224; i++) {
                float v = out[c * 224 * 224 + i];
                FUZZ_CHECK(isfinite(v) && v >= lo && v <= hi, "value %g outside [%g, %g]",
                           (double)v, (double)lo, (double)hi);
            }
        }
    }

    cs_image th;
    rc = cs_image_thumbnail(&img, THUMB, &th, &e);
    if (rc) {
        FUZZ_CHECK_ERROR(rc, e);
        FUZZ_CHECK(rc == CLIPSCORE_ENOMEM || rc == CLIPSCORE_ELIMIT, "thumbnail: %s", e.msg);
    } else {
        FUZZ_CHECK(th.channels == 3 && th.w >= 1 && th.h >= 1 && th.w <= THUMB && th.h <= THUMB &&
                       (th.w == THUMB || th.h == THUMB),
                   "thumbnail %dx%dx%d for %dx%d", th.w, th.h, th.channels, img.w, img.h);
        cs_image_free(&th);
    }
    cs_image_free(&img);
    return 0;
}
