/* http.h: the one adapter to llhttp. Parses HTTP/1.1 requests (server side)
 * or responses (client side) into whole messages with bounded header and
 * body sizes, or streams response bodies to a callback. */
#ifndef PAASOPS_HTTP_H
#define PAASOPS_HTTP_H
#include "core/strbuf.h"
#include <stdbool.h>
#include <stddef.h>

enum http_kind { HTTP_KIND_REQUEST, HTTP_KIND_RESPONSE };

struct http_header {
	char *name;
	char *value;
};

/* One parsed message. Owned by its parser; valid until the next feed after
 * the message completed, or http_parser_free(). */
struct http_msg {
	char method[16];   /* requests */
	struct strbuf url; /* requests: the raw request target */
	int status;        /* responses */
	struct http_header *headers;
	size_t n_headers, alloc_headers;
	struct strbuf body;
	bool keep_alive;
	bool chunked;
};

/* Called for each body chunk when streaming is on; return non-zero to stop. */
typedef int (*http_body_cb)(void *ctx, const char *data, size_t len);

struct http_parser;

/* Called when a message's head is complete, before its body. It may switch
 * the body to streaming (http_parser_stream_body) or change the body cap
 * (http_parser_max_body). Return 0, or -1 to abort: feed then returns
 * -ECANCELED. */
typedef int (*http_head_cb)(void *ctx, struct http_msg *m);

/* max_header: total bytes of the head; max_body: body cap (0 = unlimited,
 * only sensible when streaming). Caller frees with http_parser_free(). */
struct http_parser *http_parser_new(enum http_kind kind, size_t max_header, size_t max_body);
void http_parser_free(struct http_parser *p);
/* Streams body bytes to cb instead of buffering them (cb NULL: buffer). */
void http_parser_stream_body(struct http_parser *p, http_body_cb cb, void *ctx);
void http_parser_on_head(struct http_parser *p, http_head_cb cb, void *ctx);
void http_parser_max_body(struct http_parser *p, size_t max_body);

enum http_feed_result {
	HTTP_FEED_MORE = 0,     /* need more input */
	HTTP_FEED_COMPLETE = 1, /* a whole message is in http_parser_msg() */
};
/* Feeds bytes. Returns HTTP_FEED_MORE, HTTP_FEED_COMPLETE (with *consumed
 * bytes used; the rest belongs to the next message), or a negative value:
 * -EMSGSIZE for a too-large head, -EFBIG for a too-large body, -EPROTO for
 * malformed input (message in http_parser_error()). */
int http_parser_feed(struct http_parser *p, const char *data, size_t len, size_t *consumed);
/* Signals EOF (responses without length end here). Same returns as feed. */
int http_parser_finish(struct http_parser *p);
struct http_msg *http_parser_msg(struct http_parser *p);
const char *http_parser_error(const struct http_parser *p);
/* Prepares for the next message on the same connection. */
void http_parser_reset(struct http_parser *p);

/* Case-insensitive header lookup; borrowed value or NULL. */
const char *http_msg_header(const struct http_msg *m, const char *name);

/* Standard reason phrase for a status code ("Not Found"). */
const char *http_reason(int status);
/* Percent-decodes in place; returns -EINVAL on bad escapes. '+' becomes ' '
 * when plus_is_space. */
int http_url_decode(char *s, bool plus_is_space);
/* Percent-encodes a query or path component; caller frees. */
char *http_url_encode(const char *s);

#endif
