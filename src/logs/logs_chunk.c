/* logs_chunk.c: the storage unit of the logs. A chunk holds consecutive
 * lines of one app in blocks of about LOGS_BLOCK_BYTES of text; a block
 * holds its lines column by column (sequence numbers, times, releases,
 * streams, levels, process and instance as dictionary indexes, lengths,
 * then the texts), compressed as one gzip member, and has a split-block
 * bloom filter of its words, lifted fields and attributes. The chunk has a
 * filter of everything in it. Queries test the chunk's filter (one cache
 * line per word, from memory), then the filters of its blocks, and
 * decompress only the blocks that may match. The stored layout is
 * described at struct logs_chunk. */
#include "compat/gzip.h"
#include "core/util.h"
#include "logs/logs_internal.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- bloom ---- */

static const uint32_t bloom_salt[8] = {0x47b6137bU, 0x44974d91U, 0x8824ad5bU, 0xa2b7289dU,
				       0x705495c7U, 0x2df1424bU, 0x9efc4947U, 0x5c6bfb31U};

void logs_bloom_init(struct logs_bloom *b, size_t n, unsigned bits_per_key)
{
	uint64_t bits = (uint64_t)n * bits_per_key;
	uint64_t blocks = (bits + 255) / 256;
	if (blocks < 1)
		blocks = 1;
	if (blocks > (1u << 24))
		blocks = 1u << 24;
	b->nblocks = (uint32_t)blocks;
	b->words = xcalloc(blocks * 8, sizeof(uint32_t));
}

void logs_bloom_release(struct logs_bloom *b)
{
	free(b->words);
	b->words = NULL;
	b->nblocks = 0;
}

static inline uint32_t bloom_block(uint64_t h, uint32_t nblocks)
{
	return (uint32_t)(((h >> 32) * (uint64_t)nblocks) >> 32);
}

void logs_bloom_add(struct logs_bloom *b, uint64_t h)
{
	uint32_t *w = b->words + (size_t)bloom_block(h, b->nblocks) * 8;
	uint32_t key = (uint32_t)h;
	for (int k = 0; k < 8; k++)
		w[k] |= 1u << ((key * bloom_salt[k]) >> 27);
}

bool logs_bloom_test(const uint32_t *words, uint32_t nblocks, uint64_t h)
{
	if (nblocks == 0)
		return true;
	const uint32_t *w = words + (size_t)bloom_block(h, nblocks) * 8;
	uint32_t key = (uint32_t)h;
	for (int k = 0; k < 8; k++)
		if (!(w[k] & (1u << ((key * bloom_salt[k]) >> 27))))
			return false;
	return true;
}

/* ---- hash sets ---- */

void logs_hset_init(struct logs_hset *s)
{
	memset(s, 0, sizeof(*s));
}

void logs_hset_release(struct logs_hset *s)
{
	free(s->slots);
	memset(s, 0, sizeof(*s));
}

void logs_hset_clear(struct logs_hset *s)
{
	if (s->slots)
		memset(s->slots, 0, s->cap * sizeof(*s->slots));
	s->n = 0;
	s->has_zero = false;
}

static void hset_put(uint64_t *slots, size_t cap, uint64_t h)
{
	size_t m = cap - 1, k = (size_t)h & m;
	while (slots[k] && slots[k] != h)
		k = (k + 1) & m;
	slots[k] = h;
}

static void hset_grow(struct logs_hset *s, size_t cap)
{
	uint64_t *slots = xcalloc(cap, sizeof(*slots));
	for (size_t k = 0; k < s->cap; k++)
		if (s->slots[k])
			hset_put(slots, cap, s->slots[k]);
	free(s->slots);
	s->slots = slots;
	s->cap = cap;
}

void logs_hset_reserve(struct logs_hset *s, size_t n)
{
	size_t cap = s->cap ? s->cap : 1024;
	while ((n + 1) * 4 > cap * 3)
		cap *= 2;
	if (cap > s->cap)
		hset_grow(s, cap);
}

