/* test_sync_apply.c - unit tests for sync/syncapply.c, the replica side
 * of the sync protocol, fed decoded frames directly (no sockets):
 * authentication, HELLO fencing, APPLY MAILBOX idempotency and optimistic
 * checks, conflicts refused without a change, blob verification, upload
 * groups rolled back with a refused APPLY, deletion by tombstone only,
 * PROMOTE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/sasl.h"
#include "lib/str.h"
#include "store/store.h"
#include "sync/syncapply.h"
#include "sync/syncproto.h"

static char root[256];
static struct store *st;
static struct syncapply *app;
static struct buf out;

static const char UID_A[] = "0123456789abcdef0123456789abcdef";

static int
setup(void **state)
{
	struct err err;
	struct syncapply_opts o;

	(void)state;
	str_lcpy(root, "/tmp/castor-syncapply-XXXXXX", sizeof(root));
	if (mkdtemp(root) == NULL)
		return -1;
	if (store_create(root, "replica", &err) < 0)
		return -1;
	st = store_open(root, NULL, &err);
	if (st == NULL || store_sync_auth_set(st, "sync", "syncpw", &err) < 0)
		return -1;
	memset(&o, 0, sizeof(o));
	o.servername = "replica.test";
	o.auth_allowed = true;
	o.compress_allowed = true;
	app = syncapply_new(st, &o);
	buf_init(&out);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	syncapply_free(&app);
	store_close(&st);
	buf_free(&out);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

/* Feed one command line (CRLF added; literals as {n+}), return the
 * answers (valid until the next call). */
static const char *
cmd_ex(const char *line, size_t len, enum syncapply_action *act_r)
{
	struct syncproto_value *f;
	struct err err;
	struct buf in = BUF_INIT;
	enum syncapply_action act;

	buf_append(&in, line, len);
	buf_puts(&in, "\r\n");
	f = syncproto_decode_one(in.data, in.len, NULL, &err);
	if (f == NULL)
		fail_msg("decode %s: %s", line, err.msg);
	buf_reset(&out);
	act = syncapply_frame(app, f, &out);
	syncapply_sync(app, &out);
	syncproto_value_free(&f);
	buf_free(&in);
	if (act_r != NULL)
		*act_r = act;
	return buf_cstr(&out);
}

static const char *
cmd(const char *line)
{
	return cmd_ex(line, strlen(line), NULL);
}

static void
login(uint64_t epoch)
{
	struct buf b = BUF_INIT;
	char line[256];

	buf_puts(&b, "a1 AUTHENTICATE PLAIN ");
	sasl_plain_encode(&b, NULL, "sync", "syncpw");
	assert_true(str_has_prefix(cmd(buf_cstr(&b)), "a1 OK"));
	buf_free(&b);
	snprintf(line, sizeof(line), "a2 HELLO (VERSION 1 ROLE master EPOCH %llu SERVERID m)",
		(unsigned long long)epoch);
	assert_non_null(strstr(cmd(line), "a2 OK"));
}

/* UPLOAD a body; returns its guid in g. */
static const char *
upload(const char *tag, const char *body, char *g)
{
	struct buf b = BUF_INIT;
	static char res[512];

	store_guid(body, strlen(body), g);
	buf_printf(&b, "%s UPLOAD alice %s {%zu+}\r\n%s", tag, g, strlen(body), body);
	str_lcpy(res, cmd_ex(b.data, b.len, NULL), sizeof(res));
	buf_free(&b);
	return res;
}

static void
mailbox_state(const char *id, struct store_mailbox *mb)
{
	struct store_user *u;
	struct err err;

	u = store_user_open(st, "alice", &err);
	assert_non_null(u);
	assert_int_equal(store_mailbox_get_id(u, id, true, mb, &err), 0);
	store_user_close(&u);
}

static void
test_auth_required(void **state)
{
	enum syncapply_action act;
	const char *r;

	(void)state;
	syncapply_greeting(app, &out);
	assert_true(str_has_prefix(buf_cstr(&out), "* OK [CASTOR-SYNC (VERSIONS (1)"));
	r = cmd_ex("x1 GET USERS", 12, &act);
	assert_true(str_has_prefix(r, "x1 BAD [PERM]"));
	assert_non_null(strstr(r, "* BYE"));
	assert_int_equal(act, SYNCAPPLY_CLOSE);
}

