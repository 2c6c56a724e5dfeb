/* gzip.c: zlib behind gzip.h. Whole-buffer deflate with the gzip wrapper
 * (windowBits 15 + 16), and the matching inflate. */
#include "compat/gzip.h"
#include <errno.h>
#include <limits.h>
#include "core/util.h"
#include <stdlib.h>
#include <zlib.h>

int gzip_compress(const void *in, size_t len, int level, struct strbuf *out)
{
	z_stream zs = {0};
	if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -EIO;
	size_t bound = deflateBound(&zs, (uLong)len);
	strbuf_grow(out, bound);
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	zs.next_out = (Bytef *)out->buf + out->len;
	zs.avail_out = (uInt)bound;
	int r = len > UINT_MAX ? Z_BUF_ERROR : deflate(&zs, Z_FINISH);
	if (r != Z_STREAM_END) {
		deflateEnd(&zs);
		return -EIO;
	}
	out->len += zs.total_out;
	out->buf[out->len] = '\0';
	deflateEnd(&zs);
	return 0;
}

struct gzip_deflater {
	z_stream zs;
};

struct gzip_deflater *gzip_deflater_new(int level)
{
	struct gzip_deflater *d = xcalloc(1, sizeof(*d));
	if (deflateInit2(&d->zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort(); /* only on out of memory or a bad level: a programming error */
	return d;
}

void gzip_deflater_free(struct gzip_deflater *d)
{
	if (!d)
		return;
	deflateEnd(&d->zs);
	free(d);
}

int gzip_deflater_compress(struct gzip_deflater *d, const void *in, size_t len, struct strbuf *out)
{
	z_stream *zs = &d->zs;
	if (len > UINT_MAX || deflateReset(zs) != Z_OK)
		return -EIO;
	size_t bound = deflateBound(zs, (uLong)len);
	strbuf_grow(out, bound);
	zs->next_in = (Bytef *)(uintptr_t)in;
	zs->avail_in = (uInt)len;
	zs->next_out = (Bytef *)out->buf + out->len;
	zs->avail_out = (uInt)bound;
	if (deflate(zs, Z_FINISH) != Z_STREAM_END)
		return -EIO;
	out->len += zs->total_out;
	out->buf[out->len] = '\0';
	return 0;
}

int gzip_decompress(const void *in, size_t len, size_t max, struct strbuf *out)
{
	z_stream zs = {0};
	if (len > UINT_MAX || inflateInit2(&zs, 15 + 16) != Z_OK)
		return -EINVAL;
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	size_t produced = 0;
	int r;
	do {
		strbuf_grow(out, 65536);
		zs.next_out = (Bytef *)out->buf + out->len;
		zs.avail_out = 65536;
		r = inflate(&zs, Z_NO_FLUSH);
		if (r != Z_OK && r != Z_STREAM_END) {
			inflateEnd(&zs);
			return -EINVAL;
		}
		size_t got = 65536 - zs.avail_out;
		produced += got;
		out->len += got;
		out->buf[out->len] = '\0';
		if (produced > max) {
			inflateEnd(&zs);
			return -EFBIG;
		}
		if (r == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
			inflateEnd(&zs);
			return -EINVAL; /* truncated */
		}
	} while (r != Z_STREAM_END);
	inflateEnd(&zs);
	return 0;
}

uint32_t gzip_crc32(uint32_t crc, const void *data, size_t len)
{
	const Bytef *p = data;
	while (len > 0) {
		uInt n = len > UINT_MAX ? UINT_MAX : (uInt)len;
		crc = (uint32_t)crc32(crc, p, n);
		p += n;
		len -= n;
	}
	return crc;
}