void logs_hset_add(struct logs_hset *s, uint64_t h)
{
	if (h == 0) {
		s->has_zero = true;
		return;
	}
	if ((s->n + 1) * 4 > s->cap * 3)
		hset_grow(s, s->cap ? s->cap * 2 : 1024);
	size_t m = s->cap - 1, k = (size_t)h & m;
	while (s->slots[k]) {
		if (s->slots[k] == h)
			return;
		k = (k + 1) & m;
	}
	s->slots[k] = h;
	s->n++;
}

void logs_hset_to_bloom(const struct logs_hset *s, struct logs_bloom *b)
{
	for (size_t k = 0; k < s->cap; k++)
		if (s->slots[k])
			logs_bloom_add(b, s->slots[k]);
	if (s->has_zero)
		logs_bloom_add(b, 0);
}

/* ---- builders ---- */

void logs_builder_init(struct logs_builder *b)
{
	memset(b, 0, sizeof(*b));
	strbuf_init(&b->arena, 0);
	logs_hset_init(&b->cur);
}

void logs_builder_reset(struct logs_builder *b)
{
	for (size_t k = 0; k < b->n_dict; k++)
		free(b->dict[k]);
	b->n_dict = 0;
	b->n = 0;
	b->raw_bytes = 0;
	strbuf_reset(&b->arena);
	b->n_segs = b->n_hashes = 0;
	logs_hset_clear(&b->cur);
	b->cur_first = 0;
	b->cur_raw = 0;
}

void logs_builder_release(struct logs_builder *b)
{
	logs_builder_reset(b);
	free(b->dict);
	free(b->recs);
	free(b->segs);
	free(b->hashes);
	strbuf_release(&b->arena);
	logs_hset_release(&b->cur);
	memset(b, 0, sizeof(*b));
}

static uint32_t dict_index(struct logs_builder *b, const char *s)
{
	if (!s)
		s = "";
	/* Few distinct names per chunk: search from the newest. */
	for (size_t k = b->n_dict; k-- > 0;)
		if (strcmp(b->dict[k], s) == 0)
			return (uint32_t)k;
	b->dict = xgrow(b->dict, sizeof(*b->dict), b->n_dict + 1, &b->alloc_dict);
	b->dict[b->n_dict] = xstrdup(s);
	return (uint32_t)b->n_dict++;
}

static void tok_add(void *ctx, uint64_t h)
{
	logs_hset_add(ctx, h);
}

static void add_tokens(struct logs_hset *set, const char *text, size_t len,
		       const struct logs_parsed *p)
{
	logs_words(text, len, tok_add, set);
	for (size_t f = 0; f < p->n_fields; f++) {
		const struct logs_field *fl = &p->fields[f];
		logs_hset_add(set, logs_hash_field(logs_field_key(p, fl), fl->klen,
						   logs_field_val(p, fl), fl->vlen));
	}
}

void logs_builder_cut(struct logs_builder *b)
{
	if (b->cur_first == b->n)
		return;
	const struct logs_hset *c = &b->cur;
	b->hashes = xgrow(b->hashes, sizeof(*b->hashes), b->n_hashes + c->n + 1, &b->alloc_hashes);
	size_t hoff = b->n_hashes;
	for (size_t k = 0; k < c->cap; k++)
		if (c->slots[k])
			b->hashes[b->n_hashes++] = c->slots[k];
	if (c->has_zero)
		b->hashes[b->n_hashes++] = 0;
	b->segs = xgrow(b->segs, sizeof(*b->segs), b->n_segs + 1, &b->alloc_segs);
	b->segs[b->n_segs++] = (struct logs_seg){b->cur_first, hoff, b->n_hashes - hoff, b->cur_raw};
	logs_hset_clear(&b->cur);
	b->cur_first = b->n;
	b->cur_raw = 0;
}