static void
test_auth_failures(void **state)
{
	struct buf b = BUF_INIT;
	enum syncapply_action act = SYNCAPPLY_CONTINUE;

	(void)state;
	buf_puts(&b, "a AUTHENTICATE PLAIN ");
	sasl_plain_encode(&b, NULL, "sync", "wrong");
	assert_true(str_has_prefix(cmd(buf_cstr(&b)), "a NO [PERM]"));
	buf_reset(&b);
	/* a mail user with the right password is not the sync identity */
	assert_int_equal(store_user_add(st, "bob", "bobpw", NULL), 0);
	buf_puts(&b, "a AUTHENTICATE PLAIN ");
	sasl_plain_encode(&b, NULL, "bob", "bobpw");
	assert_true(str_has_prefix(cmd(buf_cstr(&b)), "a NO [PERM]"));
	buf_reset(&b);
	buf_puts(&b, "a AUTHENTICATE PLAIN ");
	sasl_plain_encode(&b, NULL, "sync", "nope");
	assert_non_null(strstr(cmd_ex(b.data, b.len, &act), "* BYE"));
	assert_int_equal(act, SYNCAPPLY_CLOSE);
	buf_free(&b);
}

static void
test_hello_fencing(void **state)
{
	const char *role;
	uint64_t epoch;
	struct buf b = BUF_INIT;

	(void)state;
	assert_int_equal(store_server_set(st, "replica", 5, NULL), 0);
	buf_puts(&b, "a1 AUTHENTICATE PLAIN ");
	sasl_plain_encode(&b, NULL, "sync", "syncpw");
	assert_true(str_has_prefix(cmd(buf_cstr(&b)), "a1 OK"));
	buf_free(&b);
	/* an old master */
	assert_true(str_has_prefix(cmd("h1 HELLO (VERSION 1 ROLE master EPOCH 4)"),
		"h1 NO [FENCED epoch 5]"));
	assert_true(str_has_prefix(cmd("g1 GET USERS"), "g1 NO [PERM]"));
	/* a newer one raises our epoch */
	assert_non_null(strstr(cmd("h2 HELLO (VERSION 1 ROLE master EPOCH 6)"), "h2 OK"));
	assert_int_equal(store_server_get(st, &role, &epoch, NULL), 0);
	assert_string_equal(role, "replica");
	assert_int_equal(epoch, 6);
	/* a promotion elsewhere fences this session at its next write */
	assert_int_equal(store_server_set(st, "replica", 7, NULL), 0);
	assert_true(str_has_prefix(cmd("u1 APPLY USER alice (NAME alice HIGHESTMODSEQ 0)"),
		"u1 NO [FENCED epoch 7]"));
	/* a master takes no changes at all */
	assert_int_equal(store_server_set(st, "master", 7, NULL), 0);
	assert_true(str_has_prefix(cmd("u2 APPLY USER alice (NAME alice HIGHESTMODSEQ 0)"),
		"u2 NO [FENCED role]"));
	assert_int_equal(store_user_exists(st, "alice", NULL), 0);
	/* but it answers GETs */
	assert_non_null(strstr(cmd("g2 GET USERS"), "g2 OK"));
}

