/* Token-bucket rate limiter (bytes and operations) with Firecracker's semantics, for virtio-blk and virtio-net. */
#ifndef PADCELL_RATELIMIT_H
#define PADCELL_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * One bucket's limits.  size == 0 means "no limit" (the bucket is disabled).
 * The bucket holds up to `size` tokens and refills from empty to full in `refill_ms`,
 * continuously.  `one_time_burst` extra tokens are spent before the bucket's own and are
 * never refilled (Firecracker's one_time_burst: a fast start, then the steady rate).
 */
struct rl_bucket_cfg {
	uint64_t size;
	uint64_t one_time_burst;
	uint64_t refill_ms;
};

/* The two buckets of a limiter: bytes, and operations (requests or packets). */
struct ratelimit_cfg {
	struct rl_bucket_cfg bytes;
	struct rl_bucket_cfg ops;
};

/* One bucket's state.  Private to ratelimit.c; in the header only so callers can embed it. */
struct rl_bucket {
	struct rl_bucket_cfg cfg;
	uint64_t burst;          /* one-time burst tokens left */
	int64_t budget;          /* tokens now; negative after an oversized request (debt) */
	uint64_t frac;           /* refill remainder, in units of 1/(refill_ms * 1e6) token */
	uint64_t last_ns;        /* time of the last refill */
};

/* A limiter.  Not thread-safe: the device that owns it serializes calls. */
struct ratelimit {
	struct rl_bucket bytes;
	struct rl_bucket ops;
};

/* Starts both buckets full (Firecracker does too) at time now_ns (any monotonic clock, in ns). */
void ratelimit_init(struct ratelimit *rl, const struct ratelimit_cfg *cfg, uint64_t now_ns);

/*
 * Asks for `ops` operations carrying `bytes` bytes at time now_ns.  Returns true and takes the
 * tokens from both buckets if both can give them; otherwise takes nothing, returns false and,
 * if wait_ns is not NULL, stores how long from now_ns until both buckets will have enough
 * (the caller arms a timer for that and asks again).  A request larger than a bucket's size
 * could never fit: it is let through once that bucket is full and leaves the bucket in debt
 * for the excess, so the long-run rate still holds.  Time going backwards counts as no time.
 */
bool ratelimit_consume(struct ratelimit *rl, uint64_t ops, uint64_t bytes, uint64_t now_ns, uint64_t *wait_ns);

/*
 * Replaces the limits live (the API's PATCH).  A bucket whose limits are unchanged keeps its
 * state; a changed one restarts full with its new one-time burst, as Firecracker's update does.
 */
void ratelimit_update(struct ratelimit *rl, const struct ratelimit_cfg *cfg, uint64_t now_ns);

/* True if neither bucket limits anything. */
bool ratelimit_is_unlimited(const struct ratelimit_cfg *cfg);

/* True if the limiter limits anything (a device skips the clock when it does not). */
static inline bool ratelimit_active(const struct ratelimit *rl)
{
	return rl->bytes.cfg.size != 0 || rl->ops.cfg.size != 0;
}

/* The limits a limiter has now. */
void ratelimit_get(const struct ratelimit *rl, struct ratelimit_cfg *cfg);

/*
 * A live change as the API gives it: a bucket that is set replaces that bucket (size 0: no
 * limit), one that is not set stays as it is, state and all (Firecracker's PATCH semantics).
 */
struct ratelimit_patch {
	bool bytes_set, ops_set;
	struct ratelimit_cfg cfg;
};
void ratelimit_patch_apply(struct ratelimit *rl, const struct ratelimit_patch *p, uint64_t now_ns);

/* CLOCK_MONOTONIC in nanoseconds: the clock devices hand their limiters unless a test injects one. */
uint64_t ratelimit_clock_ns(void);

/*
 * Parses the CLI/API spec: comma-separated KEY=VALUE, each key at most once, in any order:
 *   bytes=SIZE/TIME      the bytes bucket: SIZE bytes per TIME (refill time)
 *   bytes-burst=SIZE     its one-time burst
 *   ops=N/TIME           the operations bucket
 *   ops-burst=N          its one-time burst
 * SIZE and N are decimal integers with an optional binary suffix K, M, G (KiB, MiB, GiB);
 * TIME is an integer with an optional unit ms (the default) or s.  Example:
 *   bytes=10M/1s,bytes-burst=100M,ops=1000/1s
 * "none" or an empty string means unlimited.  A burst without its bucket is an error.
 * Returns 0 or -EINVAL with one line in err.
 */
int ratelimit_parse(const char *spec, struct ratelimit_cfg *cfg, char *err, size_t errlen);

#endif
