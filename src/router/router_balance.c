/* router_balance.c: route matching and the balancing algorithms:
 * power-of-two-choices on in-flight requests (default), round-robin, and
 * rendezvous (highest random weight) hashing on a header or cookie for
 * sticky sessions, which moves only the keys of a backend that leaves.
 * Passive health: consecutive failures eject a backend for a growing time. */
#include "router/router_internal.h"
#include "core/util.h"
#include <string.h>
#include <strings.h>

uint64_t rt_rand(struct rt_worker *w)
{
	/* xorshift64*: per worker, no shared state. */
	uint64_t x = w->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static bool host_matches(const struct rt_route *r, const char *host)
{
	if (!r->host)
		return true;
	if (!host)
		return false;
	if (!r->wildcard)
		return strcasecmp(r->host, host) == 0;
	/* "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com". */
	size_t hl = strlen(host), sl = strlen(r->host) - 1; /* ".example.com" */
	return hl > sl && strcasecmp(host + hl - sl, r->host + 1) == 0;
}

static bool path_matches(const struct rt_route *r, const char *path)
{
	if (strncmp(path, r->path, r->path_len) != 0)
		return false;
	/* "/api" matches "/api", "/api/x" and "/api?q", not "/apix". */
	char next = path[r->path_len];
	return r->path[r->path_len - 1] == '/' || next == '\0' || next == '/' || next == '?';
}

const struct rt_route *rt_route_match(const struct rt_snapshot *s, const char *host, const char *path)
{
	if (!s)
		return NULL;
	for (size_t k = 0; k < s->n_routes; k++)
		if (host_matches(&s->routes[k], host) && path_matches(&s->routes[k], path))
			return &s->routes[k];
	return NULL;
}

static bool usable(const struct rt_backend *b, const struct rt_backend *avoid, int64_t now)
{
	return b != avoid && atomic_load_explicit(&b->ejected_until, memory_order_relaxed) <= now;
}

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static uint64_t hash_str(const char *s, uint64_t seed)
{
	uint64_t h = 1469598103934665603ULL ^ seed;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return mix(h);
}

struct rt_backend *rt_balance_pick(struct rt_worker *w, struct rt_pool *pool, const char *hash_key,
				   const struct rt_backend *avoid)
{
	size_t n = pool->n_be;
	if (n == 0)
		return NULL;
	int64_t now = rt_now_ms();
	/* If every backend is ejected or avoided, fall back to all of them but
	 * `avoid`: a possibly bad backend beats a certain 503. */
	size_t ok = 0;
	for (size_t k = 0; k < n; k++)
		ok += usable(pool->be[k], avoid, now);
	if (ok == 0) {
		now = INT64_MAX;
		for (size_t k = 0; k < n; k++)
			ok += pool->be[k] != avoid;
		if (ok == 0)
			return NULL;
	}
	if (pool->balance == ROUTER_HASH && hash_key) {
		struct rt_backend *best = NULL;
		uint64_t best_score = 0, key = hash_str(hash_key, 0);
		for (size_t k = 0; k < n; k++) {
			struct rt_backend *b = pool->be[k];
			if (!usable(b, avoid, now))
				continue;
			uint64_t score = mix(key ^ hash_str(b->instance, 0x9e3779b97f4a7c15ULL));
			if (!best || score > best_score) {
				best = b;
				best_score = score;
			}
		}
		return best;
	}
	if (pool->balance == ROUTER_ROUND_ROBIN) {
		unsigned start = atomic_fetch_add_explicit(&pool->rr, 1, memory_order_relaxed);
		for (size_t k = 0; k < n; k++) {
			struct rt_backend *b = pool->be[(start + k) % n];
			if (usable(b, avoid, now))
				return b;
		}
		return NULL;
	}
	/* Power of two choices: two distinct random usable backends, the one
	 * with fewer requests in flight wins. */
	struct rt_backend *a = NULL, *b = NULL;
	size_t i = (size_t)(rt_rand(w) % ok);
	size_t j = ok > 1 ? (size_t)(rt_rand(w) % (ok - 1)) : i;
	if (ok > 1 && j >= i)
		j++;
	for (size_t k = 0, seen = 0; k < n; k++) {
		if (!usable(pool->be[k], avoid, now))
			continue;
		if (seen == i)
			a = pool->be[k];
		if (seen == j)
			b = pool->be[k];
		seen++;
	}
	if (!b || a == b)
		return a;
	return atomic_load_explicit(&a->inflight, memory_order_relaxed) <=
			       atomic_load_explicit(&b->inflight, memory_order_relaxed)
		       ? a
		       : b;
}

void rt_backend_result(struct rt_backend *b, bool failed, struct rt_counters *c)
{
	if (!failed) {
		/* A success ends the streak, and the next ejection starts short again. */
		if (atomic_load_explicit(&b->fails, memory_order_relaxed))
			atomic_store_explicit(&b->fails, 0, memory_order_relaxed);
		if (atomic_load_explicit(&b->eject_level, memory_order_relaxed))
			atomic_store_explicit(&b->eject_level, 0, memory_order_relaxed);
		return;
	}
	int f = atomic_fetch_add(&b->fails, 1) + 1;
	if (f < RT_EJECT_AFTER)
		return;
	int level = atomic_fetch_add(&b->eject_level, 1);
	int64_t ms = RT_EJECT_BASE_MS;
	for (int k = 0; k < level && ms < RT_EJECT_MAX_MS; k++)
		ms *= 2;
	if (ms > RT_EJECT_MAX_MS)
		ms = RT_EJECT_MAX_MS;
	atomic_store(&b->ejected_until, rt_now_ms() + ms);
	atomic_store(&b->fails, 0);
	if (c)
		RT_ADD(c->ejections, 1);
}