static void
test_apply_mailbox(void **state)
{
	char g1[41], g2[41], line[1024];
	struct store_mailbox mb, mb2;
	struct store_record rec;
	uint32_t crc;
	const char *r;

	(void)state;
	login(1);
	assert_true(str_has_prefix(cmd("u APPLY USER alice (NAME alice HIGHESTMODSEQ 0)"), "u OK"));
	assert_true(str_has_prefix(upload("p1", "Subject: one\r\n\r\nbody one\r\n", g1), "p1 OK"));
	/* a body that is not what its guid says */
	{
		struct buf b = BUF_INIT;
		buf_printf(&b, "p2 UPLOAD alice %s {4+}\r\nevil", g1);
		assert_true(str_has_prefix(cmd_ex(b.data, b.len, NULL), "p2 NO [CORRUPT"));
		buf_free(&b);
	}
	/* the checksum the master expects */
	memset(&rec, 0, sizeof(rec));
	rec.uid = 1;
	rec.modseq = 3;
	str_lcpy(rec.guid, g1, sizeof(rec.guid));
	rec.sysflags = STORE_FLAG_SEEN;
	rec.keywords = "";
	crc = store_record_crc(&rec);
	snprintf(line, sizeof(line), "m1 APPLY MAILBOX alice (UNIQUEID %s NAME Work UIDVALIDITY 77"
		" UIDNEXT 2 HIGHESTMODSEQ 3 SINCE-MODSEQ 0 SINCE-CHECKSUM NIL CHECKSUM %u RECORDS"
		" ((UID 1 MODSEQ 3 GUID %s SIZE 26 INTERNALDATE 1700000000 FLAGS (\\Seen))))",
		UID_A, crc, g1);
	r = cmd(line);
	assert_true(str_has_prefix(r, "m1 OK [MAILBOX HIGHESTMODSEQ 3 UIDNEXT 2 CHECKSUM"));
	mailbox_state(UID_A, &mb);
	assert_int_equal(mb.sync_crc, crc);
	assert_int_equal(mb.highestmodseq, 3);
	/* the same APPLY again changes nothing */
	r = cmd(line);
	assert_true(str_has_prefix(r, "m1 NO [CONFLICT exists]"));
	mailbox_state(UID_A, &mb2);
	assert_memory_equal(&mb, &mb2, sizeof(mb));
	/* an optimistic check against a stale state is refused, no change */
	snprintf(line, sizeof(line), "m2 APPLY MAILBOX alice (UNIQUEID %s NAME Work UIDVALIDITY 77"
		" UIDNEXT 2 HIGHESTMODSEQ 4 SINCE-MODSEQ 2 SINCE-CHECKSUM %u RECORDS"
		" ((UID 1 MODSEQ 4 GUID %s SIZE 26 INTERNALDATE 1700000000 FLAGS ())))", UID_A, crc, g1);
	assert_true(str_has_prefix(cmd(line), "m2 NO [CONFLICT checksum"));
	mailbox_state(UID_A, &mb2);
	assert_memory_equal(&mb, &mb2, sizeof(mb));
	/* a different message under uid 1: refused, nothing overwritten */
	assert_true(str_has_prefix(upload("p3", "Subject: two\r\n\r\nbody two\r\n", g2), "p3 OK"));
	snprintf(line, sizeof(line), "m3 APPLY MAILBOX alice (UNIQUEID %s NAME Work UIDVALIDITY 77"
		" UIDNEXT 2 HIGHESTMODSEQ 5 SINCE-MODSEQ 3 SINCE-CHECKSUM %u RECORDS"
		" ((UID 1 MODSEQ 5 GUID %s SIZE 26 INTERNALDATE 1700000000 FLAGS ())))", UID_A, crc, g2);
	assert_true(str_has_prefix(cmd(line), "m3 NO [CONFLICT guid 1]"));
	mailbox_state(UID_A, &mb2);
	assert_memory_equal(&mb, &mb2, sizeof(mb));
	/* a proper increment: flags change, a new message */
	rec.modseq = 5;
	rec.sysflags = STORE_FLAG_SEEN | STORE_FLAG_FLAGGED;
	rec.keywords = "foo";
	{
		struct store_record r2 = rec;
		r2.uid = 2;
		r2.modseq = 6;
		str_lcpy(r2.guid, g2, sizeof(r2.guid));
		r2.sysflags = 0;
		r2.keywords = "";
		crc = store_record_crc(&rec) ^ store_record_crc(&r2);
	}
	snprintf(line, sizeof(line), "m4 APPLY MAILBOX alice (UNIQUEID %s NAME Work UIDVALIDITY 77"
		" UIDNEXT 3 HIGHESTMODSEQ 6 SINCE-MODSEQ 3 SINCE-CHECKSUM %u CHECKSUM %u RECORDS"
		" ((UID 1 MODSEQ 5 GUID %s SIZE 26 INTERNALDATE 1700000000 FLAGS (\\Seen \\Flagged foo))"
		" (UID 2 MODSEQ 6 GUID %s SIZE 26 INTERNALDATE 1700000001 FLAGS ())))",
		UID_A, mb.sync_crc, crc, g1, g2);
	r = cmd(line);
	assert_true(str_has_prefix(r, "m4 OK [MAILBOX HIGHESTMODSEQ 6 UIDNEXT 3"));
	mailbox_state(UID_A, &mb2);
	assert_int_equal(mb2.sync_crc, crc);
	/* replayed: refused by the optimistic check, state unchanged */
	assert_true(str_has_prefix(cmd(line), "m4 NO [CONFLICT checksum"));
	mailbox_state(UID_A, &mb);
	assert_memory_equal(&mb, &mb2, sizeof(mb));
	/* GET RECORDS shows both */
	snprintf(line, sizeof(line), "g GET RECORDS alice %s 0", UID_A);
	r = cmd(line);
	assert_non_null(strstr(r, "* RECORD (UID 1 MODSEQ 5"));
	assert_non_null(strstr(r, "* RECORD (UID 2 MODSEQ 6"));
	assert_non_null(strstr(r, "g OK [MAILBOX HIGHESTMODSEQ 6 UIDNEXT 3"));
	/* RESERVE: what is missing */
	snprintf(line, sizeof(line), "r RESERVE alice (%s 1111111111111111111111111111111111111111)", g1);
	r = cmd(line);
	assert_true(str_has_prefix(r, "* MISSING (1111111111111111111111111111111111111111)"));
}

