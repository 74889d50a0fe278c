/* Unit tests of control/auth.c: password hashes, sessions and their expiry, CSRF tokens, the
 * failed-login limiter and the cookie parser. */
#include "control/auth.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_auth_password(void **state)
{
	(void)state;
	char h[CTL_PW_HASH_MAX];
	assert_int_equal(ctl_pw_hash("short", h), -EINVAL);
	assert_int_equal(ctl_pw_hash("correct horse battery", h), 0);
	assert_non_null(strstr(h, "$argon2id$"));
	assert_int_equal(ctl_pw_verify(h, "correct horse battery"), 0);
	assert_int_equal(ctl_pw_verify(h, "correct horse batterY"), -EACCES);
	assert_int_equal(ctl_pw_verify("not a hash", "correct horse battery"), -EACCES);
	assert_int_equal(ctl_pw_verify(NULL, "x"), -EACCES);
}

static void test_auth_email(void **state)
{
	(void)state;
	assert_int_equal(ctl_email_valid("a@b.c"), 0);
	assert_int_not_equal(ctl_email_valid("nope"), 0);
	assert_int_not_equal(ctl_email_valid("a@@b"), 0);
	assert_int_not_equal(ctl_email_valid("a b@c.d"), 0);
	assert_int_not_equal(ctl_email_valid("@b.c"), 0);
}

static void test_auth_session_expiry(void **state)
{
	(void)state;
	char tok[CTL_TOKEN_HEX + 1], csrf[CTL_TOKEN_HEX + 1];
	struct ctl_session_who who;
	uint64_t t0 = 1000000;
	ctl_auth_reset();
	assert_int_equal(ctl_session_open(7, "a@b.c", 1, t0, tok, csrf), 0);
	assert_int_equal(strlen(tok), CTL_TOKEN_HEX);
	assert_string_not_equal(tok, csrf);
	assert_int_equal(ctl_session_find(tok, t0 + 1, &who), 0);
	assert_int_equal(who.user_id, 7);
	assert_int_equal(who.admin, 1);
	assert_string_equal(who.email, "a@b.c");
	/* used within the idle time: alive, up to the absolute limit */
	uint64_t t = t0;
	while (t + CTL_SESSION_IDLE_US / 2 < t0 + CTL_SESSION_MAX_US) {
		t += CTL_SESSION_IDLE_US / 2;
		assert_int_equal(ctl_session_find(tok, t, &who), 0);
	}
	assert_int_equal(ctl_session_find(tok, t0 + CTL_SESSION_MAX_US, &who), -ENOENT);
	/* idle too long */
	assert_int_equal(ctl_session_open(8, "b@b.c", 0, t0, tok, csrf), 0);
	assert_int_equal(ctl_session_find(tok, t0 + CTL_SESSION_IDLE_US, &who), -ENOENT);
	/* wrong, short, NULL tokens */
	assert_int_equal(ctl_session_open(9, "c@b.c", 0, t0, tok, csrf), 0);
	char bad[CTL_TOKEN_HEX + 1];
	memcpy(bad, tok, sizeof(bad));
	bad[0] = bad[0] == 'a' ? 'b' : 'a';
	assert_int_equal(ctl_session_find(bad, t0, &who), -ENOENT);
	assert_int_equal(ctl_session_find("abc", t0, &who), -ENOENT);
	assert_int_equal(ctl_session_find(NULL, t0, &who), -ENOENT);
	ctl_session_close(tok);
	assert_int_equal(ctl_session_find(tok, t0, &who), -ENOENT);
	assert_int_equal(ctl_session_open(9, "c@b.c", 0, t0, tok, csrf), 0);
	ctl_session_close_user(9);
	assert_int_equal(ctl_session_find(tok, t0, &who), -ENOENT);
}

static void test_auth_session_full(void **state)
{
	(void)state;
	char tok[CTL_TOKEN_HEX + 1], csrf[CTL_TOKEN_HEX + 1];
	ctl_auth_reset();
	for (int i = 0; i < CTL_SESSIONS_MAX; i++)
		assert_int_equal(ctl_session_open(i, "x@y.z", 0, 1, tok, csrf), 0);
	assert_int_equal(ctl_session_open(1, "x@y.z", 0, 2, tok, csrf), -ENOSPC);
	/* expired ones make room */
	assert_int_equal(ctl_session_open(1, "x@y.z", 0, 2 + CTL_SESSION_IDLE_US, tok, csrf), 0);
	ctl_auth_reset();
}

static void test_auth_csrf(void **state)
{
	(void)state;
	char tok[CTL_TOKEN_HEX + 1], csrf[CTL_TOKEN_HEX + 1];
	struct ctl_session_who who;
	ctl_auth_reset();
	assert_int_equal(ctl_session_open(1, "a@b.c", 0, 1, tok, csrf), 0);
	assert_int_equal(ctl_session_find(tok, 2, &who), 0);
	assert_true(ctl_csrf_ok(&who, csrf));
	assert_false(ctl_csrf_ok(&who, tok));
	assert_false(ctl_csrf_ok(&who, NULL));
	assert_false(ctl_csrf_ok(&who, ""));
	assert_false(ctl_csrf_ok(NULL, csrf));
	ctl_auth_reset();
}

static void test_auth_login_limit(void **state)
{
	(void)state;
	unsigned retry = 0;
	ctl_auth_reset();
	for (int i = 0; i < CTL_LOGIN_MAX_FAILS; i++) {
		assert_int_equal(ctl_login_allowed("10.0.0.1", 100, &retry), 0);
		ctl_login_failed("10.0.0.1", 100);
	}
	assert_int_equal(ctl_login_allowed("10.0.0.1", 200, &retry), -EBUSY);
	assert_true(retry > 0 && retry <= CTL_LOGIN_WINDOW_US / 1000000 + 1);
	assert_int_equal(ctl_login_allowed("10.0.0.2", 200, &retry), 0); /* per address */
	assert_int_equal(ctl_login_allowed("10.0.0.1", 100 + CTL_LOGIN_WINDOW_US, &retry), 0);
	ctl_login_failed("10.0.0.3", 100);
	ctl_login_succeeded("10.0.0.3");
	for (int i = 0; i < CTL_LOGIN_MAX_FAILS - 1; i++)
		ctl_login_failed("10.0.0.3", 100);
	assert_int_equal(ctl_login_allowed("10.0.0.3", 100, &retry), 0);
	ctl_auth_reset();
}

static void test_auth_cookie(void **state)
{
	(void)state;
	char b[80];
	assert_string_equal(
	    ctl_cookie_get("a=1; vacs_session=xyz; b=2", "vacs_session", b, sizeof(b)), "xyz");
	assert_string_equal(ctl_cookie_get("vacs_session=q", "vacs_session", b, sizeof(b)), "q");
	assert_null(ctl_cookie_get("xvacs_session=q", "vacs_session", b, sizeof(b)));
	assert_null(ctl_cookie_get("a=1", "vacs_session", b, sizeof(b)));
	assert_null(ctl_cookie_get("vacs_session=0123456789", "vacs_session", b, 5));
	assert_null(ctl_cookie_get("", "vacs_session", b, sizeof(b)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_auth_password),       cmocka_unit_test(test_auth_email),
	    cmocka_unit_test(test_auth_session_expiry), cmocka_unit_test(test_auth_session_full),
	    cmocka_unit_test(test_auth_csrf),           cmocka_unit_test(test_auth_login_limit),
	    cmocka_unit_test(test_auth_cookie),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
