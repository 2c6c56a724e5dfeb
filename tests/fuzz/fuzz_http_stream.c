/* fuzz_http_stream.c: libFuzzer target for the streaming parser of
 * src/compat/http_stream (what the router reads requests and responses
 * with), in request and in response mode. The callbacks check the
 * invariants the proxy relies on:
 *   - header names and values never contain CR or LF;
 *   - callbacks come in order: one head, then body bytes, then at most one
 *     completion per message, and nothing after it until http_stream_next;
 *   - body bytes never exceed Content-Length when the head carried one;
 *   - PAUSED means a message completed, and the bytes it reports consumed
 *     are within what was fed.
 * The first byte chooses the split of the rest into two feeds and how
 * on_head answers (continue, "no body", or abort). */
#include "compat/http_stream.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADER 4096

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                       \
		}                                                                      \
	} while (0)

enum head_answer { ANSWER_CONTINUE, ANSWER_NO_BODY, ANSWER_ABORT };

struct state {
	enum http_kind kind;
	enum head_answer answer;
	bool in_head_done;    /* on_head ran for the current message */
	bool completed;       /* on_complete ran; no callback until next */
	int64_t content_length;
	uint64_t body;
	size_t messages;
};

static bool has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

static int on_head(void *ctx, struct http_head *h)
{
	struct state *st = ctx;
	CHECK(!st->completed);
	CHECK(!st->in_head_done);
	st->in_head_done = true;
	st->content_length = h->content_length;
	st->body = 0;
	CHECK(h->content_length >= -1);
	CHECK(strlen(h->method) < sizeof(h->method));
	CHECK(strlen(h->url.buf) <= h->url.len);
	/* llhttp 8 takes an empty target for CONNECT ("CONNECT \n"). */
	if (st->kind == HTTP_KIND_REQUEST)
		CHECK(h->method[0] && (h->url.len > 0 || strcmp(h->method, "CONNECT") == 0));
	else
		/* llhttp 8 takes 1 to 3 digits ("HTTP/1.1 3"). */
		CHECK(h->status >= 0 && h->status <= 999);
	for (size_t k = 0; k < h->n_headers; k++) {
		const struct http_header *hd = &h->headers[k];
		CHECK(hd->name && hd->value);
		if (has_crlf(hd->name) || has_crlf(hd->value)) {
			fprintf(stderr, "header with CR or LF: '%s: %s'\n", hd->name, hd->value);
			abort();
		}
		CHECK(http_head_get(h, hd->name) != NULL);
	}
	switch (st->answer) {
	case ANSWER_NO_BODY:
		return st->kind == HTTP_KIND_RESPONSE ? 1 : 0;
	case ANSWER_ABORT:
		return -1;
	default:
		return 0;
	}
}

static int on_body(void *ctx, const char *data, size_t len)
{
	struct state *st = ctx;
	CHECK(st->in_head_done && !st->completed);
	CHECK(len > 0);
	st->body += len;
	if (st->content_length >= 0 && st->body > (uint64_t)st->content_length) {
		fprintf(stderr, "body of %llu bytes exceeds Content-Length %lld\n",
			(unsigned long long)st->body, (long long)st->content_length);
		abort();
	}
	return 0;
}

static void on_complete(void *ctx)
{
	struct state *st = ctx;
	CHECK(st->in_head_done);
	CHECK(!st->completed);
	st->completed = true;
	st->messages++;
}

static const struct http_stream_cbs cbs = {on_head, on_body, on_complete};

/* A stream that stopped (error or upgrade) stays stopped: feeding it the
 * rest again, from another buffer as a caller's would be, gives the same
 * result and consumes nothing. */
static void check_stays_stopped(struct http_stream *s, int rc, const char *rest, size_t len)
{
	char *copy = malloc(len + 1);
	CHECK(copy);
	memcpy(copy, rest, len);
	size_t used = (size_t)-1;
	int again = http_stream_feed(s, copy, len, &used);
	if (again != rc || used != 0) {
		fprintf(stderr, "stopped stream fed again: rc %d then %d, consumed %zu of %zu\n", rc,
			again, used, len);
		abort();
	}
	free(copy);
}

/* Feeds data; returns false once the stream cannot go on (error, upgrade). */
static bool feed(struct http_stream *s, struct state *st, const char *data, size_t len)
{
	while (len) {
		size_t used = (size_t)-1;
		int rc = http_stream_feed(s, data, len, &used);
		CHECK(used <= len);
		switch (rc) {
		case HTTP_STREAM_OK:
			CHECK(used == len);
			CHECK(!st->completed);
			return true;
		case HTTP_STREAM_PAUSED:
			CHECK(st->completed);
			CHECK(!http_stream_in_message(s));
			CHECK(used > 0);
			http_stream_next(s);
			CHECK(!http_stream_in_message(s));
			st->completed = false;
			st->in_head_done = false;
			data += used;
			len -= used;
			break;
		case HTTP_STREAM_UPGRADED:
			check_stays_stopped(s, rc, data + used, len - used);
			return false;
		default:
			CHECK(rc == -EMSGSIZE || rc == -EPROTO || rc == -ECANCELED);
			CHECK(rc != -ECANCELED || st->answer == ANSWER_ABORT);
			CHECK(http_stream_error(s) != NULL);
			check_stays_stopped(s, rc, data + used, len - used);
			return false;
		}
	}
	return true;
}

static void run(enum http_kind kind, enum head_answer answer, const char *data, size_t len,
		size_t split)
{
	struct state st = {.kind = kind, .answer = answer, .content_length = -1};
	struct http_stream *s = http_stream_new(kind, MAX_HEADER, &cbs, &st);
	if (feed(s, &st, data, split) && feed(s, &st, data + split, len - split)) {
		int rc = http_stream_finish(s);
		if (rc == HTTP_STREAM_PAUSED)
			CHECK(st.completed);
		else
			CHECK(rc == HTTP_STREAM_OK || rc == -EMSGSIZE || rc == -EPROTO ||
			      rc == -ECANCELED || rc == HTTP_STREAM_UPGRADED);
	}
	http_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	/* Low two bits: how on_head answers; the other six: the split. */
	enum head_answer answer = (data[0] & 3) == 3 ? ANSWER_ABORT
				  : (data[0] & 3) == 2 ? ANSWER_NO_BODY
						       : ANSWER_CONTINUE;
	size_t split = (size_t)(data[0] >> 2) * (len + 1) / 64;
	run(HTTP_KIND_REQUEST, answer, in, len, split);
	run(HTTP_KIND_RESPONSE, answer, in, len, split);
	return 0;
}
