/* stb_image_impl.c - the single compiled copy of stb_image (Debian's
 * libstb-dev, v2.27), configured for clipscore.
 *
 * Covers: which decoders are built and the limits they enforce. image.c reads
 * files itself and hands stb a memory buffer, so stdio support is left out;
 * the float (HDR-as-linear) API and the Softimage PIC decoder are left out as
 * nothing uses them (Pillow, the reference, reads no PIC either).
 * Leaves out: any decoding logic of our own (see image.c). */

/* Memory input only: image.c does the file I/O so that errors name the path
 * and truncation can be checked on the whole buffer before decoding. */
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_PIC
/* Refuses absurd sides (corrupt headers) early; stb_image checks its own
 * size arithmetic, and the pixel-count limit proper is checked by image.c
 * from the header before decoding. */
#define STBI_MAX_DIMENSIONS (1 << 20)
/* Failure strings stay on (STBI_NO_FAILURE_STRINGS is not defined): they are
 * quoted in our messages. stb_image keeps them in thread-local storage under
 * C11, so worker threads may decode at the same time. */
#define STB_IMAGE_IMPLEMENTATION

/* No warning pragmas are needed: CMake adds the stb folder as a SYSTEM
 * include directory, so the compiler keeps its warnings about the header's
 * code to itself, and this file has no code of its own. */
#include <stb_image.h>
