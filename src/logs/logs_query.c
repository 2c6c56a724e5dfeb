/* logs_query.c: filters and the query language of the logs.
 *
 *   q      := or
 *   or     := and ("OR" and)*
 *   and    := unary (["AND"] unary)*        juxtaposition means AND
 *   unary  := "NOT" unary | "-" unary | primary
 *   primary:= "(" or ")" | '"' phrase '"' | key ":" value | word
 *
 * A word or phrase matches a line that contains it, ASCII case ignored,
 * starting and ending at word boundaries where its own first and last
 * characters are word characters ("err" does not match "error", "/api/"
 * matches "GET /api/users"). Because every word inside a needle is then a
 * whole word of the line, a chunk whose bloom filter lacks one of them
 * cannot match. key:value compares a lifted field (case of the value
 * ignored) or one of the record's own app, process, instance, stream,
 * level, release; the last three are checked as their filters are.
 * Operators are upper case; "and" is a word. */
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "logs/logs_internal.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- nodes ---- */

static struct logs_node *node_new(enum logs_node_kind kind)
{
	struct logs_node *n = xcalloc(1, sizeof(*n));
	n->kind = kind;
	return n;
}

void logs_node_free(struct logs_node *n)
{
	if (!n)
		return;
	logs_node_free(n->a);
	logs_node_free(n->b);
	free(n->text);
	free(n->key);
	free(n->hashes);
	free(n);
}

static void hash_collect(void *ctx, uint64_t h)
{
	struct logs_node *n = ctx;
	n->hashes = xrealloc(n->hashes, (n->n_hashes + 1) * sizeof(*n->hashes));
	n->hashes[n->n_hashes++] = h;
}

static const char *const builtin_keys[] = {"app", "process", "instance", "stream", "level", "release"};

static bool is_builtin(const char *key)
{
	for (size_t k = 0; k < ARRAY_SIZE(builtin_keys); k++)
		if (strcmp(key, builtin_keys[k]) == 0)
			return true;
	return false;
}

static struct logs_node *term_new(const char *s, size_t len)
{
	struct logs_node *n = node_new(LOGS_Q_TERM);
	n->text = xstrndup(s, len);
	n->len = len;
	for (size_t k = 0; k < len; k++)
		n->text[k] = logs_lower(n->text[k]);
	logs_words(n->text, len, hash_collect, n);
	return n;
}

/* ---- the record's own values ---- */

/* stream, level and release take the same values as filters (stream=,
 * level=, release=) and in a query (stream:, level:, release:): each is
 * checked here, and a bad one is refused with *err set (caller frees). */

