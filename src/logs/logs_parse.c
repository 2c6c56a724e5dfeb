/* logs_parse.c: what a line says about itself (level, message, fields),
 * its words and their hashes, and escaping for output. Everything here is
 * pure and thread-safe; the writer thread, queries and tails all use it. */
#include "compat/json.h"
#include "core/util.h"
#include "logs/logs_internal.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- names ---- */

static const char *const level_names[LOGS_NLEVELS] = {"", "trace", "debug", "info", "warn", "error", "fatal"};
static const char *const stream_names[LOGS_NSTREAMS] = {"stdout", "stderr", "router", "build", "release",
							     "run"};

const char *logs_level_name(int level)
{
	return level > 0 && level < LOGS_NLEVELS ? level_names[level] : "";
}

const char *logs_stream_name(int stream)
{
	return stream >= 0 && stream < LOGS_NSTREAMS ? stream_names[stream] : "stdout";
}

int logs_level_parse(const char *s, size_t n)
{
	static const struct {
		const char *word;
		int level;
	} words[] = {
		{"trace", LOGS_LEVEL_TRACE},   {"debug", LOGS_LEVEL_DEBUG},  {"dbg", LOGS_LEVEL_DEBUG},
		{"info", LOGS_LEVEL_INFO},     {"notice", LOGS_LEVEL_INFO},  {"inf", LOGS_LEVEL_INFO},
		{"warn", LOGS_LEVEL_WARN},     {"warning", LOGS_LEVEL_WARN}, {"wrn", LOGS_LEVEL_WARN},
		{"error", LOGS_LEVEL_ERROR},   {"err", LOGS_LEVEL_ERROR},    {"eror", LOGS_LEVEL_ERROR},
		{"fatal", LOGS_LEVEL_FATAL},   {"critical", LOGS_LEVEL_FATAL}, {"crit", LOGS_LEVEL_FATAL},
		{"panic", LOGS_LEVEL_FATAL},   {"emerg", LOGS_LEVEL_FATAL},  {"alert", LOGS_LEVEL_FATAL},
		{"emergency", LOGS_LEVEL_FATAL},
	};
	if (n == 0 || n > 9)
		return LOGS_LEVEL_NONE;
	if (s[0] >= '0' && s[0] <= '9') {
		/* pino/bunyan numbers: 10 trace ... 60 fatal. */
		int v = 0;
		for (size_t k = 0; k < n; k++) {
			if (s[k] < '0' || s[k] > '9')
				return LOGS_LEVEL_NONE;
			v = v * 10 + (s[k] - '0');
		}
		return v >= 60 ? LOGS_LEVEL_FATAL : v >= 50 ? LOGS_LEVEL_ERROR : v >= 40 ? LOGS_LEVEL_WARN
		       : v >= 30 ? LOGS_LEVEL_INFO : v >= 20 ? LOGS_LEVEL_DEBUG : v >= 10 ? LOGS_LEVEL_TRACE
		       : LOGS_LEVEL_NONE;
	}
	for (size_t k = 0; k < ARRAY_SIZE(words); k++)
		if (strlen(words[k].word) == n && strncasecmp(words[k].word, s, n) == 0)
			return words[k].level;
	return LOGS_LEVEL_NONE;
}

/* ---- words and hashes ---- */