void logs_builder_add(struct logs_builder *b, const struct logs_rec *r, const struct logs_parsed *p)
{
	add_tokens(&b->cur, r->text, r->len, p);
	b->recs = xgrow(b->recs, sizeof(*b->recs), b->n + 1, &b->alloc);
	struct logs_brec *o = &b->recs[b->n++];
	o->seq = r->seq;
	o->t_ns = r->t_ns;
	o->release = r->release;
	o->stream = r->stream;
	o->level = r->level;
	o->proc = dict_index(b, r->process);
	o->inst = dict_index(b, r->instance);
	o->text = b->arena.len;
	o->len = r->len;
	strbuf_add(&b->arena, r->text, r->len);
	b->raw_bytes += r->len;
	b->cur_raw += r->len;
	if (b->cur_raw >= LOGS_BLOCK_BYTES)
		logs_builder_cut(b);
}

uint64_t logs_builder_truncate(struct logs_builder *b, size_t n)
{
	if (n >= b->n)
		return 0;
	uint64_t dropped = 0;
	for (size_t k = n; k < b->n; k++)
		dropped += b->recs[k].len;
	b->arena.len = n ? b->recs[n - 1].text + b->recs[n - 1].len : 0;
	b->arena.buf[b->arena.len] = '\0';
	b->n = n;
	b->raw_bytes -= dropped;
	/* Segments that start at or after n go; the one that holds n becomes
	 * the open segment again when it was the open one, else stays closed
	 * (with a few hashes too many) and a new open segment starts at n. */
	while (b->n_segs && b->segs[b->n_segs - 1].first >= n) {
		b->n_segs--;
		b->n_hashes = b->segs[b->n_segs].hoff;
	}
	if (b->cur_first >= n) {
		logs_hset_clear(&b->cur);
		b->cur_first = n;
		b->cur_raw = 0;
	} else {
		uint64_t raw = 0;
		for (size_t k = b->cur_first; k < n; k++)
			raw += b->recs[k].len;
		b->cur_raw = raw;
	}
	return dropped;
}

void logs_builder_get(const struct logs_builder *b, size_t k, struct logs_rec *out)
{
	const struct logs_brec *o = &b->recs[k];
	out->seq = o->seq;
	out->t_ns = o->t_ns;
	out->release = o->release;
	out->stream = o->stream;
	out->level = o->level;
	out->app = NULL;
	out->process = b->dict[o->proc];
	out->instance = b->dict[o->inst];
	out->text = b->arena.buf + o->text;
	out->len = o->len;
}

/* ---- encoding ---- */

static void put_varint(struct strbuf *sb, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;
	do {
		tmp[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			tmp[n] |= 0x80;
		n++;
	} while (v);
	strbuf_add(sb, tmp, n);
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*p == end)
			return -EINVAL;
		uint8_t c = *(*p)++;
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -EINVAL;
}

static inline uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Appends the block body of records [from, to) of b; adds the block's
 * process, instance and release attributes to set. */
static void encode_body(const struct logs_builder *b, size_t from, size_t to, struct strbuf *body,
			struct logs_hset *set, uint32_t *map)
{
	size_t n = to - from;
	const struct logs_brec *r = b->recs + from;

