/* strbuf.h: a growable byte buffer that is always NUL-terminated.
 * Invariant: buf is never NULL after strbuf_init; buf[len] == '\0'. */
#ifndef PAASOPS_STRBUF_H
#define PAASOPS_STRBUF_H
#include <stddef.h>

struct strbuf {
	char *buf;
	size_t len;
	size_t alloc;
};

void strbuf_init(struct strbuf *sb, size_t hint);
void strbuf_release(struct strbuf *sb);
void strbuf_reset(struct strbuf *sb);
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_add(struct strbuf *sb, const void *data, size_t n);
void strbuf_adds(struct strbuf *sb, const char *s);
void strbuf_addc(struct strbuf *sb, char c);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Removes the first n bytes. */
void strbuf_consume(struct strbuf *sb, size_t n);
/* Hands the buffer to the caller (who frees it) and re-initialises sb. */
char *strbuf_detach(struct strbuf *sb, size_t *len);

#endif