static int release_value(const char *value, int *out, char **err)
{
	int64_t v;
	const char *s = value[0] == 'v' ? value + 1 : value;
	if (str_to_i64(s, &v) < 0 || v < 1 || v > INT32_MAX) {
		*err = xasprintf("invalid release '%s' (a release number like 3 or v3)", value);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int stream_value(const char *value, int *out, char **err)
{
	for (int k = 0; k < LOGS_NSTREAMS; k++) {
		if (strcasecmp(value, logs_stream_name(k)) == 0) {
			*out = k;
			return 0;
		}
	}
	*err = xasprintf("invalid stream '%s' (stdout, stderr, router, build, release or run)", value);
	return -EINVAL;
}

/* A level's name (or a synonym such as "warning"), not a number. */
static int level_value(const char *value, int *out, char **err)
{
	int lv = logs_level_parse(value, strlen(value));
	if (!lv || (value[0] >= '0' && value[0] <= '9')) {
		*err = xasprintf("invalid level '%s' (trace, debug, info, warn, error or fatal)", value);
		return -EINVAL;
	}
	*out = lv;
	return 0;
}

/* key:value. NULL with *err set when a record's own stream, level or
 * release is given a value it cannot have. */
static struct logs_node *field_new(const char *key, size_t klen, const char *val, size_t vlen,
				   char **err)
{
	struct logs_node *n = node_new(LOGS_Q_FIELD);
	n->key = xstrndup(key, klen);
	n->text = xstrndup(val, vlen);
	n->len = vlen;
	n->needs_parse = !is_builtin(n->key);
	int r = 0;
	if (strcmp(n->key, "stream") == 0)
		r = stream_value(n->text, &n->ival, err);
	else if (strcmp(n->key, "level") == 0)
		r = level_value(n->text, &n->ival, err);
	else if (strcmp(n->key, "release") == 0)
		r = release_value(n->text, &n->ival, err);
	if (r < 0) {
		logs_node_free(n);
		return NULL;
	}
	uint64_t h = 0;
	bool have = true;
	char num[16];
	if (n->needs_parse) {
		h = logs_hash_field(key, klen, val, vlen);
	} else if (strcmp(n->key, "app") == 0) {
		h = logs_hash_attr('a', val, vlen);
	} else if (strcmp(n->key, "process") == 0) {
		h = logs_hash_attr('p', val, vlen);
	} else if (strcmp(n->key, "instance") == 0) {
		h = logs_hash_attr('i', val, vlen);
	} else if (strcmp(n->key, "release") == 0) {
		int nl = snprintf(num, sizeof(num), "%d", n->ival);
		h = logs_hash_attr('r', num, (size_t)nl);
	} else {
		have = false; /* stream, level: chunk masks and per line */
	}
	if (have)
		hash_collect(n, h);
	return n;
}

/* ---- parser ---- */

struct qp {
	const char *s;
	size_t pos, len;
	char *err;
	int depth;
};

enum tok_kind { T_END, T_LPAREN, T_RPAREN, T_AND, T_OR, T_NOT, T_MINUS, T_WORD, T_PHRASE, T_FIELD };

struct tok {
	enum tok_kind kind;
	struct strbuf text; /* word/phrase, or field value */
	struct strbuf key;  /* field */
};

static void skip_space(struct qp *p)
{
	while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' ||
				   p->s[p->pos] == '\r'))
		p->pos++;
}

static bool is_delim(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' || c == ')' || c == '"';
}

/* Reads a quoted string at p->pos (the opening quote) into out. */
static int read_quoted(struct qp *p, struct strbuf *out)
{
	size_t start = p->pos++;
	while (p->pos < p->len && p->s[p->pos] != '"') {
		if (p->s[p->pos] == '\\' && p->pos + 1 < p->len)
			p->pos++;
		strbuf_addc(out, p->s[p->pos++]);
	}
	if (p->pos == p->len) {
		p->err = xasprintf("unterminated phrase starting at character %zu", start + 1);
		return -EINVAL;
	}
	p->pos++;
	return 0;
}

static bool key_ok(const char *s, size_t n)
{
	if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
		return false;
	for (size_t k = 1; k < n; k++) {
		char c = s[k];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '.' || c == '-' || c == '/' || c == '@'))
			return false;
	}
	return true;
}

static int next_tok(struct qp *p, struct tok *t)
{
	strbuf_reset(&t->text);
	strbuf_reset(&t->key);
	skip_space(p);
	if (p->pos == p->len) {
		t->kind = T_END;
		return 0;
	}
	char c = p->s[p->pos];
	if (c == '(') {
		p->pos++;
		t->kind = T_LPAREN;
		return 0;
	}
	if (c == ')') {
		p->pos++;
		t->kind = T_RPAREN;
		return 0;
	}
	if (c == '"') {
		t->kind = T_PHRASE;
		return read_quoted(p, &t->text);
	}
	if (c == '-' && p->pos + 1 < p->len && !is_delim(p->s[p->pos + 1]) && p->s[p->pos + 1] != '-') {
		p->pos++;
		t->kind = T_MINUS;
		return 0;
	}
	size_t start = p->pos;
	while (p->pos < p->len && !is_delim(p->s[p->pos]))
		p->pos++;
	const char *w = p->s + start;
	size_t n = p->pos - start;
	const char *colon = memchr(w, ':', n);
	if (colon && key_ok(w, (size_t)(colon - w))) {
		t->kind = T_FIELD;
		strbuf_add(&t->key, w, (size_t)(colon - w));
		size_t rest = n - (size_t)(colon - w) - 1;
		if (rest == 0 && p->pos < p->len && p->s[p->pos] == '"')
			return read_quoted(p, &t->text);
		if (rest == 0) {
			p->err = xasprintf("'%.*s' needs a value after the colon", (int)n, w);
			return -EINVAL;
		}
		strbuf_add(&t->text, colon + 1, rest);
		return 0;
	}
	if (n == 3 && memcmp(w, "AND", 3) == 0)
		t->kind = T_AND;
	else if (n == 2 && memcmp(w, "OR", 2) == 0)
		t->kind = T_OR;
	else if (n == 3 && memcmp(w, "NOT", 3) == 0)
		t->kind = T_NOT;
	else {
		t->kind = T_WORD;
		strbuf_add(&t->text, w, n);
	}
	return 0;
}

