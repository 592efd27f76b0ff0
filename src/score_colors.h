/* score_colors.h - how scores look wherever they are shown (the figures,
 * report.html): the colour map and the number of decimals, so that the two
 * agree. Header only: a few small inline functions. */
#ifndef CLIPSCORE_SCORE_COLORS_H
#define CLIPSCORE_SCORE_COLORS_H

#include <math.h>

/* viridis sampled at 8 evenly spaced points; interpolated linearly in sRGB,
 * which keeps it perceptually ordered and readable in grey. */
static const unsigned char cs_score_cmap_stops[8][3] = {
    {0x44, 0x01, 0x54}, {0x46, 0x33, 0x7E}, {0x36, 0x5C, 0x8D}, {0x27, 0x7F, 0x8E},
    {0x1F, 0xA1, 0x87}, {0x4A, 0xC1, 0x6D}, {0x9F, 0xDA, 0x3A}, {0xFD, 0xE7, 0x25},
};
#define CS_SCORE_CMAP_N 8

/* The colour of t in [0, 1] (clamped; NaN is 0), each channel in [0, 1]. */
static inline void cs_score_cmap(double t, double rgb[3]) {
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    double pos = t * (CS_SCORE_CMAP_N - 1);
    int i = (int)pos;
    if (i > CS_SCORE_CMAP_N - 2) i = CS_SCORE_CMAP_N - 2;
    double f = pos - i;
    for (int c = 0; c < 3; c++)
        rgb[c] = (cs_score_cmap_stops[i][c] +
                  f * (cs_score_cmap_stops[i + 1][c] - cs_score_cmap_stops[i][c])) /
                 255.0;
}

/* Black (1) or white (0) text, whichever contrasts more with the colour
 * (WCAG relative luminance). */
static inline int cs_score_dark_text(const double rgb[3]) {
    double l = 0;
    static const double w[3] = {0.2126, 0.7152, 0.0722};
    for (int c = 0; c < 3; c++) {
        double v = rgb[c];
        l += w[c] * (v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4));
    }
    return l > 0.179;
}

/* Decimals enough to tell apart scores spread over a range this wide. */
static inline int cs_score_decimals(double range) {
    return range >= 0.05 ? 3 : range >= 0.005 ? 4 : 5;
}

/* A score with that many decimals, never "-0.000". */
static inline double cs_score_rounded(double v, int decimals) {
    return fabs(v) < 0.5 * pow(10, -decimals) ? 0.0 : v;
}

#endif
