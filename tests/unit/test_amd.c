/* Unit tests: answering-machine detection, on synthetic signals and on a generated set of
 * spoken human and machine greetings (tests/media/gen-amd-set, espeak-ng + sox). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/test_alloc.h"

#include "core/mem.h"
#include "media/det_int.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---- */

#define RATE  8000u
#define FRAME 160u

static uint32_t lcg_state = 1;

/* Deterministic, roughly Gaussian noise with RMS `rms` (sum of 4 uniforms). */
static double noise(double rms)
{
	double s = 0;
	for (int i = 0; i < 4; i++) {
		lcg_state = lcg_state * 1103515245u + 12345u;
		s += ((lcg_state >> 8) & 0xffff) / 65536.0 - 0.5;
	}
	return s * rms * sqrt(3.0);
}

static double dbfs(double db)
{
	return 32768.0 * pow(10, db / 20);
}

static int16_t clip(double v)
{
	return (int16_t)lrint(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
}

/* Appends ms of white noise at noise_db dBFS plus a sine of freq at tone_db dBFS peak
 * (freq 0: none) to pcm at *n. */
static void add(int16_t *pcm, unsigned *n, unsigned ms, double noise_db, double freq,
                double tone_db)
{
	unsigned len = ms * RATE / 1000;
	for (unsigned i = 0; i < len; i++) {
		double v = noise(dbfs(noise_db));
		if (freq > 0)
			v += dbfs(tone_db) * sin(2 * M_PI * freq * i / RATE);
		pcm[*n + i] = clip(v);
	}
	*n += len;
}

/* Runs pcm through a detector in chunks of `chunk` samples; returns 1 with *r on a
 * verdict, 0 when the audio ran out first. Checks the verdict is given only once. */
static int run(const struct media_amd_config *c, const int16_t *pcm, unsigned n, unsigned chunk,
               struct media_amd_result *r)
{
	struct media_amd *a = NULL;
	assert_int_equal(media_amd_create(&a, c), 0);
	int got = 0;
	for (unsigned pos = 0; pos < n; pos += chunk) {
		unsigned len = n - pos < chunk ? n - pos : chunk;
		struct media_amd_result x;
		if (media_amd_feed(a, pcm + pos, len, &x)) {
			assert_false(got);
			*r = x;
			got = 1;
		}
	}
	media_amd_destroy(a);
	return got;
}

static const char *verdict_name(enum media_amd_verdict v)
{
	switch (v) {
	case MEDIA_AMD_HUMAN:
		return "HUMAN";
	case MEDIA_AMD_MACHINE:
		return "MACHINE";
	case MEDIA_AMD_UNSURE:
		return "UNSURE";
	}
	return "?";
}

/* ---- synthetic cases ---- */

static void test_amd_config(void **state)
{
	(void)state;
	struct media_amd_config c;
	media_amd_config_default(&c);
	assert_int_equal(c.initial_silence_ms, 2500);
	assert_int_equal(c.greeting_ms, 1500);
	assert_int_equal(c.after_greeting_silence_ms, 800);
	assert_int_equal(c.total_analysis_ms, 5000);
	assert_int_equal(c.min_word_ms, 100);
	assert_int_equal(c.between_words_silence_ms, 50);
	assert_int_equal(c.maximum_words, 4);
	assert_int_equal(c.maximum_word_ms, 5000);
	assert_int_equal(c.silence_threshold_dbfs, -42);
	assert_int_equal(c.beep_min_ms, 150);
	assert_int_equal(c.beep_min_hz, 400);
	assert_int_equal(c.beep_max_hz, 2100);
	struct media_amd *a = NULL;
	struct media_amd_config bad = c;
	bad.greeting_ms = 0;
	assert_int_equal(media_amd_create(&a, &bad), -EINVAL);
	bad = c;
	bad.beep_min_hz = 2500;
	assert_int_equal(media_amd_create(&a, &bad), -EINVAL);
	bad.beep_min_ms = 0; /* beep detector off: its band no longer matters */
	assert_int_equal(media_amd_create(&a, &bad), 0);
	media_amd_destroy(a);
	assert_int_equal(media_amd_create(&a, NULL), 0);
	media_amd_destroy(a);
	media_amd_destroy(NULL);
}

/* Nobody speaks: a machine (or a dead line) after initial_silence_ms, whether the line
 * is digitally silent or carries low noise. */
static void test_amd_silence_is_machine(void **state)
{
	(void)state;
	static int16_t pcm[6 * RATE];
	static const double floors[] = {-200, -65, -50};
	for (unsigned i = 0; i < 3; i++) {
		unsigned n = 0;
		add(pcm, &n, 6000, floors[i], 0, 0);
		struct media_amd_result r;
		assert_true(run(NULL, pcm, n, FRAME, &r));
		assert_int_equal(r.verdict, MEDIA_AMD_MACHINE);
		assert_string_equal(r.reason, "initial silence");
		assert_int_equal(r.ms, 2500);
	}
}

/* A beep is a machine at once: within 300 ms of its start, after silence or noise, at
 * 1000 and 1400 Hz and at the band edges, even 10 dB over a noisy line. */
static void test_amd_beep_is_machine(void **state)
{
	(void)state;
	static int16_t pcm[4 * RATE];
	static const struct {
		double hz, tone_db, noise_db;
	} beeps[] = {
	    {1000, -12, -200}, {1400, -12, -55}, {1000, -30, -45},
	    {420, -15, -60},   {2080, -15, -60}, {1400, -20, -35},
	};
	for (unsigned i = 0; i < sizeof(beeps) / sizeof(beeps[0]); i++) {
		unsigned n = 0;
		add(pcm, &n, 1000, beeps[i].noise_db, 0, 0);
		add(pcm, &n, 500, beeps[i].noise_db, beeps[i].hz, beeps[i].tone_db);
		add(pcm, &n, 2000, beeps[i].noise_db, 0, 0);
		struct media_amd_result r;
		assert_true(run(NULL, pcm, n, FRAME, &r));
		print_message("beep %.0f Hz %.0f dBFS, noise %.0f dBFS: %s \"%s\" at %u ms\n",
		              beeps[i].hz, beeps[i].tone_db, beeps[i].noise_db,
		              verdict_name(r.verdict), r.reason, r.ms);
		assert_int_equal(r.verdict, MEDIA_AMD_MACHINE);
		assert_string_equal(r.reason, "beep");
		assert_in_range(r.ms, 1000 + 150, 1000 + 300);
	}
}

/* Not beeps: a tone outside the band, two tones at once (a DTMF key), a beep shorter
 * than beep_min_ms, and a tone sliding in frequency. */
static void test_amd_not_a_beep(void **state)
{
	(void)state;
	static int16_t pcm[3 * RATE];
	struct media_amd_result r;
	unsigned n;

	n = 0;
	add(pcm, &n, 500, -60, 0, 0);
	add(pcm, &n, 600, -60, 3000, -12);
	assert_true(run(NULL, pcm, n, FRAME, &r) == 0 || strcmp(r.reason, "beep") != 0);

	n = 0;
	add(pcm, &n, 500, -60, 0, 0);
	unsigned start = n;
	add(pcm, &n, 600, -60, 697, -15);
	for (unsigned i = start; i < n; i++)
		pcm[i] = clip(pcm[i] + dbfs(-15) * sin(2 * M_PI * 1209 * (i - start) / RATE));
	assert_true(run(NULL, pcm, n, FRAME, &r) == 0 || strcmp(r.reason, "beep") != 0);

	n = 0;
	add(pcm, &n, 500, -60, 0, 0);
	add(pcm, &n, 120, -60, 1000, -12);
	add(pcm, &n, 400, -60, 0, 0);
	assert_true(run(NULL, pcm, n, FRAME, &r) == 0 || strcmp(r.reason, "beep") != 0);

	/* 600 -> 1800 Hz in 600 ms (a chirp: 40 Hz per frame). */
	n = 0;
	add(pcm, &n, 500, -60, 0, 0);
	double phase = 0;
	for (unsigned i = 0; i < 600 * RATE / 1000; i++, n++) {
		double hz = 600 + 1200.0 * i / (600 * RATE / 1000);
		phase += 2 * M_PI * hz / RATE;
		pcm[n] = clip(dbfs(-12) * sin(phase) + noise(dbfs(-60)));
	}
	assert_true(run(NULL, pcm, n, FRAME, &r) == 0 || strcmp(r.reason, "beep") != 0);
}

/* Voice-like bursts that never leave a long enough silence nor add up to a verdict:
 * UNSURE at total_analysis_ms. */
static void test_amd_unsure_after_total_analysis(void **state)
{
	(void)state;
	static int16_t pcm[8 * RATE];
	struct media_amd_config c;
	media_amd_config_default(&c);
	c.maximum_words = 100;
	c.greeting_ms = 10000;
	c.beep_min_ms = 0;
	unsigned n = 0;
	add(pcm, &n, 300, -60, 0, 0);
	while (n < 7 * RATE) {
		add(pcm, &n, 200, -20, 0, 0);
		add(pcm, &n, 500, -60, 0, 0);
	}
	struct media_amd_result r;
	assert_true(run(&c, pcm, n, FRAME, &r));
	assert_int_equal(r.verdict, MEDIA_AMD_UNSURE);
	assert_string_equal(r.reason, "too long");
	assert_int_equal(r.ms, 5000);
}

/* The verdict and its time do not depend on how the caller cuts the audio. */
static void test_amd_chunking_independent(void **state)
{
	(void)state;
	static int16_t pcm[4 * RATE];
	static const unsigned chunks[] = {1, 7, 159, 161, 333, 4 * RATE};
	unsigned n = 0;
	add(pcm, &n, 730, -55, 0, 0);
	add(pcm, &n, 400, -55, 1400, -15);
	add(pcm, &n, 1000, -55, 0, 0);
	struct media_amd_result ref, r;
	assert_true(run(NULL, pcm, n, FRAME, &ref));
	assert_string_equal(ref.reason, "beep");
	for (unsigned i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		assert_true(run(NULL, pcm, n, chunks[i], &r));
		assert_int_equal(r.verdict, ref.verdict);
		assert_int_equal(r.ms, ref.ms);
		assert_ptr_equal(r.reason, ref.reason);
	}
}

static void test_amd_no_alloc_per_frame(void **state)
{
	(void)state;
	/* Nothing may end the analysis: every limit out of reach. */
	struct media_amd_config c;
	media_amd_config_default(&c);
	c.initial_silence_ms = c.greeting_ms = c.after_greeting_silence_ms = UINT_MAX;
	c.total_analysis_ms = c.maximum_words = c.maximum_word_ms = UINT_MAX;
	c.beep_min_ms = UINT_MAX;
	struct media_amd *a = NULL;
	assert_int_equal(media_amd_create(&a, &c), 0);
	unsigned long allocs = alloc_count();
	uint64_t mem_allocs = mem_total_allocs();
	for (unsigned f = 0; f < 10000; f++) {
		int16_t pcm[FRAME];
		unsigned n = 0;
		/* Cycle through silence, noise bursts and a beep. */
		unsigned phase = f % 100;
		add(pcm, &n, 20, phase < 40 ? -60 : -25, phase >= 80 ? 1000 : 0, -12);
		struct media_amd_result r;
		assert_int_equal(media_amd_feed(a, pcm, FRAME, &r), 0);
	}
	assert_int_equal(alloc_count(), allocs);
	assert_int_equal(mem_total_allocs(), mem_allocs);
	media_amd_destroy(a);
}

/* end_wait_ms: after a machine verdict during speech, the end of the greeting is
 * reported (2) on the silence after it, or on a beep; without it, only the verdict. */
static void test_amd_greeting_end(void **state)
{
	(void)state;
	static int16_t pcm[12 * RATE];
	for (int beep = 0; beep < 2; beep++) {
		unsigned n = 0;
		add(pcm, &n, 300, -70, 0, 0);
		for (unsigned w = 0; w < 8; w++) { /* words: 400 ms of speech-like noise */
			add(pcm, &n, 400, -20, 0, 0);
			add(pcm, &n, 100, -70, 0, 0);
		}
		if (beep)
			add(pcm, &n, 400, -70, 1000, -12);
		add(pcm, &n, 2000, -70, 0, 0);
		struct media_amd_config c;
		media_amd_config_default(&c);
		c.end_wait_ms = 20000;
		struct media_amd *a = NULL;
		assert_int_equal(media_amd_create(&a, &c), 0);
		int got[3] = {0, 0, 0};
		struct media_amd_result first = {0}, end = {0};
		for (unsigned pos = 0; pos < n; pos += FRAME) {
			struct media_amd_result x;
			int rc = media_amd_feed(a, pcm + pos, FRAME, &x);
			assert_in_range(rc, 0, 2);
			got[rc]++;
			if (rc == 1)
				first = x;
			else if (rc == 2)
				end = x;
		}
		media_amd_destroy(a);
		assert_int_equal(got[1], 1);
		assert_int_equal(got[2], 1);
		assert_int_equal(first.verdict, MEDIA_AMD_MACHINE);
		assert_string_not_equal(first.reason, "beep");
		assert_string_equal(end.reason, beep ? "beep" : "silence");
		assert_true(end.ms > first.ms);
		/* Off (the default): the verdict alone. */
		struct media_amd_result r;
		assert_int_equal(run(NULL, pcm, n, FRAME, &r), 1);
		assert_int_equal(r.verdict, MEDIA_AMD_MACHINE);
	}
}

/* ---- the generated set ---- */

/* tests/media/gen-amd-set from the source tree: the working directory (tests/run-all
 * runs from the top) or two levels above this binary (BUILD/tests/test_amd). */
static int find_generator(char *path, size_t cap)
{
	const char *rel = "tests/media/gen-amd-set";
	if (access(rel, X_OK) == 0) {
		snprintf(path, cap, "%s", rel);
		return 0;
	}
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len <= 0)
		return -1;
	exe[len] = '\0';
	for (int up = 0; up < 3; up++) {
		char *slash = strrchr(exe, '/');
		if (!slash)
			return -1;
		*slash = '\0';
	}
	int len2 = snprintf(path, cap, "%s/%s", exe, rel);
	if (len2 < 0 || (size_t)len2 >= cap)
		return -1;
	return access(path, X_OK);
}

