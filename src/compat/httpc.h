/* httpc.h: the one adapter to libcurl: outbound HTTP requests (webhooks,
 * Alertmanager) driven by the multi interface on a libuv loop, so they
 * never block it. */
#ifndef PAASOPS_HTTPC_H
#define PAASOPS_HTTPC_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct httpc;

/* Called once per request on the loop: status is the HTTP status, or a
 * negative value when no answer came (err says why; borrowed). */
typedef void (*httpc_done_cb)(void *ctx, int status, const char *err);

struct httpc *httpc_new(uv_loop_t *loop);
/* Cancels what is in flight (their callbacks are not called). */
void httpc_free(struct httpc *c);

/* POSTs body (copied) to url. headers: NULL-terminated "Name: value"
 * strings (copied), may be NULL. 0, or a negative errno (the callback is
 * then not called). */
int httpc_post(struct httpc *c, const char *url, const char *const *headers, const char *body,
	       size_t len, int64_t timeout_ms, httpc_done_cb cb, void *ctx);

#endif
