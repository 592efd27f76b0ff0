/* webdataset.h - image/caption samples from webdataset tar shards and from
 * folders in img2dataset's "files" layout.
 *
 * Covers: telling a tar or a folder from a CSV input; reading a tar as a
 * stream with libarchive (any compression libarchive knows: gzip, bzip2, xz,
 * zstd...), grouping consecutive members into samples by key the way the
 * webdataset package does; walking a folder recursively in a fixed (sorted)
 * order and grouping its files the same way; the image, caption and json
 * members of each sample, the json's "url"; finding one sample by key.
 * Leaves out: decoding images (image.h), tokenizing captions, and anything
 * written to disk (nothing is extracted).
 *
 * Keys: a member's name (its path inside the tar, or the file's path relative
 * to the folder) is split at the first dot of its last path component: the
 * part before is the key, the rest the extension, compared lower-case
 * ("a/b.c/x.y.jpg" is key "a/b.c/x", extension "y.jpg"). Directories,
 * non-regular members and members whose last component has no dot or starts
 * with "." or "__" (webdataset's "__key__" and the like) are ignored.
 *
 * Failure reporting: what is wrong with one sample (no image, no caption, a
 * member over the size limit, an unreadable file, two members with the same
 * name) is the sample's `error`; a truncated or corrupt tar ends that tar
 * with one last sample carrying the error. Only out of memory and an input
 * that cannot be opened at all are fatal (negative status, message in e).
 * Every message names the tar or folder.
 *
 * Memory: a tar reader holds one sample's used members (image, caption,
 * json), in buffers reused from sample to sample; a folder reader holds the
 * sorted listing of each folder on the path it is walking. Neither grows with
 * the number of samples. */
#ifndef CLIPSCORE_WEBDATASET_H
#define CLIPSCORE_WEBDATASET_H

#include <stddef.h>

#include "util.h"

typedef struct cs_wds_sample {
    const char *key;     /* member path up to the first dot of its last path component
                            (webdataset's rule): "00000/000000012" */
    const char *caption; /* the caption member's bytes, NUL-terminated, one trailing "\n"
                            or "\r\n" removed; NULL when the sample has none */
    size_t caption_len;
    const char *url;            /* the json member's top-level "url" string when present, else
                                   NULL (a json member that does not parse is no error) */
    const unsigned char *image; /* tar: the image member's bytes (owned by the reader); NULL when
                                   none or for folders */
    size_t image_len;
    const char *image_path; /* folder layout: path of the image file (folder as given joined
                               with the relative path); NULL for tars */
    const char *image_ext;  /* the image member's extension as matched, e.g. "jpg"; NULL
                               when none */
    const char *error;      /* what is wrong with this sample (no image member, no caption
                               member, a member over the size limit, an unreadable file, a
                               truncated/corrupt tar) or NULL */
} cs_wds_sample;            /* all pointers valid until the next cs_wds_next/cs_wds_close */

typedef struct cs_wds_options {
    const char *image_key;   /* NULL: the first member whose extension is one of jpg jpeg png
                                webp gif bmp tif tiff jp2 j2k jpx avif heic heif ico ppm pgm pnm
                                tga psd hdr (case-insensitive); else that extension, or several
                                separated by ';' ("png;jpg"), the first member matching any */
    const char *caption_key; /* NULL: "txt" (';' alternatives as for image_key) */
    int skip_data;           /* 1: do not read image/caption/json data (counting samples): key
                                and error only (missing members still reported) */
    size_t max_member;       /* members larger than this are a sample error, not read
                                (0: 256 MiB) */
} cs_wds_options;

#define CS_WDS_MAX_MEMBER_DEFAULT ((size_t)256 << 20)

typedef struct cs_wds_reader cs_wds_reader;

/* 1: path is a webdataset tar (by name .tar .tar.gz .tgz .tar.bz2 .tar.xz .tar.zst, or a regular
 * file libarchive recognises as tar), 2: a folder (img2dataset "files" layout), 0: neither (a
 * CSV). Never reads from anything but a regular file (a pipe or "-" is 0 and left unread). */
int cs_wds_kind(const char *path);

/* Opens a tar or a folder (o may be NULL for the defaults). A path that cannot be opened is an
 * error (EIO) naming it; *out is NULL then. */
int cs_wds_open(const char *path, const cs_wds_options *o, cs_wds_reader **out, cs_error *e);

/* 1: *s holds the next sample; 0: end; negative: a fatal error (message in e).
 * A truncated or corrupt tar is not fatal: it yields one last sample whose key is the last key
 * read (or "" if none) and whose error names the tar, the last key and libarchive's message;
 * then 0. That sample is the one being read when the tar broke: even if all its members came
 * through, more of them may have followed, so it carries the error (and whatever data was read).
 * Folders: files are visited in strcmp order of their names, folder by folder depth first
 * (a subfolder at its place in its parent's sorted listing); a group of files with neither an
 * image nor a caption (img2dataset's .parquet and _stats.json beside the shard folders) is not
 * a sample; a subfolder that cannot be listed is a sample error (key: its relative path). */
int cs_wds_next(cs_wds_reader *r, cs_wds_sample *s, cs_error *e);
void cs_wds_close(cs_wds_reader *r);

/* Locates one sample by key (for re-drawing figures later): fills *s like cs_wds_next, 0 found,
 * 1 not found, negative error. The sample's data lives in *holder, which the caller closes with
 * cs_wds_close (NULL unless 0 is returned). Only the sample with that key is read; the others
 * are skipped. */
int cs_wds_find(const char *path, const cs_wds_options *o, const char *key, cs_wds_reader **holder,
                cs_wds_sample *s, cs_error *e);

/* Bytes the reader holds in its own buffers (sample data, folder listings), for tests: it stays
 * bounded by the largest sample, not the number of samples. libarchive's own read-ahead (a few
 * blocks per filter) is not counted. */
size_t cs_wds_memory_bytes(const cs_wds_reader *r);

#endif
