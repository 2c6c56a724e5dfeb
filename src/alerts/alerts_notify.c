/* alerts_notify.c: what each notifier posts for a batch of notes (one batch
 * per evaluation). Delivery itself (bounded queue, retries, HMAC signature)
 * is deploy_webhook.h's; this file only shapes bodies:
 *
 *   webhook       {"version":"1","event":"alert.firing","status":...,"alerts":[...]}
 *   slack         {"text": "[FIRING] Name (severity): summary\n..."}
 *   alertmanager  [{"labels":{},"annotations":{},"startsAt","endsAt","generatorURL"}]
 *                 (Alertmanager's API v2; reminders are not sent: Alertmanager
 *                 has its own repeat_interval, and gets periodic resends) */
#include "alerts/alerts_internal.h"
#include "compat/crypto.h"
#include "compat/json.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLACK_MAX_LINES 20

static void set_iso(struct json *o, const char *key, int64_t ms)
{
	if (!ms) {
		json_set(o, key, json_null());
		return;
	}
	char ts[40];
	time_format_iso(ms, ts, sizeof(ts));
	json_set_str(o, key, ts);
}

static struct json *labels_json(const struct al_alert *x)
{
	struct json *l = json_object();
	for (size_t k = 0; k < x->n_labels; k++)
		json_set_str(l, x->labels[k].name, x->labels[k].value);
	return l;
}

static struct json *annotations_json(const struct al_alert *x)
{
	struct json *an = json_object();
	if (x->summary)
		json_set_str(an, "summary", x->summary);
	if (x->description)
		json_set_str(an, "description", x->description);
	return an;
}

static char *generator_url(const struct al_alert *x, const char *external_url)
{
	return xasprintf("%s/v1/alerts", external_url);
}

/* One alert in Alertmanager's API v2 form. */
static struct json *am_alert(const struct al_note *nt, const char *external_url, int64_t now,
			     int64_t valid_ms)
{
	const struct al_alert *x = nt->alert;
	struct json *o = json_object();
	json_set(o, "labels", labels_json(x));
	json_set(o, "annotations", annotations_json(x));
	set_iso(o, "startsAt", x->fired_at ? x->fired_at : now);
	/* Firing: valid for a while, renewed by every resend; resolved: ended. */
	set_iso(o, "endsAt", nt->kind == AL_NOTE_RESOLVED ? x->resolved_at : now + valid_ms);
	char *url = generator_url(x, external_url);
	json_set_str(o, "generatorURL", url);
	free(url);
	return o;
}

static struct json *webhook_alert(const struct al_note *nt, const char *external_url)
{
	const struct al_alert *x = nt->alert;
	struct json *o = json_object();
	json_set_str(o, "status", nt->kind == AL_NOTE_RESOLVED ? "resolved" : "firing");
	json_set_bool(o, "reminder", nt->kind == AL_NOTE_REMINDER);
	json_set_str(o, "name", x->name);
	json_set_str(o, "severity", x->severity);
	json_set(o, "labels", labels_json(x));
	json_set(o, "annotations", annotations_json(x));
	if (isfinite(x->value))
		json_set_num(o, "value", x->value);
	else
		json_set(o, "value", json_null());
	set_iso(o, "startsAt", x->fired_at);
	set_iso(o, "endsAt", nt->kind == AL_NOTE_RESOLVED ? x->resolved_at : 0);
	char *url = generator_url(x, external_url);
	json_set_str(o, "generatorURL", url);
	free(url);
	char fp[CRYPTO_SHA256_HEX];
	crypto_sha256_hex(x->fp, strlen(x->fp), fp);
	fp[16] = '\0';
	json_set_str(o, "fingerprint", fp);
	return o;
}

char *al_note_line(const struct al_note *nt)
{
	static const char *const tags[] = {[AL_NOTE_FIRING] = "FIRING",
					   [AL_NOTE_REMINDER] = "STILL FIRING",
					   [AL_NOTE_RESOLVED] = "RESOLVED"};
	const struct al_alert *x = nt->alert;
	struct strbuf sb;
	strbuf_init(&sb, 128);
	strbuf_addf(&sb, "[%s] %s (%s)", tags[nt->kind], x->name, x->severity);
	if (x->summary)
		strbuf_addf(&sb, ": %s", x->summary);
	return strbuf_detach(&sb, NULL);
}

char *al_url_redact(const char *url)
{
	const char *sep = strstr(url, "://");
	if (!sep)
		return xstrdup("?");
	const char *host = sep + 3;
	size_t auth = strcspn(host, "/?#");
	const char *at = memchr(host, '@', auth); /* user:password@host */
	if (at)
		host = at + 1;
	return xasprintf("%.*s://%.*s", (int)(sep - url), url, (int)strcspn(host, "/?#"), host);
}

struct json *al_notify_body(const struct al_notifier *n, const struct al_note *notes, size_t cnt,
			    const char *external_url, int64_t now, int64_t valid_ms, bool test,
			    const char **event)
{
	bool firing = false;
	for (size_t k = 0; k < cnt; k++)
		firing |= notes[k].kind != AL_NOTE_RESOLVED;
	*event = test ? "alert.test" : firing ? "alert.firing" : "alert.resolved";
	switch (n->kind) {
	case ALERTS_ALERTMANAGER: {
		struct json *arr = json_array();
		size_t sent = 0;
		for (size_t k = 0; k < cnt; k++) {
			if (notes[k].kind == AL_NOTE_REMINDER)
				continue;
			json_append(arr, am_alert(&notes[k], external_url, now, valid_ms));
			sent++;
		}
		if (!sent) {
			json_free(arr);
			return NULL;
		}
		return arr;
	}
	case ALERTS_SLACK: {
		struct strbuf sb;
		strbuf_init(&sb, 256);
		if (test)
			strbuf_adds(&sb, "paasops: test notification\n");
		for (size_t k = 0; k < cnt && k < SLACK_MAX_LINES; k++) {
			char *line = al_note_line(&notes[k]);
			strbuf_addf(&sb, "%s%s", k ? "\n" : "", line);
			free(line);
		}
		if (cnt > SLACK_MAX_LINES)
			strbuf_addf(&sb, "\n... and %zu more", cnt - SLACK_MAX_LINES);
		struct json *o = json_object();
		json_set_str(o, "text", sb.buf);
		strbuf_release(&sb);
		return o;
	}
	case ALERTS_WEBHOOK: {
		struct json *o = json_object();
		json_set_str(o, "version", "1");
		json_set_str(o, "event", *event);
		json_set_str(o, "status", firing ? "firing" : "resolved");
		set_iso(o, "time", now);
		json_set_bool(o, "test", test);
		struct json *arr = json_set(o, "alerts", json_array());
		for (size_t k = 0; k < cnt; k++)
			json_append(arr, webhook_alert(&notes[k], external_url));
		return o;
	}
	}
	return NULL;
}
