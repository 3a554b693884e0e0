/* devices/ratelimit: token-bucket arithmetic on a clock the test drives (refill, burst, two buckets, live change). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

#include "devices/ratelimit.h"

#define MS 1000000ull

static struct ratelimit_cfg bytes_only(uint64_t size, uint64_t burst, uint64_t refill_ms)
{
	return (struct ratelimit_cfg){ .bytes = { size, burst, refill_ms } };
}

Test(ratelimit, starts_full_then_refuses_and_says_how_long)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = bytes_only(1000, 0, 1000); /* 1000 bytes a second */
	uint64_t w = 0;
	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_consume(&rl, 1, 1000, 0, &w));
	cr_assert_eq(w, 0);
	cr_assert_not(ratelimit_consume(&rl, 1, 1, 0, &w));
	cr_assert_eq(w, 1 * MS, "one byte at 1000/s is 1 ms away, got %llu ns", (unsigned long long)w);
	cr_assert_not(ratelimit_consume(&rl, 1, 500, 0, &w));
	cr_assert_eq(w, 500 * MS);
	cr_assert_not(ratelimit_consume(&rl, 1, 500, 499 * MS, &w));
	cr_assert_eq(w, 1 * MS);
	cr_assert(ratelimit_consume(&rl, 1, 500, 500 * MS, &w));
}

Test(ratelimit, refill_is_exact_over_many_small_steps)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = bytes_only(3, 0, 1000); /* 1 token every 333.33 ms */
	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_consume(&rl, 0, 3, 0, NULL));
	/* 1000 steps of 1 ms: rounding each step down would never earn a token */
	uint64_t t = 0;
	for (int i = 0; i < 1000; i++) {
		t += MS;
		cr_assert(ratelimit_consume(&rl, 0, 0, t, NULL)); /* takes nothing, refills */
	}
	cr_assert_eq(rl.bytes.budget, 3, "a second earns exactly 3 tokens, got %lld", (long long)rl.bytes.budget);
}

Test(ratelimit, wait_is_exactly_enough)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = bytes_only(3, 0, 1000);
	uint64_t w;
	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_consume(&rl, 0, 3, 0, NULL));
	cr_assert_not(ratelimit_consume(&rl, 0, 1, 0, &w));
	cr_assert_not(ratelimit_consume(&rl, 0, 1, w - 1, NULL), "one ns early is too early");
	cr_assert(ratelimit_consume(&rl, 0, 1, w, NULL), "the promised time is enough (w=%llu)", (unsigned long long)w);
}

Test(ratelimit, long_idle_fills_to_size_not_beyond)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = bytes_only(1000, 0, 100);
	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_consume(&rl, 0, 1000, 0, NULL));
	uint64_t later = UINT64_MAX - 5; /* days of idle, the largest clock value */
	cr_assert(ratelimit_consume(&rl, 0, 1000, later, NULL));
	cr_assert_not(ratelimit_consume(&rl, 0, 1, later, NULL), "the bucket caps at its size");
}

Test(ratelimit, clock_going_backwards_earns_nothing)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = bytes_only(10, 0, 10);
	ratelimit_init(&rl, &c, 100 * MS);
	cr_assert(ratelimit_consume(&rl, 0, 10, 100 * MS, NULL));
	cr_assert_not(ratelimit_consume(&rl, 0, 1, 50 * MS, NULL));
	cr_assert_not(ratelimit_consume(&rl, 0, 1, 100 * MS, NULL));
	cr_assert(ratelimit_consume(&rl, 0, 1, 101 * MS, NULL));
}

Test(ratelimit, one_time_burst_is_spent_first_and_never_refills)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = bytes_only(100, 1000, 1000);
	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_consume(&rl, 0, 1000, 0, NULL), "the burst");
	cr_assert_eq(rl.bytes.budget, 100, "the bucket itself untouched");
	cr_assert(ratelimit_consume(&rl, 0, 100, 0, NULL));
	cr_assert_not(ratelimit_consume(&rl, 0, 1, 0, NULL));
	/* an hour later: the bucket is full again, the burst is gone for good */
	cr_assert(ratelimit_consume(&rl, 0, 100, 3600000 * MS, NULL));
	cr_assert_not(ratelimit_consume(&rl, 0, 1, 3600000 * MS, NULL));
}

Test(ratelimit, burst_and_bucket_together_and_failure_keeps_the_burst)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = bytes_only(100, 50, 1000);
	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_consume(&rl, 0, 120, 0, NULL), "50 from the burst, 70 from the bucket");
	cr_assert_eq(rl.bytes.burst, 0);
	cr_assert_eq(rl.bytes.budget, 30);

	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_consume(&rl, 0, 100, 0, NULL)); /* 50 burst + 50 bucket */
	cr_assert_not(ratelimit_consume(&rl, 0, 80, 0, NULL));
	cr_assert_eq(rl.bytes.budget, 50, "a refused request takes nothing");
}

