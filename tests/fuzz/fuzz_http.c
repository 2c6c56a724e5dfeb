/* fuzz_http.c: libFuzzer target for the message parser of src/compat/http
 * (requests and responses). The first byte chooses where the rest is split
 * in two feeds, so that every parser state is also entered across a feed
 * boundary. Messages are taken off one after the other as a connection
 * would (reset, then feed what was not consumed). Then the same parser is
 * reset and fed the whole input again with bodies streamed to a callback,
 * which must see the same body bytes as the buffered pass. */
#include "compat/http.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADER 4096
#define MAX_BODY 2048
#define MAX_MESSAGES 64 /* bodies compared between the two passes */

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* One pass over the input: what each completed message's body held. */
struct pass {
	size_t n_msgs;
	size_t body_len[MAX_MESSAGES];
	uint64_t body_sum[MAX_MESSAGES];
	size_t streamed;   /* bytes given to the body callback for the current message */
	uint64_t streamed_sum;
	bool stopped;      /* an error or an upgrade ended the pass */
};

static uint64_t sum_bytes(uint64_t acc, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++)
		acc = acc * 31 + (unsigned char)data[i];
	return acc;
}

static int on_body(void *ctx, const char *data, size_t len)
{
	struct pass *ps = ctx;
	CHECK(len > 0);
	ps->streamed += len;
	ps->streamed_sum = sum_bytes(ps->streamed_sum, data, len);
	return 0;
}

static void check_msg(struct http_parser *p, enum http_kind kind, struct pass *ps, bool streaming)
{
	struct http_msg *m = http_parser_msg(p);
	CHECK(strlen(m->method) < sizeof(m->method));
	if (kind == HTTP_KIND_REQUEST) {
		/* llhttp 8 takes an empty target for CONNECT ("CONNECT \n"). */
		CHECK(m->method[0] && (m->url.len > 0 || strcmp(m->method, "CONNECT") == 0));
		CHECK(strlen(m->url.buf) <= m->url.len);
	} else {
		/* llhttp 8 takes 1 to 3 digits ("HTTP/1.1 3"). */
		CHECK(m->status >= 0 && m->status <= 999);
	}
	for (size_t i = 0; i < m->n_headers; i++) {
		CHECK(m->headers[i].name && m->headers[i].value);
		CHECK(!strpbrk(m->headers[i].name, "\r\n"));
		(void)http_msg_header(m, m->headers[i].name);
	}
	size_t len = streaming ? ps->streamed : m->body.len;
	uint64_t sum = streaming ? ps->streamed_sum : sum_bytes(0, m->body.buf, m->body.len);
	if (!streaming)
		CHECK(m->body.len <= MAX_BODY);
	else
		CHECK(m->body.len == 0);
	if (ps->n_msgs < MAX_MESSAGES) {
		ps->body_len[ps->n_msgs] = len;
		ps->body_sum[ps->n_msgs] = sum;
	}
	ps->n_msgs++;
	ps->streamed = 0;
	ps->streamed_sum = 0;
}

/* Feeds data, taking off every message it completes. */
static void feed(struct http_parser *p, enum http_kind kind, struct pass *ps, bool streaming,
		 const char *data, size_t len)
{
	while (!ps->stopped && len) {
		size_t used = 0;
		int rc = http_parser_feed(p, data, len, &used);
		if (rc == HTTP_FEED_MORE) {
			CHECK(used == len);
			return;
		}
		if (rc < 0) {
			CHECK(rc == -EMSGSIZE || rc == -EFBIG || rc == -EPROTO);
			CHECK(http_parser_error(p) != NULL);
			ps->stopped = true;
			return;
		}
		/* A message ends on one of its own bytes: a caller looping
		 * over the rest must always make progress. */
		CHECK(rc == HTTP_FEED_COMPLETE);
		CHECK(used > 0 && used <= len);
		check_msg(p, kind, ps, streaming);
		http_parser_reset(p);
		data += used;
		len -= used;
	}
}

static void finish(struct http_parser *p, enum http_kind kind, struct pass *ps, bool streaming)
{
	if (ps->stopped)
		return;
	int rc = http_parser_finish(p);
	if (rc == HTTP_FEED_COMPLETE)
		check_msg(p, kind, ps, streaming);
	else
		CHECK(rc == HTTP_FEED_MORE || rc == -EMSGSIZE || rc == -EFBIG || rc == -EPROTO);
}

static void run(enum http_kind kind, const char *data, size_t len, size_t split)
{
	struct http_parser *p = http_parser_new(kind, MAX_HEADER, MAX_BODY);
	struct pass buffered = {0}, streamed = {0};
	feed(p, kind, &buffered, false, data, split);
	feed(p, kind, &buffered, false, data + split, len - split);
	finish(p, kind, &buffered, false);

	http_parser_reset(p);
	http_parser_stream_body(p, on_body, &streamed);
	feed(p, kind, &streamed, true, data, len);
	finish(p, kind, &streamed, true);
	/* Streaming lifts the body cap, so the streamed pass may get further;
	 * every message both passes completed must have the same body. */
	size_t n = buffered.n_msgs < streamed.n_msgs ? buffered.n_msgs : streamed.n_msgs;
	if (n > MAX_MESSAGES)
		n = MAX_MESSAGES;
	for (size_t i = 0; i < n; i++) {
		CHECK(buffered.body_len[i] == streamed.body_len[i]);
		CHECK(buffered.body_sum[i] == streamed.body_sum[i]);
	}
	http_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	size_t split = data[0] % (len + 1);
	run(HTTP_KIND_REQUEST, in, len, split);
	run(HTTP_KIND_RESPONSE, in, len, split);
	return 0;
}
