/* make_tiny_model.c - `make_tiny_model DIR [hf|openclip|openclip-resnet]
 * [seed]`: writes a tiny random CLIP folder for the command-line tests (see
 * tiny_model.h); openclip-resnet is the ResNet of tiny_resnet_spec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiny_model.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: make_tiny_model DIR [hf|openclip|openclip-resnet] [seed]\n");
        return 2;
    }
    const char *layout = argc > 2 ? argv[2] : "hf";
    int resnet = strcmp(layout, "openclip-resnet") == 0;
    tiny_spec s = resnet ? tiny_resnet_spec() : tiny_default_spec();
    cs_error e = {0};
    if (tiny_model_write(argv[1], resnet ? "openclip" : layout, &s,
                         argc > 3 ? (unsigned)atoi(argv[3]) : 1, 0, &e)) {
        fprintf(stderr, "make_tiny_model: %s\n", e.msg);
        return 1;
    }
    return 0;
}
