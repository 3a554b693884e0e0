/* Token buckets: exact integer refill, one-time burst, all-or-nothing consumption over two buckets. */
#include "devices/ratelimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/err.h"

#define NS_PER_MS 1000000ull
/* Bounds that keep every product below in 128 bits and every budget in an int64_t. */
#define RL_MAX_SIZE (1ull << 53)
#define RL_MAX_REFILL_MS (1ull << 32)

typedef unsigned __int128 u128;

static uint64_t refill_ns(const struct rl_bucket_cfg *c)
{
	uint64_t ms = c->refill_ms > RL_MAX_REFILL_MS ? RL_MAX_REFILL_MS : c->refill_ms;
	return ms * NS_PER_MS;
}

static bool bucket_enabled(const struct rl_bucket *b) { return b->cfg.size != 0; }

static void bucket_init(struct rl_bucket *b, const struct rl_bucket_cfg *cfg, uint64_t now_ns)
{
	memset(b, 0, sizeof(*b));
	b->cfg = *cfg;
	if (b->cfg.size > RL_MAX_SIZE)
		b->cfg.size = RL_MAX_SIZE;
	b->burst = cfg->one_time_burst;
	b->budget = (int64_t)b->cfg.size;
	b->last_ns = now_ns;
}

/*
 * Adds the tokens earned since last_ns.  The remainder of the division is kept in frac so
 * that many small steps add up to exactly what one long step would (no drift from rounding).
 */
static void bucket_refill(struct rl_bucket *b, uint64_t now_ns)
{
	uint64_t size = b->cfg.size, rns = refill_ns(&b->cfg);
	if (now_ns <= b->last_ns)
		return; /* no time passed, or the clock went backwards */
	uint64_t elapsed = now_ns - b->last_ns;
	b->last_ns = now_ns;
	if (b->budget >= (int64_t)size)
		return;
	if (rns == 0) {
		b->budget = (int64_t)size;
		return;
	}
	u128 acc = (u128)elapsed * size + b->frac; /* < 2^128: (2^64-1)^2 + 2^64 fits */
	u128 gained = acc / rns;
	u128 missing = (u128)((int64_t)size - b->budget);
	if (gained >= missing) {
		b->budget = (int64_t)size;
		b->frac = 0;
	} else {
		b->budget += (int64_t)gained;
		b->frac = (uint64_t)(acc % rns);
	}
}

/* How many tokens a request takes from the bucket itself, after the one-time burst. */
static uint64_t bucket_rest(const struct rl_bucket *b, uint64_t n)
{
	return n > b->burst ? n - b->burst : 0;
}

/* A request within the size needs that many tokens; a bigger one needs a full bucket. */
static bool bucket_can(const struct rl_bucket *b, uint64_t rest)
{
	if (rest == 0)
		return true;
	if (rest > b->cfg.size)
		return b->budget >= (int64_t)b->cfg.size;
	return b->budget >= (int64_t)rest;
}

static void bucket_take(struct rl_bucket *b, uint64_t n)
{
	uint64_t from_burst = n < b->burst ? n : b->burst;
	uint64_t rest = n - from_burst;
	b->burst -= from_burst;
	/* rest <= RL_MAX_SIZE or the bucket was full; the debt is bounded so budget stays an int64 */
	if (rest > (uint64_t)INT64_MAX / 2)
		rest = (uint64_t)INT64_MAX / 2;
	b->budget -= (int64_t)rest;
}

/* Nanoseconds until bucket_can(b, rest) holds: the smallest t with (t*size + frac)/rns >= deficit. */
static uint64_t bucket_wait(const struct rl_bucket *b, uint64_t rest)
{
	uint64_t size = b->cfg.size, rns = refill_ns(&b->cfg);
	uint64_t target = rest > size ? size : rest;
	if (rns == 0 || b->budget >= (int64_t)target)
		return 0;
	u128 deficit = (u128)((int64_t)target - b->budget);
	u128 need = deficit * rns;
	need = need > b->frac ? need - b->frac : 0;
	u128 t = (need + size - 1) / size;
	return t > UINT64_MAX ? UINT64_MAX : (uint64_t)t;
}