	/* Which dictionary entries these lines use, renumbered densely. */
	for (size_t k = 0; k < b->n_dict; k++)
		map[k] = UINT32_MAX;
	uint32_t n_used = 0;
	put_varint(body, 1);
	put_varint(body, n);
	for (size_t k = 0; k < n; k++) {
		if (map[r[k].proc] == UINT32_MAX)
			map[r[k].proc] = n_used++;
		if (map[r[k].inst] == UINT32_MAX)
			map[r[k].inst] = n_used++;
	}
	const char **used = xmalloc((n_used ? n_used : 1) * sizeof(*used));
	for (size_t k = 0; k < b->n_dict; k++)
		if (map[k] != UINT32_MAX)
			used[map[k]] = b->dict[k];
	put_varint(body, n_used);
	for (uint32_t k = 0; k < n_used; k++) {
		size_t l = strlen(used[k]);
		put_varint(body, l);
		strbuf_add(body, used[k], l);
		logs_hset_add(set, logs_hash_attr('p', used[k], l));
		logs_hset_add(set, logs_hash_attr('i', used[k], l));
	}
	free(used);
	uint64_t prev_seq = 0;
	int64_t prev_t = 0;
	int32_t last_release = -1;
	for (size_t k = 0; k < n; k++) {
		put_varint(body, r[k].seq - prev_seq);
		prev_seq = r[k].seq;
	}
	for (size_t k = 0; k < n; k++) {
		put_varint(body, zigzag(r[k].t_ns - prev_t));
		prev_t = r[k].t_ns;
	}
	for (size_t k = 0; k < n; k++) {
		put_varint(body, (uint64_t)(uint32_t)r[k].release);
		if (r[k].release != last_release) {
			char rel[16];
			int rl = snprintf(rel, sizeof(rel), "%d", (int)r[k].release);
			logs_hset_add(set, logs_hash_attr('r', rel, (size_t)rl));
			last_release = r[k].release;
		}
	}
	for (size_t k = 0; k < n; k++)
		strbuf_addc(body, (char)r[k].stream);
	for (size_t k = 0; k < n; k++)
		strbuf_addc(body, (char)r[k].level);
	for (size_t k = 0; k < n; k++)
		put_varint(body, map[r[k].proc]);
	for (size_t k = 0; k < n; k++)
		put_varint(body, map[r[k].inst]);
	for (size_t k = 0; k < n; k++)
		put_varint(body, r[k].len);
	for (size_t k = 0; k < n; k++)
		strbuf_add(body, b->arena.buf + r[k].text, r[k].len);
}

/* Segment k of b (k == n_segs: the open one): its records and hashes. */
static size_t seg_end(const struct logs_builder *b, size_t k)
{
	return k + 1 < b->n_segs ? b->segs[k + 1].first : k < b->n_segs ? b->cur_first : b->n;
}

static void seg_hashes_to(const struct logs_builder *b, size_t k, struct logs_hset *set)
{
	if (k < b->n_segs) {
		for (size_t j = 0; j < b->segs[k].hn; j++)
			logs_hset_add(set, b->hashes[b->segs[k].hoff + j]);
	} else {
		for (size_t j = 0; j < b->cur.cap; j++)
			if (b->cur.slots[j])
				logs_hset_add(set, b->cur.slots[j]);
		if (b->cur.has_zero)
			logs_hset_add(set, 0);
	}
}

static void bloom_from_set(struct logs_bloom *bb, const struct logs_hset *set, unsigned bits)
{
	logs_bloom_init(bb, set->n + (set->has_zero ? 1 : 0) + 1, bits);
	logs_hset_to_bloom(set, bb);
}

static const char blocks_magic[4] = {'p', 'l', 'b', '2'};

static void hset_add_all(struct logs_hset *to, const struct logs_hset *from)
{
	for (size_t k = 0; k < from->cap; k++)
		if (from->slots[k])
			logs_hset_add(to, from->slots[k]);
	if (from->has_zero)
		logs_hset_add(to, 0);
}

void logs_chunk_encode(const struct logs_builder *b, size_t from, size_t to, const char *app,
		       struct gzip_deflater *z, struct logs_chunk *c)
{
	memset(c, 0, sizeof(*c));
	strbuf_init(&c->data, 0);
	size_t n = to - from;
	const struct logs_brec *r = b->recs + from;
	uint32_t *map = xmalloc((b->n_dict ? b->n_dict : 1) * sizeof(*map));