static int peek_tok(struct qp *p, struct tok *t)
{
	size_t save = p->pos;
	int r = next_tok(p, t);
	p->pos = save;
	return r;
}

static struct logs_node *parse_or(struct qp *p, struct tok *t);

static struct logs_node *binary(enum logs_node_kind k, struct logs_node *a, struct logs_node *b)
{
	struct logs_node *n = node_new(k);
	n->a = a;
	n->b = b;
	return n;
}

static struct logs_node *parse_unary(struct qp *p, struct tok *t)
{
	if (++p->depth > 64) {
		p->err = xstrdup("the query nests too deeply");
		return NULL;
	}
	struct logs_node *n = NULL;
	if (next_tok(p, t) < 0)
		goto out;
	switch (t->kind) {
	case T_NOT:
	case T_MINUS: {
		struct logs_node *a = parse_unary(p, t);
		if (a) {
			n = node_new(LOGS_Q_NOT);
			n->a = a;
		}
		break;
	}
	case T_LPAREN:
		n = parse_or(p, t);
		if (!n)
			break;
		if (next_tok(p, t) < 0 || t->kind != T_RPAREN) {
			if (!p->err)
				p->err = xasprintf("missing ')' at character %zu", p->pos + 1);
			logs_node_free(n);
			n = NULL;
		}
		break;
	case T_WORD:
		n = term_new(t->text.buf, t->text.len);
		break;
	case T_PHRASE:
		if (t->text.len == 0) {
			p->err = xstrdup("empty phrase \"\"");
			break;
		}
		n = term_new(t->text.buf, t->text.len);
		break;
	case T_FIELD:
		n = field_new(t->key.buf, t->key.len, t->text.buf, t->text.len, &p->err);
		break;
	case T_END:
		p->err = xstrdup("the query ends where a word was expected");
		break;
	default:
		p->err = xasprintf("unexpected %s at character %zu",
				   t->kind == T_RPAREN ? "')'" : t->kind == T_AND ? "AND" : "OR", p->pos);
		break;
	}
out:
	p->depth--;
	return n;
}

static struct logs_node *parse_and(struct qp *p, struct tok *t)
{
	struct logs_node *n = parse_unary(p, t);
	while (n) {
		if (peek_tok(p, t) < 0)
			break;
		if (t->kind == T_END || t->kind == T_RPAREN || t->kind == T_OR)
			return n;
		if (t->kind == T_AND)
			next_tok(p, t);
		struct logs_node *b = parse_unary(p, t);
		if (!b)
			break;
		n = binary(LOGS_Q_AND, n, b);
	}
	logs_node_free(n);
	return NULL;
}

static struct logs_node *parse_or(struct qp *p, struct tok *t)
{
	struct logs_node *n = parse_and(p, t);
	while (n) {
		if (peek_tok(p, t) < 0)
			break;
		if (t->kind != T_OR)
			return n;
		next_tok(p, t);
		struct logs_node *b = parse_and(p, t);
		if (!b)
			break;
		n = binary(LOGS_Q_OR, n, b);
	}
	logs_node_free(n);
	return NULL;
}

struct logs_node *logs_q_parse(const char *q, char **err)
{
	*err = NULL;
	struct qp p = {.s = q, .len = strlen(q)};
	struct tok t;
	strbuf_init(&t.text, 0);
	strbuf_init(&t.key, 0);
	struct logs_node *n = NULL;
	skip_space(&p);
	if (p.pos < p.len) {
		n = parse_or(&p, &t);
		if (n && next_tok(&p, &t) == 0 && t.kind != T_END) {
			logs_node_free(n);
			n = NULL;
			if (!p.err)
				p.err = xasprintf("unexpected ')' at character %zu", p.pos);
		}
		if (!n && !p.err)
			p.err = xstrdup("invalid query");
	}
	strbuf_release(&t.text);
	strbuf_release(&t.key);
	if (!n)
		*err = p.err;
	else
		free(p.err);
	return n;
}