struct set_case {
	char name[32];
	int human;
	char text[160];
	int16_t *pcm;
	unsigned n;
};

#define MAX_CASES 64

static struct set_case cases[MAX_CASES];
static unsigned n_cases;
static char set_dir[] = "/tmp/vacs-amd-XXXXXX";

/* Generates the set once for the whole group and loads it. The tools are declared
 * dependencies of VACS: their absence fails the group, it is not a reason to skip. */
static int set_load(void **state)
{
	(void)state;
	char gen[PATH_MAX], cmd[PATH_MAX + 64];
	if (system("command -v espeak-ng >/dev/null 2>&1 && command -v sox >/dev/null 2>&1")) {
		fprintf(stderr, "test_amd: espeak-ng and sox are required (declared dependencies; "
		                "apt-get install espeak-ng sox)\n");
		return -1;
	}
	if (find_generator(gen, sizeof(gen))) {
		fprintf(stderr, "test_amd: tests/media/gen-amd-set not found (run from the "
		                "source tree)\n");
		return -1;
	}
	if (!mkdtemp(set_dir))
		return -1;
	int cmd_len = snprintf(cmd, sizeof(cmd), "'%s' '%s'", gen, set_dir);
	if (cmd_len < 0 || (size_t)cmd_len >= sizeof(cmd) || system(cmd)) {
		fprintf(stderr, "test_amd: %s failed\n", cmd);
		return -1;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/index.txt", set_dir);
	FILE *ix = fopen(path, "r");
	if (!ix)
		return -1;
	char line[512];
	while (fgets(line, sizeof(line), ix) && n_cases < MAX_CASES) {
		struct set_case *c = &cases[n_cases];
		char cls[16];
		int used = 0;
		if (sscanf(line, "%31s %15s %*s %*s %n", c->name, cls, &used) < 2)
			continue;
		snprintf(c->text, sizeof(c->text), "%s", line + used);
		c->text[strcspn(c->text, "\n")] = '\0';
		c->human = strcmp(cls, "human") == 0;
		snprintf(path, sizeof(path), "%s/%s", set_dir, c->name);
		FILE *f = fopen(path, "rb");
		if (!f)
			break;
		fseek(f, 0, SEEK_END);
		long len = ftell(f);
		fseek(f, 0, SEEK_SET);
		c->pcm = malloc((size_t)len);
		c->n = c->pcm ? (unsigned)(fread(c->pcm, 1, (size_t)len, f) / 2) : 0;
		fclose(f);
		if (!c->n)
			break;
		unlink(path);
		n_cases++;
	}
	fclose(ix);
	unlink(path);
	snprintf(path, sizeof(path), "%s/index.txt", set_dir);
	unlink(path);
	rmdir(set_dir);
	return n_cases >= 40 ? 0 : -1;
}

static int set_free(void **state)
{
	(void)state;
	for (unsigned i = 0; i < n_cases; i++)
		free(cases[i].pcm);
	return 0;
}

/* Runs every case with its audio scaled by gain_db and white noise at noise_db dBFS
 * added (noise_db < -150: the file as generated). Prints one line per case; returns the
 * correct counts per class, the UNSURE count and the slowest correct human verdict. */
static void run_set(double gain_db, double noise_db, unsigned ok[2], unsigned total[2],
                    unsigned *unsure, unsigned *slowest_human_ms)
{
	static int16_t pcm[30 * RATE];
	ok[0] = ok[1] = total[0] = total[1] = 0;
	*unsure = *slowest_human_ms = 0;
	lcg_state = 7;
	for (unsigned i = 0; i < n_cases; i++) {
		const struct set_case *c = &cases[i];
		unsigned n = c->n < 30 * RATE ? c->n : 30 * RATE;
		double g = pow(10, gain_db / 20);
		for (unsigned j = 0; j < n; j++)
			pcm[j] =
			    clip(c->pcm[j] * g + (noise_db > -150 ? noise(dbfs(noise_db)) : 0));
		struct media_amd_result r = {.verdict = MEDIA_AMD_UNSURE, .reason = "no verdict"};
		run(NULL, pcm, n, FRAME, &r);
		int good = r.verdict == (c->human ? MEDIA_AMD_HUMAN : MEDIA_AMD_MACHINE);
		total[c->human]++;
		ok[c->human] += (unsigned)good;
		*unsure += r.verdict == MEDIA_AMD_UNSURE;
		if (good && c->human && r.ms > *slowest_human_ms)
			*slowest_human_ms = r.ms;
		print_message("  %-15s %-7s -> %-7s %5u ms  %-35s %s  %s\n", c->name,
		              c->human ? "human" : "machine", verdict_name(r.verdict), r.ms,
		              r.reason, good ? "  " : "!!", c->text);
	}
}

/* Accuracy floors. Measured with espeak-ng 1.51 / SoX 14.4.2: 24/24 humans and 24/24
 * machines as generated, the slowest human verdict 2.7 s; on the degraded line below
 * also 24/24 each. A further 24 held-out greetings (other phrases and voices, not used
 * for tuning) scored 11/12 humans ("Hello, Maria speaking." at a slow rate is 1.5 s of
 * speech: a long greeting) and 12/12 machines. The floors leave room for two cases per
 * class to flip with other espeak-ng or SoX versions; a real regression (a broken
 * threshold or beep detector) costs far more than that. */
#define MIN_ACCURACY_PCT 90u
#define MAX_HUMAN_MS     3000u

static void check_set(const char *what, double gain_db, double noise_db)
{
	unsigned ok[2], total[2], unsure, slowest;
	print_message("%s:\n", what);
	run_set(gain_db, noise_db, ok, total, &unsure, &slowest);
	unsigned pct_h = 100 * ok[1] / total[1], pct_m = 100 * ok[0] / total[0];
	print_message("%s: human %u/%u (%u%%), machine %u/%u (%u%%), overall %u/%u (%u%%), "
	              "UNSURE %u, slowest human verdict %u ms\n",
	              what, ok[1], total[1], pct_h, ok[0], total[0], pct_m, ok[0] + ok[1],
	              total[0] + total[1], 100 * (ok[0] + ok[1]) / (total[0] + total[1]), unsure,
	              slowest);
	assert_true(total[0] >= 20 && total[1] >= 20);
	assert_true(pct_h >= MIN_ACCURACY_PCT);
	assert_true(pct_m >= MIN_ACCURACY_PCT);
	assert_true(slowest < MAX_HUMAN_MS);
}

static void test_amd_generated_set(void **state)
{
	(void)state;
	check_set("generated set", 0, -200);
}

/* The same greetings on a worse line: speech 10 dB quieter (about -25 dBFS active
 * level, a normal telephone level) and white noise at -45 dBFS on top of the set's own. */
static void test_amd_generated_set_noisy_line(void **state)
{
	(void)state;
	check_set("quiet, noisy line", -10, -45);
}

#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

int main(void)
{
	const struct CMUnitTest synthetic[] = {
	    T(test_amd_config),
	    T(test_amd_silence_is_machine),
	    T(test_amd_beep_is_machine),
	    T(test_amd_not_a_beep),
	    T(test_amd_unsure_after_total_analysis),
	    T(test_amd_chunking_independent),
	    T(test_amd_no_alloc_per_frame),
	    T(test_amd_greeting_end),
	};
	const struct CMUnitTest set[] = {
	    T(test_amd_generated_set),
	    T(test_amd_generated_set_noisy_line),
	};
	int failed = cmocka_run_group_tests_name("amd", synthetic, NULL, NULL);
	failed += cmocka_run_group_tests_name("amd_set", set, set_load, set_free);
	return failed;
}