#define W1 1
const uint8_t logs_word_char[256] = {
	['0'] = W1, ['1'] = W1, ['2'] = W1, ['3'] = W1, ['4'] = W1, ['5'] = W1, ['6'] = W1, ['7'] = W1,
	['8'] = W1, ['9'] = W1, ['_'] = W1,
	['A'] = W1, ['B'] = W1, ['C'] = W1, ['D'] = W1, ['E'] = W1, ['F'] = W1, ['G'] = W1, ['H'] = W1,
	['I'] = W1, ['J'] = W1, ['K'] = W1, ['L'] = W1, ['M'] = W1, ['N'] = W1, ['O'] = W1, ['P'] = W1,
	['Q'] = W1, ['R'] = W1, ['S'] = W1, ['T'] = W1, ['U'] = W1, ['V'] = W1, ['W'] = W1, ['X'] = W1,
	['Y'] = W1, ['Z'] = W1,
	['a'] = W1, ['b'] = W1, ['c'] = W1, ['d'] = W1, ['e'] = W1, ['f'] = W1, ['g'] = W1, ['h'] = W1,
	['i'] = W1, ['j'] = W1, ['k'] = W1, ['l'] = W1, ['m'] = W1, ['n'] = W1, ['o'] = W1, ['p'] = W1,
	['q'] = W1, ['r'] = W1, ['s'] = W1, ['t'] = W1, ['u'] = W1, ['v'] = W1, ['w'] = W1, ['x'] = W1,
	['y'] = W1, ['z'] = W1,
	[0x80 ... 0xff] = W1,
};

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/* Final mix (MurmurHash3's fmix64) so that every bit of the bloom's
 * block and bit choices depends on every byte. */
static inline uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static inline uint64_t fnv_lower(uint64_t h, const char *s, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		h ^= (uint8_t)logs_lower(s[k]);
		h *= FNV_PRIME;
	}
	return h;
}

uint64_t logs_hash_word(const char *s, size_t n)
{
	return mix64(fnv_lower(FNV_OFFSET, s, n));
}

uint64_t logs_hash_field(const char *key, size_t klen, const char *val, size_t vlen)
{
	uint64_t h = FNV_OFFSET ^ 0x0f;
	h *= FNV_PRIME;
	for (size_t k = 0; k < klen; k++) {
		h ^= (uint8_t)key[k];
		h *= FNV_PRIME;
	}
	h ^= 0x1f;
	h *= FNV_PRIME;
	return mix64(fnv_lower(h, val, vlen));
}

uint64_t logs_hash_attr(char kind, const char *val, size_t vlen)
{
	uint64_t h = FNV_OFFSET ^ 0x01;
	h *= FNV_PRIME;
	h ^= (uint8_t)kind;
	h *= FNV_PRIME;
	for (size_t k = 0; k < vlen; k++) {
		h ^= (uint8_t)val[k];
		h *= FNV_PRIME;
	}
	return mix64(h);
}

void logs_words(const char *s, size_t n, logs_token_cb cb, void *ctx)
{
	size_t k = 0;
	while (k < n) {
		while (k < n && !logs_word_char[(uint8_t)s[k]])
			k++;
		if (k == n)
			break;
		uint64_t h = FNV_OFFSET;
		while (k < n && logs_word_char[(uint8_t)s[k]]) {
			h ^= (uint8_t)logs_lower(s[k]);
			h *= FNV_PRIME;
			k++;
		}
		cb(ctx, mix64(h));
	}
}

/* ---- parsing ---- */

void logs_parsed_init(struct logs_parsed *p)
{
	memset(p, 0, sizeof(*p));
	strbuf_init(&p->scratch, 256);
}

void logs_parsed_release(struct logs_parsed *p)
{
	strbuf_release(&p->scratch);
}

static uint32_t scratch_add(struct logs_parsed *p, const char *s, size_t n)
{
	uint32_t off = (uint32_t)p->scratch.len;
	strbuf_add(&p->scratch, s, n);
	strbuf_addc(&p->scratch, '\0');
	return off;
}

static void field_add(struct logs_parsed *p, const char *k, size_t kl, const char *v, size_t vl)
{
	if (p->n_fields == LOGS_MAX_FIELDS || kl == 0)
		return;
	struct logs_field *f = &p->fields[p->n_fields++];
	f->key = scratch_add(p, k, kl);
	f->klen = (uint32_t)kl;
	f->val = scratch_add(p, v, vl);
	f->vlen = (uint32_t)vl;
}

static bool key_is(const char *k, size_t kl, const char *const *names)
{
	for (; *names; names++)
		if (strlen(*names) == kl && strncasecmp(*names, k, kl) == 0)
			return true;
	return false;
}

static const char *const level_keys[] = {"level", "lvl", "severity", "loglevel", "levelname",
					 "log.level", "log_level", NULL};
static const char *const msg_keys[] = {"msg", "message", NULL};