void logs_node_format(const struct logs_node *n, struct strbuf *out)
{
	switch (n->kind) {
	case LOGS_Q_TERM:
		strbuf_addf(out, "\"%s\"", n->text);
		break;
	case LOGS_Q_FIELD:
		strbuf_addf(out, "%s:%s", n->key, n->text);
		break;
	case LOGS_Q_NOT:
		strbuf_adds(out, "(NOT ");
		logs_node_format(n->a, out);
		strbuf_addc(out, ')');
		break;
	default:
		strbuf_adds(out, n->kind == LOGS_Q_AND ? "(AND " : "(OR ");
		logs_node_format(n->a, out);
		strbuf_addc(out, ' ');
		logs_node_format(n->b, out);
		strbuf_addc(out, ')');
		break;
	}
}

/* ---- evaluation ---- */

bool logs_node_may_match(const struct logs_node *n, const uint32_t *bloom, uint32_t nblocks)
{
	switch (n->kind) {
	case LOGS_Q_TERM:
	case LOGS_Q_FIELD:
		for (size_t k = 0; k < n->n_hashes; k++)
			if (!logs_bloom_test(bloom, nblocks, n->hashes[k]))
				return false;
		return true;
	case LOGS_Q_AND:
		return logs_node_may_match(n->a, bloom, nblocks) && logs_node_may_match(n->b, bloom, nblocks);
	case LOGS_Q_OR:
		return logs_node_may_match(n->a, bloom, nblocks) || logs_node_may_match(n->b, bloom, nblocks);
	case LOGS_Q_NOT:
		return true;
	}
	return true;
}

bool logs_node_needs_parse(const struct logs_node *n)
{
	if (!n)
		return false;
	if (n->kind == LOGS_Q_FIELD)
		return n->needs_parse;
	return logs_node_needs_parse(n->a) || logs_node_needs_parse(n->b);
}

void logs_match_ctx_init(struct logs_match_ctx *m)
{
	memset(m, 0, sizeof(*m));
	strbuf_init(&m->lower, 256);
	logs_parsed_init(&m->parsed);
}

void logs_match_ctx_release(struct logs_match_ctx *m)
{
	strbuf_release(&m->lower);
	logs_parsed_release(&m->parsed);
}

static bool term_match(const struct logs_node *n, const char *hay, size_t hn)
{
	const char *nd = n->text;
	size_t nn = n->len;
	bool wb_start = logs_word_char[(uint8_t)nd[0]], wb_end = logs_word_char[(uint8_t)nd[nn - 1]];
	const char *p = hay, *end = hay + hn;
	while ((size_t)(end - p) >= nn) {
		const char *m = memmem(p, (size_t)(end - p), nd, nn);
		if (!m)
			return false;
		bool ok = true;
		if (wb_start && m > hay && logs_word_char[(uint8_t)m[-1]])
			ok = false;
		if (ok && wb_end && m + nn < end && logs_word_char[(uint8_t)m[nn]])
			ok = false;
		if (ok)
			return true;
		p = m + 1;
	}
	return false;
}

static void lower_line(const struct logs_rec *r, struct logs_match_ctx *m)
{
	if (m->lowered)
		return;
	strbuf_reset(&m->lower);
	strbuf_grow(&m->lower, r->len);
	for (uint32_t k = 0; k < r->len; k++)
		m->lower.buf[k] = logs_lower(r->text[k]);
	m->lower.len = r->len;
	m->lower.buf[r->len] = '\0';
	m->lowered = true;
}

/* Whether a lifted value must appear as it is in the line: it holds no
 * byte that JSON or logfmt would escape. */
static bool verbatim(const char *s, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if ((uint8_t)s[k] < 0x20 || (uint8_t)s[k] >= 0x7f || s[k] == '"' || s[k] == '\\')
			return false;
	return true;
}