	/* Segments that hold [from, to): the first one may start before from
	 * and the last one end after to (their hashes are then a superset). */
	size_t sk = 0;
	while (sk < b->n_segs && seg_end(b, sk) <= from)
		sk++;
	size_t upper = b->cur.n + 64;
	for (size_t k = sk; k < b->n_segs; k++)
		upper += b->segs[k].hn;

	struct logs_hset all, blk, attrs;
	logs_hset_init(&all);
	logs_hset_init(&blk);
	logs_hset_init(&attrs);
	logs_hset_reserve(&all, upper / 2);
	struct strbuf table, blooms, datas, body;
	strbuf_init(&table, 64);
	strbuf_init(&blooms, 0);
	strbuf_init(&datas, (size_t)(b->raw_bytes / (b->n ? b->n : 1)) * n / 4 + 64);
	strbuf_init(&body, 0);
	size_t n_blocks = 0;
	size_t at = from;
	while (at < to) {
		/* A block: whole segments up to LOGS_BLOCK_BYTES of text. */
		size_t end = at, first_seg = sk, n_seg = 0;
		uint64_t raw = 0;
		logs_hset_clear(&blk);
		logs_hset_clear(&attrs);
		while (end < to && (raw < LOGS_BLOCK_BYTES || end == at)) {
			size_t se = seg_end(b, sk);
			if (se > to)
				se = to;
			if (se <= end) { /* segments are never empty: defensive */
				sk++;
				continue;
			}
			for (size_t k = end; k < se; k++)
				raw += b->recs[k].len;
			end = se;
			n_seg++;
			if (se == seg_end(b, sk))
				sk++;
		}
		/* One closed segment: its hashes are distinct already. */
		bool one = n_seg == 1 && first_seg < b->n_segs;
		if (!one)
			for (size_t k = first_seg; k < first_seg + n_seg; k++)
				seg_hashes_to(b, k, &blk);
		strbuf_reset(&body);
		encode_body(b, at, end, &body, &attrs, map);
		size_t before = datas.len;
		if (gzip_deflater_compress(z, body.buf, body.len, &datas) < 0)
			abort(); /* only on out of memory or a body over 4 GiB */
		struct logs_bloom bb;
		if (one) {
			const struct logs_seg *sg = &b->segs[first_seg];
			logs_bloom_init(&bb, sg->hn + attrs.n + 1, LOGS_BLOCK_BLOOM_BITS_PER_KEY);
			for (size_t j = 0; j < sg->hn; j++) {
				logs_bloom_add(&bb, b->hashes[sg->hoff + j]);
				logs_hset_add(&all, b->hashes[sg->hoff + j]);
			}
		} else {
			logs_bloom_init(&bb, blk.n + attrs.n + 2, LOGS_BLOCK_BLOOM_BITS_PER_KEY);
			logs_hset_to_bloom(&blk, &bb);
			hset_add_all(&all, &blk);
		}
		logs_hset_to_bloom(&attrs, &bb);
		hset_add_all(&all, &attrs);
		strbuf_add(&blooms, bb.words, (size_t)bb.nblocks * 32);
		put_varint(&table, end - at);
		put_varint(&table, bb.nblocks);
		put_varint(&table, datas.len - before);
		logs_bloom_release(&bb);
		n_blocks++;
		at = end;
	}
	strbuf_add(&c->data, blocks_magic, sizeof(blocks_magic));
	put_varint(&c->data, n_blocks);
	strbuf_add(&c->data, table.buf, table.len);
	strbuf_add(&c->data, blooms.buf, blooms.len);
	strbuf_add(&c->data, datas.buf, datas.len);

