/* deploy_webhook.h: outbound webhooks for deploy events: a JSON body (or
 * a Slack-compatible {"text": ...}), signed with HMAC-SHA256 in the
 * X-Paasops-Signature header ("sha256=<hex>"), delivered off the loop with
 * retries (1 s doubling, 5 attempts) from a bounded queue. */
#ifndef PAASOPS_DEPLOY_WEBHOOK_H
#define PAASOPS_DEPLOY_WEBHOOK_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct json;
struct webhooks;

struct webhook_target {
	const char *url;
	const char *secret; /* may be NULL: unsigned */
	bool slack;         /* Slack-compatible body */
};

#define WEBHOOK_QUEUE_MAX 1000

struct webhooks *webhooks_new(uv_loop_t *loop);
void webhooks_free(struct webhooks *w);
/* Queues one delivery of event (e.g. "deploy.succeeded") with payload
 * (borrowed) and a one-line summary for Slack. Drops (and counts) when the
 * queue is full. */
void webhooks_send(struct webhooks *w, const struct webhook_target *t, const char *event,
		   const struct json *payload, const char *summary);
/* Counters: {"queued","sent","failed","dropped"}; caller frees. */
struct json *webhooks_stats_json(const struct webhooks *w);

#endif