static bool field_match(const struct logs_node *n, const struct logs_rec *r, struct logs_match_ctx *m)
{
	const char *k = n->key;
	if (!n->needs_parse) {
		if (strcmp(k, "app") == 0)
			return r->app && strcmp(r->app, n->text) == 0;
		if (strcmp(k, "process") == 0)
			return strcmp(r->process ? r->process : "", n->text) == 0;
		if (strcmp(k, "instance") == 0)
			return strcmp(r->instance ? r->instance : "", n->text) == 0;
		if (strcmp(k, "stream") == 0)
			return r->stream == n->ival;
		if (strcmp(k, "level") == 0)
			return r->level == n->ival;
		return r->release == n->ival;
	}
	if (!m->parsed_done) {
		/* Parsing is the costly part: first, the value must be in the line. */
		if (n->len && verbatim(n->text, n->len)) {
			lower_line(r, m);
			char *lv = xstrndup(n->text, n->len);
			for (size_t j = 0; j < n->len; j++)
				lv[j] = logs_lower(lv[j]);
			bool in = memmem(m->lower.buf, m->lower.len, lv, n->len) != NULL;
			free(lv);
			if (!in)
				return false;
		}
		logs_parse(&m->parsed, r->text, r->len, r->stream);
		m->parsed_done = true;
	}
	const struct logs_parsed *p = &m->parsed;
	for (size_t f = 0; f < p->n_fields; f++) {
		const struct logs_field *fl = &p->fields[f];
		if (fl->klen == strlen(k) && memcmp(logs_field_key(p, fl), k, fl->klen) == 0 &&
		    fl->vlen == n->len && strncasecmp(logs_field_val(p, fl), n->text, n->len) == 0)
			return true;
	}
	return false;
}

static bool node_match(const struct logs_node *n, const struct logs_rec *r, struct logs_match_ctx *m)
{
	switch (n->kind) {
	case LOGS_Q_TERM:
		lower_line(r, m);
		return term_match(n, m->lower.buf, m->lower.len);
	case LOGS_Q_FIELD:
		return field_match(n, r, m);
	case LOGS_Q_AND:
		return node_match(n->a, r, m) && node_match(n->b, r, m);
	case LOGS_Q_OR:
		return node_match(n->a, r, m) || node_match(n->b, r, m);
	case LOGS_Q_NOT:
		return !node_match(n->a, r, m);
	}
	return false;
}

/* ---- filters ---- */

void logs_filter_init(struct logs_filter *f)
{
	memset(f, 0, sizeof(*f));
}

void logs_filter_release(struct logs_filter *f)
{
	for (size_t k = 0; k < f->n_apps; k++)
		free(f->apps[k]);
	free(f->apps);
	free(f->process);
	free(f->instance);
	logs_node_free(f->q);
	memset(f, 0, sizeof(*f));
}

bool logs_filter_app(const struct logs_filter *f, const char *app)
{
	if (!f->apps)
		return true;
	for (size_t k = 0; k < f->n_apps; k++)
		if (strcmp(f->apps[k], app) == 0)
			return true;
	return false;
}

bool logs_filter_match(const struct logs_filter *f, const struct logs_rec *r,
		       struct logs_match_ctx *m)
{
	if (f->after_seq && r->seq <= f->after_seq)
		return false;
	if (f->before_seq && r->seq >= f->before_seq)
		return false;
	if (f->since_ns && r->t_ns < f->since_ns)
		return false;
	if (f->until_ns && r->t_ns >= f->until_ns)
		return false;
	if (f->streams && !(f->streams & (1u << r->stream)))
		return false;
	if (f->min_level && r->level < f->min_level)
		return false;
	if (f->release && r->release != f->release)
		return false;
	if (f->process && strcmp(f->process, r->process ? r->process : "") != 0)
		return false;
	if (f->instance && strcmp(f->instance, r->instance ? r->instance : "") != 0)
		return false;
	if (r->app && !logs_filter_app(f, r->app))
		return false;
	if (!f->q)
		return true;
	m->lowered = m->parsed_done = false;
	return node_match(f->q, r, m);
}

bool logs_filter_chunk(const struct logs_filter *f, const char *app, uint64_t seq_min,
		       uint64_t seq_max, int64_t t_min, int64_t t_max, uint32_t levels,
		       uint32_t streams)
{
	if (!logs_filter_app(f, app))
		return false;
	if (f->after_seq && seq_max <= f->after_seq)
		return false;
	if (f->before_seq && seq_min >= f->before_seq)
		return false;
	if (f->since_ns && t_max < f->since_ns)
		return false;
	if (f->until_ns && t_min >= f->until_ns)
		return false;
	if (f->streams && !(f->streams & streams))
		return false;
	if (f->min_level && !(levels >> f->min_level))
		return false;
	return true;
}

