/* http_stream.h: the llhttp adapter for proxies. Unlike http.h it never
 * buffers bodies: it hands over the head once complete, then body bytes as
 * they are decoded (chunked framing removed), then completion. The parser
 * pauses after every message so that the caller answers pipelined requests
 * in order and resumes when ready. */
#ifndef PAASOPS_HTTP_STREAM_H
#define PAASOPS_HTTP_STREAM_H
#include "compat/http.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Header names a proxy looks at, recognised once per head (any case). */
enum http_hdr {
	HH_OTHER,
	HH_HOST,
	HH_CONTENT_LENGTH,
	HH_TRANSFER_ENCODING,
	HH_CONNECTION,
	HH_KEEP_ALIVE,
	HH_PROXY_CONNECTION,
	HH_TE,
	HH_TRAILER,
	HH_UPGRADE,
	HH_X_FORWARDED_FOR,
	HH_X_FORWARDED_PROTO,
	HH_X_FORWARDED_HOST,
	HH_X_REQUEST_ID,
	HH_COOKIE,
	HH_N
};

/* A parsed message head. Borrowed by callbacks; valid until the stream is
 * reset for the next message. */
struct http_head {
	char method[24];
	struct strbuf url;
	int status;
	int major, minor;
	struct http_header *headers;
	size_t n_headers, alloc_headers;
	unsigned char *ids;          /* [n_headers]: each header's enum http_hdr */
	size_t alloc_ids;
	const char *first[HH_N];     /* value of the first header of each kind, or NULL */
	unsigned count[HH_N];        /* how many headers of each kind */
	int64_t content_length; /* -1 when absent; over INT64_MAX is malformed */
	bool chunked;
	bool keep_alive;
	bool upgrade; /* the message asks for (request) or accepts (101 response) an upgrade */
};

struct http_stream_cbs {
	/* Head complete. Return 0 to continue, 1 when the message has no body
	 * (the answer to HEAD, 1xx/204/304 are known to llhttp already), -1 to
	 * abort (feed then returns -ECANCELED). */
	int (*on_head)(void *ctx, struct http_head *h);
	/* Decoded body bytes; return -1 to abort. */
	int (*on_body)(void *ctx, const char *data, size_t len);
	/* Message complete. The stream pauses after it. */
	void (*on_complete)(void *ctx);
};

struct http_stream;

struct http_stream *http_stream_new(enum http_kind kind, size_t max_header,
				    const struct http_stream_cbs *cbs, void *ctx);
void http_stream_free(struct http_stream *s);

enum {
	HTTP_STREAM_OK = 0,      /* everything consumed; want more */
	HTTP_STREAM_PAUSED = 1,  /* a message completed; *consumed bytes used */
	HTTP_STREAM_UPGRADED = 2 /* upgrade: the rest (after *consumed) is tunnel data */
};
/* Returns one of the above or a negative errno: -EMSGSIZE (head too big),
 * -EPROTO (malformed; http_stream_error() says why), -ECANCELED (a callback
 * aborted). */
int http_stream_feed(struct http_stream *s, const char *data, size_t len, size_t *consumed);
/* After -EMSGSIZE: true when the request target alone passed the limit. */
bool http_stream_url_too_long(const struct http_stream *s);
/* Signals EOF: completes a body delimited by close. Same returns. */
int http_stream_finish(struct http_stream *s);
/* After HTTP_STREAM_PAUSED: ready for the next message. */
void http_stream_next(struct http_stream *s);
const char *http_stream_error(const struct http_stream *s);
/* Whether a message has started (bytes of it were seen) but not completed. */
bool http_stream_in_message(const struct http_stream *s);
/* Case-insensitive header lookup in a head. */
const char *http_head_get(const struct http_head *h, const char *name);
/* Which of enum http_hdr a header name is (HH_OTHER for the rest). */
enum http_hdr http_hdr_id(const char *name, size_t len);

#endif