	c->seq_min = r[0].seq;
	c->seq_max = r[n - 1].seq;
	c->t_min = c->t_max = r[0].t_ns;
	for (size_t k = 0; k < n; k++) {
		if (r[k].t_ns < c->t_min)
			c->t_min = r[k].t_ns;
		if (r[k].t_ns > c->t_max)
			c->t_max = r[k].t_ns;
		c->levels |= 1u << r[k].level;
		c->streams |= 1u << r[k].stream;
		c->raw_bytes += r[k].len;
	}
	if (app)
		logs_hset_add(&all, logs_hash_attr('a', app, strlen(app)));
	bloom_from_set(&c->bloom, &all, LOGS_BLOOM_BITS_PER_KEY);
	c->n_lines = (uint32_t)n;

	logs_hset_release(&all);
	logs_hset_release(&blk);
	logs_hset_release(&attrs);
	strbuf_release(&table);
	strbuf_release(&blooms);
	strbuf_release(&datas);
	strbuf_release(&body);
	free(map);
}

void logs_chunk_release(struct logs_chunk *c)
{
	logs_bloom_release(&c->bloom);
	strbuf_release(&c->data);
}

/* ---- decoding ---- */

void logs_view_init(struct logs_view *v)
{
	memset(v, 0, sizeof(*v));
	strbuf_init(&v->body, 0);
	strbuf_init(&v->strs, 0);
}

void logs_view_release(struct logs_view *v)
{
	strbuf_release(&v->body);
	strbuf_release(&v->strs);
	free(v->recs);
	free(v->dict);
	memset(v, 0, sizeof(*v));
}

#define LOGS_CHUNK_MAX_BODY (256u << 20)

int logs_view_decode(struct logs_view *v, const void *data, size_t len)
{
	strbuf_reset(&v->body);
	strbuf_reset(&v->strs);
	v->n = 0;
	v->n_dict = 0;
	if (gzip_decompress(data, len, LOGS_CHUNK_MAX_BODY, &v->body) < 0)
		return -EINVAL;
	const uint8_t *p = (const uint8_t *)v->body.buf, *end = p + v->body.len;
	uint64_t ver, n, nd, x;
	if (get_varint(&p, end, &ver) < 0 || ver != 1 || get_varint(&p, end, &n) < 0 ||
	    get_varint(&p, end, &nd) < 0 || n > (uint64_t)(end - p) || nd > (uint64_t)(end - p))
		return -EINVAL;
	free(v->dict);
	free(v->recs);
	v->dict = xcalloc(nd ? nd : 1, sizeof(*v->dict));
	v->recs = xcalloc(n ? n : 1, sizeof(*v->recs));
	size_t *offs = xcalloc(nd ? nd : 1, sizeof(*offs));
	for (uint64_t k = 0; k < nd; k++) {
		if (get_varint(&p, end, &x) < 0 || x > (uint64_t)(end - p))
			goto bad;
		offs[k] = v->strs.len;
		strbuf_add(&v->strs, p, x);
		strbuf_addc(&v->strs, '\0');
		p += x;
	}
	for (uint64_t k = 0; k < nd; k++)
		v->dict[k] = v->strs.buf + offs[k];
	v->n_dict = nd;
	uint64_t seq = 0;
	int64_t t = 0;
	for (uint64_t k = 0; k < n; k++) {
		if (get_varint(&p, end, &x) < 0)
			goto bad;
		seq += x;
		v->recs[k].seq = seq;
	}
	for (uint64_t k = 0; k < n; k++) {
		if (get_varint(&p, end, &x) < 0)
			goto bad;
		t += unzigzag(x);
		v->recs[k].t_ns = t;
	}
	for (uint64_t k = 0; k < n; k++) {
		if (get_varint(&p, end, &x) < 0)
			goto bad;
		v->recs[k].release = (int32_t)(uint32_t)x;
	}
	if ((uint64_t)(end - p) < 2 * n)
		goto bad;
	for (uint64_t k = 0; k < n; k++)
		v->recs[k].stream = *p++;
	for (uint64_t k = 0; k < n; k++)
		v->recs[k].level = *p++;
	for (uint64_t k = 0; k < n; k++) {
		if (get_varint(&p, end, &x) < 0 || x >= nd)
			goto bad;
		v->recs[k].proc = (uint32_t)x;
	}
	for (uint64_t k = 0; k < n; k++) {
		if (get_varint(&p, end, &x) < 0 || x >= nd)
			goto bad;
		v->recs[k].inst = (uint32_t)x;
	}
	for (uint64_t k = 0; k < n; k++) {
		if (get_varint(&p, end, &x) < 0 || x > UINT32_MAX)
			goto bad;
		v->recs[k].len = (uint32_t)x;
	}
	for (uint64_t k = 0; k < n; k++) {
		if (v->recs[k].len > (uint64_t)(end - p))
			goto bad;
		v->recs[k].text = (const char *)p;
		p += v->recs[k].len;
	}
	v->n = n;
	free(offs);
	return 0;
bad:
	free(offs);
	v->n = 0;
	v->n_dict = 0;
	return -EINVAL;
}