static void
test_group_rolled_back(void **state)
{
	char g1[41], g2[41], line[1024];
	struct buf b = BUF_INIT;
	struct store_user *u;
	const char *r;

	(void)state;
	login(1);
	assert_true(str_has_prefix(cmd("u APPLY USER alice (NAME alice HIGHESTMODSEQ 0)"), "u OK"));
	store_guid("a", 1, g1);
	store_guid("b", 1, g2);
	/* two UPLOADs and an APPLY that is refused, pipelined in one go */
	buf_printf(&b, "p1 UPLOAD alice %s {1+}\r\na\r\n", g1);
	buf_printf(&b, "p2 UPLOAD alice %s {1+}\r\nb\r\n", g2);
	snprintf(line, sizeof(line), "m APPLY MAILBOX alice (UNIQUEID %s NAME INBOX UIDVALIDITY 1"
		" UIDNEXT 2 HIGHESTMODSEQ 9 SINCE-MODSEQ 4 RECORDS ())", UID_A);
	buf_puts(&b, line);
	buf_puts(&b, "\r\n");
	buf_reset(&out);
	{
		struct syncproto_decoder *d = syncproto_decoder_new(NULL);
		size_t off = 0;
		while (off < b.len) {
			size_t used = 0;
			struct err err;
			int rc = syncproto_decoder_feed(d, b.data + off, b.len - off, &used, &err);
			assert_true(rc >= 0);
			off += used;
			if (rc == SYNCPROTO_FRAME) {
				struct syncproto_value *f = syncproto_decoder_take(d);
				syncapply_frame(app, f, &out);
				syncproto_value_free(&f);
			}
		}
		syncproto_decoder_free(&d);
	}
	syncapply_sync(app, &out);
	r = buf_cstr(&out);
	assert_non_null(strstr(r, "p1 NO [CONFLICT rolled-back]"));
	assert_non_null(strstr(r, "p2 NO [CONFLICT rolled-back]"));
	assert_non_null(strstr(r, "m NO [NOTFOUND]"));
	assert_true(strstr(r, "p1 NO") < strstr(r, "p2 NO") && strstr(r, "p2 NO") < strstr(r, "m NO"));
	u = store_user_open(st, "alice", NULL);
	assert_non_null(u);
	assert_int_equal(store_blob_exists(u, g1, NULL), 0);
	assert_int_equal(store_blob_exists(u, g2, NULL), 0);
	store_user_close(&u);
	/* uploads alone commit as a group */
	buf_reset(&b);
	buf_printf(&b, "p3 UPLOAD alice %s {1+}\r\na", g1);
	assert_true(str_has_prefix(cmd_ex(b.data, b.len, NULL), "p3 OK"));
	u = store_user_open(st, "alice", NULL);
	assert_int_equal(store_blob_exists(u, g1, NULL), 1);
	store_user_close(&u);
	buf_free(&b);
}