/* Lifts level and message from the fields found. */
static void lift(struct logs_parsed *p)
{
	for (size_t k = 0; k < p->n_fields; k++) {
		const struct logs_field *f = &p->fields[k];
		const char *key = logs_field_key(p, f);
		if (!p->level && key_is(key, f->klen, level_keys))
			p->level = logs_level_parse(logs_field_val(p, f), f->vlen);
		else if (!p->has_msg && key_is(key, f->klen, msg_keys)) {
			p->has_msg = true;
			p->msg = f->val;
			p->msg_len = f->vlen;
		}
	}
}

static void json_walk(struct logs_parsed *p, const struct json *obj, struct strbuf *prefix, int depth)
{
	for (const struct json *m = json_first(obj); m && p->n_fields < LOGS_MAX_FIELDS; m = json_next(m)) {
		size_t mark = prefix->len;
		if (prefix->len)
			strbuf_addc(prefix, '.');
		strbuf_adds(prefix, json_key(m));
		char num[48];
		const char *v = NULL;
		if (json_is_string(m)) {
			v = json_str(m);
		} else if (json_is_number(m)) {
			double d = json_num(m);
			int64_t i;
			if (json_get_int(m, &i) == 0 && d > -1e15 && d < 1e15)
				snprintf(num, sizeof(num), "%lld", (long long)i);
			else
				snprintf(num, sizeof(num), "%.17g", d);
			v = num;
		} else if (json_is_bool(m)) {
			v = json_true(m) ? "true" : "false";
		} else if (json_is_null(m)) {
			v = "null";
		} else if (json_is_object(m) && depth + 1 < LOGS_MAX_DEPTH) {
			json_walk(p, m, prefix, depth + 1);
		}
		if (v)
			field_add(p, prefix->buf, prefix->len, v, strlen(v));
		prefix->len = mark;
		prefix->buf[mark] = '\0';
	}
}

static bool parse_json(struct logs_parsed *p, const char *text, size_t len)
{
	size_t k = 0;
	while (k < len && (text[k] == ' ' || text[k] == '\t'))
		k++;
	if (k == len || text[k] != '{' || memchr(text, '\0', len))
		return false;
	char *err = NULL;
	struct json *j = json_parse(text + k, len - k, &err);
	free(err);
	if (!j)
		return false;
	if (!json_is_object(j)) {
		json_free(j);
		return false;
	}
	struct strbuf prefix;
	strbuf_init(&prefix, 64);
	json_walk(p, j, &prefix, 0);
	strbuf_release(&prefix);
	json_free(j);
	p->json = true;
	return true;
}

static bool logfmt_key_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool logfmt_key_char(char c)
{
	return logfmt_key_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '/' || c == '@';
}

/* Every key=value or key="quoted" that starts a word. */
static void parse_logfmt(struct logs_parsed *p, const char *s, size_t n)
{
	struct strbuf val;
	strbuf_init(&val, 0);
	size_t k = 0;
	while (k < n && p->n_fields < LOGS_MAX_FIELDS) {
		while (k < n && (s[k] == ' ' || s[k] == '\t'))
			k++;
		size_t ks = k;
		if (k < n && logfmt_key_start(s[k])) {
			while (k < n && logfmt_key_char(s[k]))
				k++;
			if (k < n && s[k] == '=') {
				size_t kl = k - ks;
				k++;
				strbuf_reset(&val);
				if (k < n && s[k] == '"') {
					k++;
					while (k < n && s[k] != '"') {
						if (s[k] == '\\' && k + 1 < n)
							k++;
						strbuf_addc(&val, s[k]);
						k++;
					}
					if (k < n)
						k++; /* closing quote */
				} else {
					size_t vs = k;
					while (k < n && s[k] != ' ' && s[k] != '\t')
						k++;
					strbuf_add(&val, s + vs, k - vs);
				}
				field_add(p, s + ks, kl, val.buf, val.len);
				continue;
			}
		}
		while (k < n && s[k] != ' ' && s[k] != '\t')
			k++;
	}
	strbuf_release(&val);
	p->logfmt = p->n_fields > 0;
}