/* Times: RFC 3339 ("2026-11-29T22:57:15.5Z", "+01:00" offsets), a
 * duration meaning that long before now ("15m"), or "now". */
static int parse_time(const char *s, int64_t now_ns, int64_t *out)
{
	if (strcmp(s, "now") == 0) {
		*out = now_ns;
		return 0;
	}
	int64_t ms;
	if (duration_parse(s, &ms) == 0) {
		*out = now_ns - ms * 1000000;
		return 0;
	}
	struct tm tm = {0};
	int used = 0;
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	for (size_t k = 0; k < sizeof(shape) - 1; k++)
		if (shape[k] == 'd' ? !(s[k] >= '0' && s[k] <= '9') : s[k] != shape[k])
			return -EINVAL;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
		   &tm.tm_min, &tm.tm_sec, &used) != 6 || used != 19)
		return -EINVAL;
	struct tm want = tm;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	int64_t frac = 0;
	const char *p = s + used;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 9)
				frac = frac * 10 + (*p - '0');
		if (digits == 0)
			return -EINVAL;
		for (; digits < 9; digits++)
			frac *= 10;
	}
	int64_t off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int hh, mm;
		if (strlen(p) != 6 || !(p[1] >= '0' && p[1] <= '9') || !(p[2] >= '0' && p[2] <= '9') || p[3] != ':' ||
		    !(p[4] >= '0' && p[4] <= '9') || !(p[5] >= '0' && p[5] <= '9') ||
		    sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || hh > 23 || mm > 59)
			return -EINVAL;
		off = (int64_t)(hh * 3600 + mm * 60) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	/* timegm takes month 13 or hour 99 and moves on: a date it had to
	 * normalise was not a real one. */
	struct tm back;
	if (!gmtime_r(&t, &back) || back.tm_year + 1900 != want.tm_year || back.tm_mon + 1 != want.tm_mon ||
	    back.tm_mday != want.tm_mday || back.tm_hour != want.tm_hour || back.tm_min != want.tm_min ||
	    back.tm_sec != want.tm_sec)
		return -EINVAL;
	*out = ((int64_t)t - off) * 1000000000 + frac;
	return 0;
}

static void split_list(const char *v, char ***out, size_t *n)
{
	const char *p = v;
	while (*p) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (l) {
			*out = xrealloc(*out, (*n + 1) * sizeof(**out));
			(*out)[(*n)++] = xstrndup(p, l);
		}
		p += l + (c ? 1 : 0);
	}
}

int logs_filter_set(struct logs_filter *f, const char *name, const char *value, int64_t now_ns,
		    char **err)
{
	if (strcmp(name, "app") == 0) {
		char **apps = NULL;
		size_t n = 0;
		split_list(value, &apps, &n);
		for (size_t k = 0; k < f->n_apps; k++)
			free(f->apps[k]);
		free(f->apps);
		f->apps = apps;
		f->n_apps = n;
		if (!n) {
			f->apps = NULL;
		}
		return 0;
	}
	if (strcmp(name, "process") == 0 || strcmp(name, "instance") == 0) {
		char **slot = name[0] == 'p' ? &f->process : &f->instance;
		free(*slot);
		*slot = *value ? xstrdup(value) : NULL;
		return 0;
	}
	if (strcmp(name, "release") == 0)
		return release_value(value, &f->release, err);
	if (strcmp(name, "stream") == 0) {
		char **names = NULL;
		size_t n = 0;
		split_list(value, &names, &n);
		unsigned mask = 0;
		int r = 0;
		for (size_t k = 0; k < n && r == 0; k++) {
			int st;
			r = stream_value(names[k], &st, err);
			if (r == 0)
				mask |= 1u << st;
		}
		for (size_t k = 0; k < n; k++)
			free(names[k]);
		free(names);
		if (r < 0)
			return r;
		f->streams = mask;
		return 0;
	}
	if (strcmp(name, "level") == 0)
		return level_value(value, &f->min_level, err);
	if (strcmp(name, "since") == 0 || strcmp(name, "until") == 0) {
		int64_t t;
		if (parse_time(value, now_ns, &t) < 0) {
			*err = xasprintf("invalid %s '%s' (RFC 3339 like 2026-11-29T22:57:15Z, or a duration "
					 "like 15m meaning that long ago)", name, value);
			return -EINVAL;
		}
		if (name[0] == 's')
			f->since_ns = t;
		else
			f->until_ns = t;
		return 0;
	}
	if (strcmp(name, "q") == 0) {
		char *qerr = NULL;
		struct logs_node *n = logs_q_parse(value, &qerr);
		if (!n && qerr) {
			*err = xasprintf("invalid query: %s", qerr);
			free(qerr);
			return -EINVAL;
		}
		logs_node_free(f->q);
		f->q = n;
		return 0;
	}
	*err = xasprintf("unknown filter '%s'", name);
	return -EINVAL;
}

