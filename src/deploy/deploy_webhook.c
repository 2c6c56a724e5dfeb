/* deploy_webhook.c: signed webhook deliveries with retries (see
 * deploy_webhook.h). Deliveries wait in a list ordered by nothing in
 * particular; a timer ticks every 250 ms while any wait for a retry. */
#include "deploy/deploy_webhook.h"
#include "compat/crypto.h"
#include "compat/httpc.h"
#include "compat/json.h"
#include "core/log.h"
#include "core/util.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ATTEMPTS 5
#define FIRST_RETRY_MS 1000
#define TIMEOUT_MS 10000

struct delivery {
	struct webhooks *w;
	char *url, *body, *event, *signature;
	bool slack;
	int attempts;
	int64_t next_at; /* monotonic ms; 0 while in flight */
	struct delivery *next;
};

struct webhooks {
	uv_loop_t *loop;
	struct httpc *http;
	uv_timer_t *tick;
	struct delivery *list;
	int n;
	uint64_t sent, failed, dropped;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void delivery_free(struct delivery *d)
{
	free(d->url);
	free(d->body);
	free(d->event);
	free(d->signature);
	free(d);
}

static void unlink_delivery(struct webhooks *w, struct delivery *d)
{
	for (struct delivery **p = &w->list; *p; p = &(*p)->next) {
		if (*p == d) {
			*p = d->next;
			w->n--;
			return;
		}
	}
}

static void attempt(struct delivery *d);
static void on_tick(uv_timer_t *t);

static void done(void *ctx, int status, const char *err)
{
	struct delivery *d = ctx;
	struct webhooks *w = d->w;
	if (status >= 200 && status < 300) {
		w->sent++;
		unlink_delivery(w, d);
		delivery_free(d);
		return;
	}
	if (d->attempts >= ATTEMPTS) {
		w->failed++;
		if (err)
			log_warn("webhook %s to %s failed after %d attempts: %s", d->event, d->url, d->attempts, err);
		else
			log_warn("webhook %s to %s failed after %d attempts: status %d", d->event, d->url,
				 d->attempts, status);
		unlink_delivery(w, d);
		delivery_free(d);
		return;
	}
	int64_t delay = FIRST_RETRY_MS;
	for (int k = 1; k < d->attempts; k++)
		delay *= 2;
	d->next_at = mono_ms() + delay;
	if (!uv_is_active((uv_handle_t *)w->tick))
		uv_timer_start(w->tick, on_tick, 250, 250);
}

static void on_tick(uv_timer_t *t)
{
	struct webhooks *w = t->data;
	int64_t now = mono_ms();
	bool waiting = false;
	for (struct delivery *d = w->list; d; d = d->next) {
		if (d->next_at && d->next_at <= now)
			attempt(d);
		else if (d->next_at)
			waiting = true;
	}
	if (!waiting)
		uv_timer_stop(t);
}

static void attempt(struct delivery *d)
{
	struct webhooks *w = d->w;
	d->attempts++;
	d->next_at = 0;
	char ev[160];
	snprintf(ev, sizeof(ev), "X-Paasops-Event: %s", d->event);
	const char *headers[] = {"Content-Type: application/json", ev, d->signature, NULL};
	if (httpc_post(w->http, d->url, headers, d->body, strlen(d->body), TIMEOUT_MS, done, d) < 0)
		done(d, -1, "cannot start the request");
}

struct webhooks *webhooks_new(uv_loop_t *loop)
{
	struct webhooks *w = xcalloc(1, sizeof(*w));
	w->loop = loop;
	w->http = httpc_new(loop);
	w->tick = xcalloc(1, sizeof(*w->tick));
	uv_timer_init(loop, w->tick);
	w->tick->data = w;
	return w;
}

void webhooks_free(struct webhooks *w)
{
	if (!w)
		return;
	httpc_free(w->http);
	while (w->list) {
		struct delivery *d = w->list;
		w->list = d->next;
		delivery_free(d);
	}
	uv_close((uv_handle_t *)w->tick, (uv_close_cb)free);
	free(w);
}

void webhooks_send(struct webhooks *w, const struct webhook_target *t, const char *event,
		   const struct json *payload, const char *summary)
{
	if (w->n >= WEBHOOK_QUEUE_MAX) {
		w->dropped++;
		return;
	}
	struct delivery *d = xcalloc(1, sizeof(*d));
	d->w = w;
	d->url = xstrdup(t->url);
	d->event = xstrdup(event);
	d->slack = t->slack;
	if (t->slack) {
		struct json *o = json_object();
		json_set_str(o, "text", summary);
		d->body = json_print(o, false);
		json_free(o);
	} else {
		d->body = json_print(payload, false);
	}
	if (t->secret && *t->secret) {
		char mac[CRYPTO_SHA256_HEX];
		crypto_hmac_sha256_hex(t->secret, strlen(t->secret), d->body, strlen(d->body), mac);
		d->signature = xasprintf("X-Paasops-Signature: sha256=%s", mac);
	} else {
		d->signature = xstrdup("X-Paasops-Signature:");
	}
	d->next = w->list;
	w->list = d;
	w->n++;
	attempt(d);
}

struct json *webhooks_stats_json(const struct webhooks *w)
{
	struct json *o = json_object();
	json_set_int(o, "queued", w->n);
	json_set_int(o, "sent", (int64_t)w->sent);
	json_set_int(o, "failed", (int64_t)w->failed);
	json_set_int(o, "dropped", (int64_t)w->dropped);
	return o;
}