void logs_view_get(const struct logs_view *v, size_t k, const char *app, struct logs_rec *out)
{
	const struct logs_vrec *r = &v->recs[k];
	out->seq = r->seq;
	out->t_ns = r->t_ns;
	out->release = r->release;
	out->stream = r->stream;
	out->level = r->level;
	out->app = app;
	out->process = v->n_dict ? v->dict[r->proc] : "";
	out->instance = v->n_dict ? v->dict[r->inst] : "";
	out->text = r->text;
	out->len = r->len;
}

/* ---- stored bodies ---- */

void logs_blocks_init(struct logs_blocks *bl)
{
	memset(bl, 0, sizeof(*bl));
}

void logs_blocks_release(struct logs_blocks *bl)
{
	free(bl->b);
	free(bl->words);
	memset(bl, 0, sizeof(*bl));
}

int logs_blocks_head(struct logs_blocks *bl, const void *head, size_t head_len, size_t size,
		     size_t *need)
{
	const uint8_t *p = head, *end = p + head_len;
	bl->n = 0;
	bl->words_off = bl->n_words = 0;
	*need = 0;
	if (head_len > size)
		return -EINVAL;
	if (size >= 2 && head_len >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
		/* Before blocks: one gzip member, no block filter. */
		bl->b = xgrow(bl->b, sizeof(*bl->b), 1, &bl->alloc);
		bl->b[0] = (struct logs_block){.off = 0, .len = size};
		bl->n = 1;
		return 0;
	}
	uint64_t nb;
	if (head_len < sizeof(blocks_magic) + 1)
		goto short_head;
	if (memcmp(p, blocks_magic, sizeof(blocks_magic)) != 0)
		return -EINVAL;
	p += sizeof(blocks_magic);
	if (get_varint(&p, end, &nb) < 0)
		goto short_head;
	if (nb > (uint64_t)size / 3)
		return -EINVAL;
	bl->b = xgrow(bl->b, sizeof(*bl->b), nb ? nb : 1, &bl->alloc);
	uint64_t words = 0, bytes = 0;
	for (uint64_t k = 0; k < nb; k++) {
		uint64_t lines, nblocks, dlen;
		if (get_varint(&p, end, &lines) < 0 || get_varint(&p, end, &nblocks) < 0 ||
		    get_varint(&p, end, &dlen) < 0)
			goto short_head;
		if (lines > UINT32_MAX || nblocks > (1u << 24) || dlen > (uint64_t)size)
			return -EINVAL;
		bl->b[k] = (struct logs_block){.n_lines = (uint32_t)lines, .nblocks = (uint32_t)nblocks,
					       .words = (size_t)words, .off = (size_t)bytes, .len = (size_t)dlen};
		words += nblocks * 8;
		bytes += dlen;
	}
	size_t table = (size_t)(p - (const uint8_t *)head);
	if (words * 4 > (uint64_t)(size - table) || bytes != (uint64_t)(size - table) - words * 4)
		return -EINVAL;
	for (uint64_t k = 0; k < nb; k++)
		bl->b[k].off += table + (size_t)words * 4;
	bl->words_off = table;
	bl->n_words = (size_t)words;
	bl->words = xgrow(bl->words, sizeof(*bl->words), words ? words : 1, &bl->alloc_words);
	bl->n = nb;
	return 0;
short_head:
	if (head_len >= size)
		return -EINVAL; /* it is all there: damaged */
	*need = head_len * 2 < size ? head_len * 2 : size;
	return -EAGAIN;
}

