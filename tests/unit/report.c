/* One summary line the test-tier runner understands, and every skip with its reason. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <stdio.h>

/*
 * Criterion leaves skipped tests out of its "Synthesis" line and prints them only
 * with --verbose.  A missing capability must be a visible skip, so each one gets a
 * line here, and the closing line counts passes, failures and skips in the form
 * tests/run-all.sh reads.
 */
/* The tier name the line starts with: one report.c for every Criterion binary. */
#ifndef REPORT_TIER
#define REPORT_TIER "unit"
#endif

/* Report hooks run in the runner process, so a plain counter sees every test. */
static size_t skipped;

ReportHook(POST_TEST)(struct criterion_test_stats *stats)
{
	if (stats->test_status != CR_STATUS_SKIPPED)
		return;
	skipped++;
	fprintf(stderr, "[SKIP] %s::%s: %s\n", stats->test->category, stats->test->name,
		stats->message ? stats->message : "skipped");
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	/* Criterion's tests_failed already includes the crashed ones, and its tests_skipped
	 * the ones --filter left out; only skips a test asked for count here. */
	fprintf(stderr, REPORT_TIER ": %zu passed, %zu failed, %zu skipped\n", stats->tests_passed,
		stats->tests_failed, skipped);
}