void ratelimit_init(struct ratelimit *rl, const struct ratelimit_cfg *cfg, uint64_t now_ns)
{
	bucket_init(&rl->bytes, &cfg->bytes, now_ns);
	bucket_init(&rl->ops, &cfg->ops, now_ns);
}

bool ratelimit_consume(struct ratelimit *rl, uint64_t ops, uint64_t bytes, uint64_t now_ns, uint64_t *wait_ns)
{
	struct rl_bucket *bk[2] = { &rl->bytes, &rl->ops };
	uint64_t n[2] = { bytes, ops };
	bool ok = true;
	uint64_t wait = 0;

	for (int i = 0; i < 2; i++) {
		if (!bucket_enabled(bk[i]))
			continue;
		bucket_refill(bk[i], now_ns);
		uint64_t rest = bucket_rest(bk[i], n[i]);
		if (!bucket_can(bk[i], rest)) {
			uint64_t w = bucket_wait(bk[i], rest);
			ok = false;
			wait = w > wait ? w : wait;
		}
	}
	/*
	 * All or nothing.  Firecracker takes the ops token and gives it back when the bytes
	 * bucket refuses (and spends a partial burst even on failure); checking both first
	 * gives the same answer without the undo.
	 */
	if (!ok) {
		if (wait_ns)
			*wait_ns = wait ? wait : 1;
		return false;
	}
	for (int i = 0; i < 2; i++)
		if (bucket_enabled(bk[i]))
			bucket_take(bk[i], n[i]);
	if (wait_ns)
		*wait_ns = 0;
	return true;
}

void ratelimit_update(struct ratelimit *rl, const struct ratelimit_cfg *cfg, uint64_t now_ns)
{
	if (memcmp(&rl->bytes.cfg, &cfg->bytes, sizeof(cfg->bytes)) != 0)
		bucket_init(&rl->bytes, &cfg->bytes, now_ns);
	if (memcmp(&rl->ops.cfg, &cfg->ops, sizeof(cfg->ops)) != 0)
		bucket_init(&rl->ops, &cfg->ops, now_ns);
}

bool ratelimit_is_unlimited(const struct ratelimit_cfg *cfg)
{
	return cfg->bytes.size == 0 && cfg->ops.size == 0;
}

void ratelimit_get(const struct ratelimit *rl, struct ratelimit_cfg *cfg)
{
	cfg->bytes = rl->bytes.cfg;
	cfg->ops = rl->ops.cfg;
}

void ratelimit_patch_apply(struct ratelimit *rl, const struct ratelimit_patch *p, uint64_t now_ns)
{
	struct ratelimit_cfg c;
	ratelimit_get(rl, &c);
	if (p->bytes_set)
		c.bytes = p->cfg.bytes;
	if (p->ops_set)
		c.ops = p->cfg.ops;
	/* A disabled bucket is all zeroes, however it was spelt (size 0 with a refill time, say). */
	if (!c.bytes.size)
		c.bytes = (struct rl_bucket_cfg){ 0 };
	if (!c.ops.size)
		c.ops = (struct rl_bucket_cfg){ 0 };
	ratelimit_update(rl, &c, now_ns);
}

