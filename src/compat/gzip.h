/* gzip.h: the one adapter to zlib. Compresses whole buffers into the gzip
 * format (RFC 1952) for HTTP "Content-Encoding: gzip", decompresses them
 * back (tests, clients), and computes CRC-32 checksums for files the daemon
 * writes. The rest of paasops never sees zlib's types. */
#ifndef PAASOPS_GZIP_H
#define PAASOPS_GZIP_H
#include "core/strbuf.h"
#include <stddef.h>
#include <stdint.h>

/* Appends the gzip encoding of len bytes of in to out. level: 1 (fastest)
 * to 9 (smallest). Returns 0 or -EIO. */
int gzip_compress(const void *in, size_t len, int level, struct strbuf *out);
/* A compressor kept for many buffers: its state is allocated once, so
 * compressing many small buffers costs no more than one large one. */
struct gzip_deflater;
/* level: 1 (fastest) to 9 (smallest). Caller frees with gzip_deflater_free. */
struct gzip_deflater *gzip_deflater_new(int level);
void gzip_deflater_free(struct gzip_deflater *d);
/* Like gzip_compress, with d's level. */
int gzip_deflater_compress(struct gzip_deflater *d, const void *in, size_t len, struct strbuf *out);
/* Appends the decompressed contents of a gzip stream to out, refusing to
 * produce more than max bytes. Returns 0, -EINVAL for a damaged or truncated
 * stream, -EFBIG when the output would exceed max. */
int gzip_decompress(const void *in, size_t len, size_t max, struct strbuf *out);
/* Continues a CRC-32 (start with crc 0) over len bytes. */
uint32_t gzip_crc32(uint32_t crc, const void *data, size_t len);

#endif