Test(ratelimit, ops_and_bytes_both_must_allow)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = { .bytes = { 1000, 0, 1000 }, .ops = { 2, 0, 1000 } };
	uint64_t w;
	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_consume(&rl, 1, 100, 0, NULL));
	cr_assert(ratelimit_consume(&rl, 1, 100, 0, NULL));
	cr_assert_not(ratelimit_consume(&rl, 1, 100, 0, &w), "out of ops");
	cr_assert_eq(w, 500 * MS, "one op at 2/s");
	cr_assert_eq(rl.bytes.budget, 800, "the bytes were not taken for the refused op");
	/* now bytes are the limit: 900 bytes need 100 more, 100 ms; ops are available at 500 ms */
	cr_assert_not(ratelimit_consume(&rl, 1, 900, 0, &w));
	cr_assert_eq(w, 500 * MS, "the longer of the two waits");
	cr_assert_not(ratelimit_consume(&rl, 1, 900, 499 * MS, NULL));
	cr_assert(ratelimit_consume(&rl, 1, 900, 500 * MS, NULL));
	cr_assert_eq(rl.ops.budget, 0);
	cr_assert_eq(rl.bytes.budget, 100, "800 + 500 refilled, capped at 1000, less 900; got %lld",
		     (long long)rl.bytes.budget);
}

Test(ratelimit, oversized_request_waits_for_a_full_bucket_then_leaves_debt)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = bytes_only(1000, 0, 1000);
	uint64_t w;
	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_consume(&rl, 0, 500, 0, NULL));
	cr_assert_not(ratelimit_consume(&rl, 0, 3000, 0, &w), "3000 > size: needs a full bucket");
	cr_assert_eq(w, 500 * MS);
	cr_assert(ratelimit_consume(&rl, 0, 3000, 500 * MS, NULL));
	cr_assert_eq(rl.bytes.budget, -2000);
	cr_assert_not(ratelimit_consume(&rl, 0, 1, 500 * MS, &w));
	cr_assert_eq(w, 2001 * MS, "the debt is paid back at the steady rate");
}

Test(ratelimit, unlimited_buckets_never_refuse)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = { 0 };
	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_is_unlimited(&c));
	for (int i = 0; i < 1000; i++)
		cr_assert(ratelimit_consume(&rl, 1000, UINT64_MAX, 0, NULL));
	struct ratelimit_cfg o = { .ops = { 1, 0, 1000 } };
	ratelimit_init(&rl, &o, 0);
	cr_assert(ratelimit_consume(&rl, 1, UINT64_MAX, 0, NULL), "bytes unlimited, one op allowed");
	cr_assert_not(ratelimit_consume(&rl, 1, 0, 0, NULL));
}

Test(ratelimit, live_update_keeps_unchanged_buckets_and_restarts_changed_ones)
{
	struct ratelimit rl;
	struct ratelimit_cfg c = { .bytes = { 1000, 0, 1000 }, .ops = { 10, 0, 1000 } };
	ratelimit_init(&rl, &c, 0);
	cr_assert(ratelimit_consume(&rl, 5, 1000, 0, NULL));

	struct ratelimit_cfg d = c;
	d.bytes.size = 5000;
	d.bytes.one_time_burst = 100;
	ratelimit_update(&rl, &d, 10 * MS);
	cr_assert_eq(rl.bytes.budget, 5000, "the changed bucket starts full");
	cr_assert_eq(rl.bytes.burst, 100);
	cr_assert_eq(rl.ops.budget, 5, "the unchanged one keeps its state");

	struct ratelimit_cfg off = d;
	off.bytes = (struct rl_bucket_cfg){ 0 };
	ratelimit_update(&rl, &off, 10 * MS);
	cr_assert(ratelimit_consume(&rl, 1, 1ull << 40, 10 * MS, NULL), "bytes limit removed live");
}

Test(ratelimit, parse_full_spec)
{
	struct ratelimit_cfg c;
	char err[160];
	cr_assert_eq(ratelimit_parse("bytes=10M/1s,bytes-burst=100M,ops=1000/250ms,ops-burst=5", &c, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(c.bytes.size, 10ull << 20);
	cr_assert_eq(c.bytes.refill_ms, 1000);
	cr_assert_eq(c.bytes.one_time_burst, 100ull << 20);
	cr_assert_eq(c.ops.size, 1000);
	cr_assert_eq(c.ops.refill_ms, 250);
	cr_assert_eq(c.ops.one_time_burst, 5);
	cr_assert_eq(ratelimit_parse("ops=7/100", &c, err, sizeof(err)), 0);
	cr_assert_eq(c.ops.refill_ms, 100);
	cr_assert_eq(c.bytes.size, 0);
	cr_assert_eq(ratelimit_parse("none", &c, err, sizeof(err)), 0);
	cr_assert(ratelimit_is_unlimited(&c));
	cr_assert_eq(ratelimit_parse("", &c, err, sizeof(err)), 0);
}

Test(ratelimit, parse_errors_say_what_is_wrong)
{
	struct ratelimit_cfg c;
	char err[160];
	static const char *const bad[] = {
		"bytes",	"bytes=10M",	  "bytes=0/1s",	       "bytes=10M/0",	  "bytes=10X/1s",
		"bytes=10M/1h", "bytes=10M/1Ks",  "bytes=/1s",	       "bytes=10M/",	  "speed=1/1",
		"bytes=1/1,bytes=2/2", "bytes-burst=5", "ops-burst=5,bytes=1/1", "ops=1/1,", "bytes=99999999999G/1",
		"bytes=1/99999999999s", "ops=-1/1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(ratelimit_parse(bad[i], &c, err, sizeof(err)), -EINVAL, "'%s' accepted", bad[i]);
		cr_assert(err[0] != '\0', "'%s': no message", bad[i]);
	}
	ratelimit_parse("bytes=10M/1h", &c, err, sizeof(err));
	cr_assert(strstr(err, "1h") != NULL, "the message names the bad part: %s", err);
}