int logs_blocks_open(struct logs_blocks *bl, const void *data, size_t len)
{
	size_t need;
	int r = logs_blocks_head(bl, data, len, len, &need);
	if (r < 0)
		return -EINVAL;
	/* The filters are copied: the stored body has no alignment. */
	if (bl->n_words)
		memcpy(bl->words, (const char *)data + bl->words_off, bl->n_words * 4);
	for (size_t k = 0; k < bl->n; k++)
		bl->b[k].data = (const char *)data + bl->b[k].off;
	return 0;
}

/* ---- batches ---- */

struct logs_batch *logs_batch_new(void)
{
	struct logs_batch *b = xcalloc(1, sizeof(*b));
	strbuf_init(&b->data, 65536);
	return b;
}

void logs_batch_free(struct logs_batch *b)
{
	if (!b)
		return;
	strbuf_release(&b->data);
	free(b);
}

void logs_batch_add(struct logs_batch *b, const struct logs_rec *r)
{
	size_t al = r->app ? strlen(r->app) : 0, pl = r->process ? strlen(r->process) : 0,
	       il = r->instance ? strlen(r->instance) : 0;
	if (al > 255)
		al = 255;
	if (pl > 255)
		pl = 255;
	if (il > 65535)
		il = 65535;
	struct logs_bhdr h = {
		.seq = r->seq, .t_ns = r->t_ns, .release = r->release, .len = r->len,
		.stream = r->stream, .level = r->level, .app_len = (uint8_t)al, .proc_len = (uint8_t)pl,
		.inst_len = (uint16_t)il,
	};
	size_t total = sizeof(h) + al + pl + il + 3 + r->len;
	size_t padded = (total + 7) & ~(size_t)7;
	strbuf_grow(&b->data, padded);
	char *o = b->data.buf + b->data.len;
	memcpy(o, &h, sizeof(h));
	o += sizeof(h);
	memcpy(o, r->app ? r->app : "", al);
	o[al] = '\0';
	o += al + 1;
	memcpy(o, r->process ? r->process : "", pl);
	o[pl] = '\0';
	o += pl + 1;
	memcpy(o, r->instance ? r->instance : "", il);
	o[il] = '\0';
	o += il + 1;
	memcpy(o, r->text, r->len);
	b->data.len += padded;
	b->data.buf[b->data.len] = '\0';
	b->n++;
}

bool logs_batch_next(const struct logs_batch *b, size_t *pos, struct logs_rec *out,
		     struct logs_bhdr **hdr)
{
	if (*pos >= b->data.len)
		return false;
	struct logs_bhdr *h = (struct logs_bhdr *)(void *)(b->data.buf + *pos);
	const char *s = (const char *)(h + 1);
	out->seq = h->seq;
	out->t_ns = h->t_ns;
	out->release = h->release;
	out->stream = h->stream;
	out->level = h->level;
	out->len = h->len;
	out->app = s;
	s += h->app_len + 1;
	out->process = s;
	s += h->proc_len + 1;
	out->instance = s;
	s += h->inst_len + 1;
	out->text = s;
	if (hdr)
		*hdr = h;
	size_t total = sizeof(*h) + h->app_len + h->proc_len + h->inst_len + 3 + h->len;
	*pos += (total + 7) & ~(size_t)7;
	return true;
}
