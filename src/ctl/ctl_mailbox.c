/*
 * ctl_mailbox.c - castorctl mailbox create|delete|rename|list USER ...
 *
 * Names are UTF-8 with '/' as the hierarchy separator, as the store
 * keeps them (not modified UTF-7).  Every name is checked before the
 * user is opened, so a bad name changes nothing and says why.
 */
#include "ctl/ctl.h"

#include "lib/log.h"
#include "lib/str.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

struct ctl_mblist {
	struct store_user *u;
	struct err *err;
	int failed;
};

static int
ctl_mailbox_print(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct ctl_mblist *l = ctx;
	struct store_status st;

	(void)attrs;
	if (mb == NULL)
		return 0;
	if (store_mailbox_status_id(l->u, mb->uniqueid, &st, l->err) < 0) {
		l->failed = 1;
		return 1;
	}
	/* names with blanks or quotes are quoted, so the listing splits on blanks */
	if (name[0] == '\0' || strpbrk(name, " \t\"\\") != NULL) {
		struct buf q = BUF_INIT;
		buf_put_quoted(&q, name, strlen(name));
		fputs(buf_cstr(&q), stdout);
		buf_free(&q);
	} else {
		fputs(name, stdout);
	}
	printf(" uniqueid=%s messages=%u unseen=%u size=%llu uidvalidity=%u uidnext=%u highestmodseq=%llu",
	    mb->uniqueid, st.messages, st.unseen, (unsigned long long)st.size,
	    mb->uidvalidity, mb->uidnext, (unsigned long long)mb->highestmodseq);
	if (mb->specialuse[0])
		printf(" specialuse=%s", log_q(mb->specialuse));
	putchar('\n');
	return 0;
}

int
ctl_cmd_mailbox(struct ctl *c, int argc, char **argv)
{
	const char *specialuse = NULL;
	const struct ctl_opt opts[] = {
		{ "special-use", 's', &specialuse, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char norm[STORE_MBOX_NAME_MAX + 1], norm2[STORE_MBOX_NAME_MAX + 1];
	char **pos = NULL;
	int npos = 0, rc, want;
	struct err err;
	struct store_user *u = NULL;
	const char *sub;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl mailbox create USER NAME [--special-use FLAG]\n"
		    "       castorctl mailbox delete USER NAME\n"
		    "       castorctl mailbox rename USER OLD NEW\n"
		    "       castorctl mailbox list USER [PATTERN]\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	if (npos < 1) {
		free(pos);
		return ctl_usage_error(c, "mailbox create|delete|rename|list USER ...");
	}
	sub = pos[0];
	if (str_eq(sub, "create") || str_eq(sub, "delete"))
		want = 3;
	else if (str_eq(sub, "rename"))
		want = 4;
	else if (str_eq(sub, "list"))
		want = npos == 3 ? 3 : 2;
	else {
		rc = ctl_usage_error(c, "unknown mailbox command %s (create, delete, rename, list)", log_q(sub));
		free(pos);
		return rc;
	}
	if (npos != want) {
		rc = ctl_usage_error(c, "mailbox %s USER %s", sub,
		    str_eq(sub, "rename") ? "OLD NEW" : str_eq(sub, "list") ? "[PATTERN]" : "NAME");
		free(pos);
		return rc;
	}
	if (specialuse != NULL && !str_eq(sub, "create")) {
		free(pos);
		return ctl_usage_error(c, "--special-use goes with mailbox create");
	}
	if (ctl_check_user_name(pos[1], &err) < 0)
		goto fail;
	if (!str_eq(sub, "list")) {
		if (store_mailbox_name_check(pos[2], norm, &err) < 0)
			goto fail;
		if (want == 4 && store_mailbox_name_check(pos[3], norm2, &err) < 0)
			goto fail;
	}
	if ((rc = ctl_open_store(c)) != 0) {
		free(pos);
		return rc;
	}
	u = store_user_open(c->store, pos[1], &err);
	if (u == NULL)
		goto fail;
	if (str_eq(sub, "create")) {
		struct store_mailbox mb;
		if (store_mailbox_create_parents(u, norm, &err) < 0 ||
		    store_mailbox_create(u, norm, specialuse, &mb, &err) < 0)
			goto fail;
		if (!c->quiet)
			printf("mailbox %s created uniqueid=%s\n", mb.name, mb.uniqueid);
	} else if (str_eq(sub, "delete")) {
		if (store_mailbox_delete(u, norm, &err) < 0)
			goto fail;
		if (!c->quiet)
			printf("mailbox %s deleted\n", norm);
	} else if (str_eq(sub, "rename")) {
		struct store_mailbox from;

		/* the parents only for a rename that can happen */
		if (store_mailbox_get(u, norm, &from, &err) < 0 ||
		    store_mailbox_create_parents(u, norm2, &err) < 0 ||
		    store_mailbox_rename(u, norm, norm2, &err) < 0)
			goto fail;
		if (!c->quiet)
			printf("mailbox %s renamed to %s\n", norm, norm2);
	} else {
		struct ctl_mblist l = { u, &err, 0 };
		if (store_mailbox_list(u, npos == 3 ? pos[2] : "*", STORE_LIST_NO_PARENTS,
		    ctl_mailbox_print, &l, &err) < 0 || l.failed)
			goto fail;
	}
	store_user_close(&u);
	free(pos);
	return 0;
fail:
	if (u != NULL)
		store_user_close(&u);
	free(pos);
	return ctl_fail(c, &err);
}