/* A level word among the first words: "ERROR", "[warn]", "Info:", "E/"
 * is not one. Upper case anywhere in the first four words; any case for
 * the first word when bracketed or followed by a colon. */
static int plain_level(const char *s, size_t n)
{
	size_t k = 0;
	for (int word = 0; word < 4 && k < n; word++) {
		while (k < n && (s[k] == ' ' || s[k] == '\t'))
			k++;
		size_t ws = k;
		while (k < n && s[k] != ' ' && s[k] != '\t')
			k++;
		size_t a = ws, b = k;
		bool bracketed = false, colon = false;
		if (a < b && (s[a] == '[' || s[a] == '(' || s[a] == '<')) {
			a++;
			bracketed = true;
		}
		while (b > a && (s[b - 1] == ':' || s[b - 1] == ']' || s[b - 1] == ')' || s[b - 1] == '>' ||
				 s[b - 1] == ',')) {
			colon = colon || s[b - 1] == ':';
			b--;
		}
		if (b == a || b - a > 9)
			continue;
		bool upper = true;
		for (size_t m = a; m < b; m++)
			upper = upper && !(s[m] >= 'a' && s[m] <= 'z');
		bool digits = s[a] >= '0' && s[a] <= '9';
		if (digits)
			continue;
		if (upper || (word == 0 && (bracketed || colon))) {
			int lv = logs_level_parse(s + a, b - a);
			if (lv)
				return lv;
		}
	}
	return LOGS_LEVEL_NONE;
}

void logs_parse(struct logs_parsed *p, const char *text, size_t len, int stream)
{
	p->level = LOGS_LEVEL_NONE;
	p->json = p->logfmt = p->has_msg = false;
	p->n_fields = 0;
	strbuf_reset(&p->scratch);
	if (!parse_json(p, text, len)) {
		p->n_fields = 0;
		strbuf_reset(&p->scratch);
		if (memchr(text, '=', len))
			parse_logfmt(p, text, len);
	}
	lift(p);
	if (stream == 2 && !p->level) {
		for (size_t k = 0; k < p->n_fields; k++) {
			const struct logs_field *f = &p->fields[k];
			if (f->klen == 6 && memcmp(logs_field_key(p, f), "status", 6) == 0) {
				int st = atoi(logs_field_val(p, f));
				p->level = st >= 500 ? LOGS_LEVEL_ERROR : st >= 400 ? LOGS_LEVEL_WARN : LOGS_LEVEL_INFO;
			}
		}
	}
	if (!p->level && !p->json)
		p->level = plain_level(text, len);
}

/* ---- escaping ---- */

static void escape(struct strbuf *out, const char *s, size_t n, bool tty)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	strbuf_grow(out, n + 16);
	size_t k = 0;
	while (k < n) {
		size_t run = k;
		/* Fast path: printable ASCII. */
		while (run < n && u[run] >= 0x20 && u[run] < 0x7f)
			run++;
		if (run > k) {
			strbuf_add(out, s + k, run - k);
			k = run;
			continue;
		}
		size_t q = utf8_seq(u + k, n - k);
		bool ctl = u[k] < 0x20 || u[k] == 0x7f;
		if (q == 0 || u[k] == 0 || (tty && ctl && u[k] != '\t') ||
		    (tty && q == 2 && u[k] == 0xc2 && u[k + 1] < 0xa0)) {
			/* Invalid bytes, NUL, and for terminals C0/C1 controls. */
			size_t m = q ? q : 1;
			for (size_t j = 0; j < m; j++) {
				char e[4] = {'\\', 'x', hex[u[k + j] >> 4], hex[u[k + j] & 15]};
				strbuf_add(out, e, 4);
			}
			k += m;
		} else {
			strbuf_add(out, s + k, q);
			k += q;
		}
	}
}

void logs_escape_utf8(struct strbuf *out, const char *s, size_t n)
{
	escape(out, s, n, false);
}

void logs_escape_tty(struct strbuf *out, const char *s, size_t n)
{
	escape(out, s, n, true);
}