void logs_filter_scope(struct logs_filter *f, char *const *apps, size_t n)
{
	if (!f->apps) {
		f->apps = xcalloc(n ? n : 1, sizeof(*f->apps));
		for (size_t k = 0; k < n; k++)
			f->apps[k] = xstrdup(apps[k]);
		f->n_apps = n;
		return;
	}
	size_t kept = 0;
	for (size_t k = 0; k < f->n_apps; k++) {
		bool in = false;
		for (size_t j = 0; j < n && !in; j++)
			in = strcmp(f->apps[k], apps[j]) == 0;
		if (in)
			f->apps[kept++] = f->apps[k];
		else
			free(f->apps[k]);
	}
	f->n_apps = kept;
}

/* ---- output ---- */

void logs_format_time_ns(int64_t t_ns, char *buf, size_t size)
{
	time_t s = (time_t)(t_ns / 1000000000);
	long ns = (long)(t_ns % 1000000000);
	if (ns < 0) {
		ns += 1000000000;
		s--;
	}
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ns);
}

static void set_escaped(struct json *o, const char *key, const char *s, size_t n, struct strbuf *tmp)
{
	strbuf_reset(tmp);
	logs_escape_utf8(tmp, s, n);
	json_set_str(o, key, tmp->buf);
}

struct json *logs_rec_json(const struct logs_rec *r, struct logs_parsed *p)
{
	struct json *o = json_object();
	char ts[48];
	logs_format_time_ns(r->t_ns, ts, sizeof(ts));
	json_set_int(o, "seq", (int64_t)r->seq);
	json_set_str(o, "time", ts);
	struct strbuf tmp;
	strbuf_init(&tmp, r->len + 16);
	set_escaped(o, "app", r->app ? r->app : "", r->app ? strlen(r->app) : 0, &tmp);
	if (r->process && *r->process)
		set_escaped(o, "process", r->process, strlen(r->process), &tmp);
	else
		json_set_str(o, "process", NULL);
	if (r->instance && *r->instance)
		set_escaped(o, "instance", r->instance, strlen(r->instance), &tmp);
	else
		json_set_str(o, "instance", NULL);
	json_set_int(o, "release", r->release);
	json_set_str(o, "stream", logs_stream_name(r->stream));
	json_set_str(o, "level", r->level ? logs_level_name(r->level) : NULL);
	logs_parse(p, r->text, r->len, r->stream);
	if (p->has_msg)
		set_escaped(o, "message", p->scratch.buf + p->msg, p->msg_len, &tmp);
	else
		set_escaped(o, "message", r->text, r->len, &tmp);
	set_escaped(o, "line", r->text, r->len, &tmp);
	if (p->n_fields) {
		struct json *fo = json_set(o, "fields", json_object());
		for (size_t k = 0; k < p->n_fields; k++) {
			const struct logs_field *fl = &p->fields[k];
			struct strbuf key;
			strbuf_init(&key, fl->klen + 8);
			logs_escape_utf8(&key, logs_field_key(p, fl), fl->klen);
			if (!json_get(fo, key.buf))
				set_escaped(fo, key.buf, logs_field_val(p, fl), fl->vlen, &tmp);
			strbuf_release(&key);
		}
	}
	strbuf_release(&tmp);
	return o;
}