static void
test_delete_by_tombstone_only(void **state)
{
	char line[512];
	struct store_user *u;
	struct store_mailbox mb;

	(void)state;
	login(1);
	assert_true(str_has_prefix(cmd("u APPLY USER alice (NAME alice HIGHESTMODSEQ 0)"), "u OK"));
	snprintf(line, sizeof(line), "m APPLY MAILBOX alice (UNIQUEID %s NAME Old UIDVALIDITY 3"
		" UIDNEXT 1 HIGHESTMODSEQ 2 SINCE-MODSEQ 0 SINCE-CHECKSUM NIL RECORDS ())", UID_A);
	assert_true(str_has_prefix(cmd(line), "m OK"));
	/* the name must match what the master believes it deletes */
	snprintf(line, sizeof(line), "d1 APPLY DELETE alice (UNIQUEID %s NAME Other DELETEDMODSEQ 9)",
		UID_A);
	assert_true(str_has_prefix(cmd(line), "d1 NO [CONFLICT name \"Old\"]"));
	snprintf(line, sizeof(line), "d2 APPLY DELETE alice (UNIQUEID %s NAME Old DELETEDMODSEQ 9)",
		UID_A);
	assert_true(str_has_prefix(cmd(line), "d2 OK"));
	assert_true(str_has_prefix(cmd(line), "d2 OK"));   /* idempotent */
	mailbox_state(UID_A, &mb);
	assert_int_equal(mb.deleted_modseq, 9);
	/* an unknown mailbox: nothing to delete */
	assert_true(str_has_prefix(cmd("d3 APPLY DELETE alice (UNIQUEID ffffffffffffffffffffffffffffffff"
		" NAME X DELETEDMODSEQ 9)"), "d3 OK"));
	/* UNUSER is the only way a user goes */
	assert_true(str_has_prefix(cmd("x APPLY UNUSER alice (MODSEQ 0)"), "x OK"));
	assert_int_equal(store_user_exists(st, "alice", NULL), 0);
	assert_true(str_has_prefix(cmd("x APPLY UNUSER alice (MODSEQ 0)"), "x OK"));
	u = NULL;
	(void)u;
}

static void
test_promote(void **state)
{
	const char *role;
	uint64_t epoch;
	struct buf b = BUF_INIT;

	(void)state;
	buf_puts(&b, "a1 AUTHENTICATE PLAIN ");
	sasl_plain_encode(&b, NULL, "sync", "syncpw");
	assert_true(str_has_prefix(cmd(buf_cstr(&b)), "a1 OK"));
	buf_free(&b);
	assert_true(str_has_prefix(cmd("p1 PROMOTE 1"), "p1 NO [FENCED epoch 1]"));
	assert_true(str_has_prefix(cmd("p2 PROMOTE 2"), "p2 OK [EPOCH 2]"));
	assert_int_equal(store_server_get(st, &role, &epoch, NULL), 0);
	assert_string_equal(role, "master");
	assert_int_equal(epoch, 2);
	assert_true(str_has_prefix(cmd("p3 PROMOTE 2"), "p3 NO [FENCED epoch 2]"));
}

static void
test_bad_frames(void **state)
{
	(void)state;
	login(1);
	assert_true(str_has_prefix(cmd("b1 APPLY MAILBOX alice (UNIQUEID 00 NAME x)"), "b1 BAD [INVALID]"));
	assert_true(str_has_prefix(cmd("b2 FROB"), "b2 BAD [INVALID]"));
	assert_true(str_has_prefix(cmd("b3 APPLY SEEN alice (UNIQUEID 0 SEENUIDS 1 MODSEQ 1)"),
		"b3 NO [PERM unsupported]"));
	assert_true(str_has_prefix(cmd("n NOOP"), "n OK"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_auth_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hello_fencing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_mailbox, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_rolled_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_by_tombstone_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_promote, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_frames, setup, teardown),
	};

	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