uint64_t ratelimit_clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A decimal integer with an optional K/M/G (binary) suffix, at most `max`. */
static int parse_size(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0, mult = 1;
	size_t i = 0;
	if (len == 0)
		return -EINVAL;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == 0)
		return -EINVAL;
	if (i + 1 == len) {
		switch (s[i]) {
		case 'K': case 'k': mult = 1ull << 10; break;
		case 'M': case 'm': mult = 1ull << 20; break;
		case 'G': case 'g': mult = 1ull << 30; break;
		default: return -EINVAL;
		}
	} else if (i != len) {
		return -EINVAL;
	}
	if (v > max / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

/* TIME: an integer, then nothing or "ms" (milliseconds) or "s". */
static int parse_time(const char *s, size_t len, uint64_t *ms)
{
	uint64_t mult = 1;
	if (len >= 2 && strncmp(s + len - 2, "ms", 2) == 0)
		len -= 2;
	else if (len >= 1 && s[len - 1] == 's')
		len -= 1, mult = 1000;
	int rc = parse_size(s, len, RL_MAX_REFILL_MS, ms);
	if (rc == 0 && (len == 0 || s[len - 1] < '0' || s[len - 1] > '9'))
		return -EINVAL; /* no K/M/G on a time */
	if (rc == 0 && *ms > RL_MAX_REFILL_MS / mult)
		return -ERANGE;
	if (rc == 0)
		*ms *= mult;
	return rc;
}

int ratelimit_parse(const char *spec, struct ratelimit_cfg *cfg, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	if (spec[0] == '\0' || strcmp(spec, "none") == 0)
		return 0;

	bool seen[4] = { false };
	static const char *const keys[4] = { "bytes", "bytes-burst", "ops", "ops-burst" };
	const char *p = spec;
	for (;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (!eq)
			return errorf(err, errlen, -EINVAL, "rate limit '%.*s': expected KEY=VALUE", (int)len, p);
		size_t klen = (size_t)(eq - p), vlen = len - klen - 1;
		const char *val = eq + 1;
		int k = -1;
		for (int i = 0; i < 4; i++)
			if (strlen(keys[i]) == klen && strncmp(p, keys[i], klen) == 0)
				k = i;
		if (k < 0)
			return errorf(err, errlen, -EINVAL,
				      "rate limit: unknown key '%.*s' (bytes, bytes-burst, ops, ops-burst)", (int)klen, p);
		if (seen[k])
			return errorf(err, errlen, -EINVAL, "rate limit: '%s' given twice", keys[k]);
		seen[k] = true;

		struct rl_bucket_cfg *b = k < 2 ? &cfg->bytes : &cfg->ops;
		if (k == 0 || k == 2) {
			const char *slash = memchr(val, '/', vlen);
			if (!slash)
				return errorf(err, errlen, -EINVAL, "rate limit '%.*s': expected %s=%s/TIME", (int)len,
					      p, keys[k], k == 0 ? "SIZE" : "N");
			size_t slen = (size_t)(slash - val);
			if (parse_size(val, slen, RL_MAX_SIZE, &b->size) < 0 || b->size == 0)
				return errorf(err, errlen, -EINVAL,
					      "rate limit '%.*s': '%.*s' is not a positive count (K, M, G suffixes; at most 2^53)",
					      (int)len, p, (int)slen, val);
			if (parse_time(slash + 1, vlen - slen - 1, &b->refill_ms) < 0 || b->refill_ms == 0)
				return errorf(err, errlen, -EINVAL,
					      "rate limit '%.*s': '%.*s' is not a positive time (N, Nms or Ns)", (int)len,
					      p, (int)(vlen - slen - 1), slash + 1);
		} else if (parse_size(val, vlen, RL_MAX_SIZE, &b->one_time_burst) < 0) {
			return errorf(err, errlen, -EINVAL, "rate limit '%.*s': '%.*s' is not a count", (int)len, p,
				      (int)vlen, val);
		}
		if (!end)
			break;
		p = end + 1;
	}
	if ((seen[1] && !seen[0]) || (seen[3] && !seen[2]))
		return errorf(err, errlen, -EINVAL, "rate limit: a burst needs its bucket (%s)",
			      seen[1] && !seen[0] ? "bytes=SIZE/TIME" : "ops=N/TIME");
	return 0;
}
