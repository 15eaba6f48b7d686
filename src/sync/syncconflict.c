/*
 * syncconflict.c - the channel's conflict policy and the "warned once"
 * memory (syncconflict.h).
 *
 * Invariant: a conflict key is in the in-memory set iff it was logged at
 * warning level by this process or is a line of the .conflicts file.
 * Keys are compared by a 64-bit FNV-1a hash of the line (a collision
 * costs one missed warning, nothing else).
 */
#include "sync/syncconflict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

struct syncconflict {
	enum syncconflict_policy policy;
	char *path;
	uint64_t *seen;
	size_t nseen, capseen;
	size_t warned;
};

int
syncconflict_parse_policy(const char *s, enum syncconflict_policy *p)
{
	if (s == NULL || s[0] == '\0' || str_eq(s, "renumber"))
		*p = SYNCCONFLICT_RENUMBER;
	else if (str_eq(s, "keep"))
		*p = SYNCCONFLICT_KEEP;
	else if (str_eq(s, "replace"))
		*p = SYNCCONFLICT_REPLACE;
	else
		return -1;
	return 0;
}

const char *
syncconflict_policy_name(enum syncconflict_policy p)
{
	switch (p) {
	case SYNCCONFLICT_KEEP:
		return "keep";
	case SYNCCONFLICT_REPLACE:
		return "replace";
	default:
		return "renumber";
	}
}

enum syncpush_resolution
syncconflict_resolution(enum syncconflict_policy p, enum syncpush_conflict_kind k)
{
	switch (k) {
	case SYNCPUSH_C_FLAGS:
		return SYNCPUSH_R_MERGE;
	case SYNCPUSH_C_GUID:
	case SYNCPUSH_C_UID_ABOVE:
	case SYNCPUSH_C_REPLICA_RECORD:
	case SYNCPUSH_C_MODSEQ_AHEAD:
	case SYNCPUSH_C_NAME_CLASH:
	case SYNCPUSH_C_UIDVALIDITY:
		if (p == SYNCCONFLICT_RENUMBER)
			return SYNCPUSH_R_RENUMBER;
		if (p == SYNCCONFLICT_REPLACE)
			return SYNCPUSH_R_REPLACE;
		return SYNCPUSH_R_LEAVE;
	default:
		return SYNCPUSH_R_LEAVE;
	}
}

const char *
syncconflict_action_name(enum syncpush_resolution r)
{
	switch (r) {
	case SYNCPUSH_R_MASTER:
		return "master";
	case SYNCPUSH_R_MERGE:
		return "merge";
	case SYNCPUSH_R_RENUMBER:
		return "renumber";
	case SYNCPUSH_R_REPLACE:
		return "replace";
	default:
		return "leave";
	}
}

/* Is keyword w (n octets) a word of the space-separated list s? */
static bool
syncconflict_kw_has(const char *s, const char *w, size_t n)
{
	while (s != NULL && *s != '\0') {
		size_t len;
		while (*s == ' ')
			s++;
		len = strcspn(s, " ");
		if (len == n && len > 0 && strncasecmp(s, w, n) == 0)
			return true;
		s += len;
	}
	return false;
}

/* Append to out the keywords of `from` that the merge keeps. */
static void
syncconflict_kw_merge(const char *from, const char *other, bool from_wins, bool skip_common,
	struct buf *out)
{
	const char *s = from;

	while (s != NULL && *s != '\0') {
		size_t len;
		bool keep;
		while (*s == ' ')
			s++;
		len = strcspn(s, " ");
		if (len == 0)
			break;
		if (syncconflict_kw_has(other, s, len))
			keep = !skip_common;   /* on both: once, from the first list */
		else
			keep = from_wins;
		if (keep && !syncconflict_kw_has(buf_cstr(out), s, len)) {
			if (out->len > 0)
				buf_putc(out, ' ');
			buf_append(out, s, len);
		}
		s += len;
	}
}

bool
syncconflict_merge_flags(uint32_t m_sys, const char *m_kw, uint64_t m_modseq, uint32_t r_sys,
	const char *r_kw, uint64_t r_modseq, uint64_t base, uint32_t *sys_r, struct buf *kw_r)
{
	bool mc = m_modseq > base, rc = r_modseq > base;
	bool r_wins = r_modseq > m_modseq;   /* ties go to the master */
	bool changed;
	uint32_t diff;

	buf_reset(kw_r);
	if (!rc) {
		*sys_r = m_sys;
		syncconflict_kw_merge(m_kw, "", true, false, kw_r);
	} else if (!mc) {
		*sys_r = r_sys;
		syncconflict_kw_merge(r_kw, "", true, false, kw_r);
	} else {
		diff = m_sys ^ r_sys;
		*sys_r = (m_sys & r_sys) | (diff & (r_wins ? r_sys : m_sys));
		syncconflict_kw_merge(m_kw, r_kw, !r_wins, false, kw_r);
		syncconflict_kw_merge(r_kw, m_kw, r_wins, true, kw_r);
	}
	changed = *sys_r != m_sys;
	/* same keyword set as the master's? */
	{
		const char *s = buf_cstr(kw_r);
		size_t nres = 0, nm = 0;
		while (*s != '\0') {
			size_t len;
			while (*s == ' ')
				s++;
			len = strcspn(s, " ");
			if (len == 0)
				break;
			nres++;
			if (!syncconflict_kw_has(m_kw, s, len))
				changed = true;
			s += len;
		}
		s = m_kw != NULL ? m_kw : "";
		while (*s != '\0') {
			size_t len;
			while (*s == ' ')
				s++;
			len = strcspn(s, " ");
			if (len == 0)
				break;
			nm++;
			s += len;
		}
		if (nm != nres)
			changed = true;
	}
	return changed;
}

static uint64_t
syncconflict_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

static bool
syncconflict_seen(const struct syncconflict *c, uint64_t h)
{
	for (size_t i = 0; i < c->nseen; i++)
		if (c->seen[i] == h)
			return true;
	return false;
}

static void
syncconflict_add(struct syncconflict *c, uint64_t h)
{
	if (c->nseen == c->capseen) {
		c->capseen = c->capseen ? 2 * c->capseen : 64;
		c->seen = xreallocarray(c->seen, c->capseen, sizeof(*c->seen));
	}
	c->seen[c->nseen++] = h;
}

struct syncconflict *
syncconflict_new(const char *root, const char *channel, enum syncconflict_policy policy)
{
	struct syncconflict *c = xcalloc(1, sizeof(*c));
	struct buf p = BUF_INIT;
	char line[1024];
	FILE *f;

	c->policy = policy;
	buf_printf(&p, "%s/run/sync-%s.conflicts", root, channel);
	c->path = xstrdup(buf_cstr(&p));
	buf_free(&p);
	if ((f = fopen(c->path, "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			line[strcspn(line, "\n")] = '\0';
			if (line[0] != '\0')
				syncconflict_add(c, syncconflict_hash(line));
		}
		fclose(f);
	}
	return c;
}

void
syncconflict_free(struct syncconflict **cp)
{
	struct syncconflict *c = *cp;

	if (c == NULL)
		return;
	free(c->path);
	free(c->seen);
	free(c);
	*cp = NULL;
}

size_t
syncconflict_warned(const struct syncconflict *c)
{
	return c->warned;
}

enum syncpush_resolution
syncconflict_hook(void *ctx, const struct syncpush_conflict *k)
{
	struct syncconflict *c = ctx;
	enum syncpush_resolution r = syncconflict_resolution(c->policy, k->kind);
	const char *action = syncconflict_action_name(r);
	char key[512];
	uint64_t h;
	FILE *f;

	snprintf(key, sizeof(key), "%s %s %s %u %s %s", syncpush_conflict_name(k->kind), k->user,
		k->mailbox_id ? k->mailbox_id : "-", k->uid, k->master_guid ? k->master_guid : "-",
		k->replica_guid ? k->replica_guid : "-");
	h = syncconflict_hash(key);
	if (syncconflict_seen(c, h)) {
		log_debug("sync conflict (known) kind=%s user=%s mailbox=%s uid=%u policy=%s action=%s",
			syncpush_conflict_name(k->kind), k->user, k->mailbox_id ? k->mailbox_id : "-",
			k->uid, syncconflict_policy_name(c->policy), action);
		return r;
	}
	log_warn("sync conflict kind=%s user=%s mailbox=%s name=%s uid=%u master_guid=%s"
		" replica_guid=%s master_modseq=%llu replica_modseq=%llu policy=%s action=%s",
		syncpush_conflict_name(k->kind), k->user, k->mailbox_id ? k->mailbox_id : "-",
		log_q(k->mailbox_name ? k->mailbox_name : "-"), k->uid,
		k->master_guid ? k->master_guid : "-", k->replica_guid ? k->replica_guid : "-",
		(unsigned long long)k->master_modseq, (unsigned long long)k->replica_modseq,
		syncconflict_policy_name(c->policy), action);
	syncconflict_add(c, h);
	c->warned++;
	if ((f = fopen(c->path, "a")) != NULL) {
		fprintf(f, "%s\n", key);
		fclose(f);
	}
	return r;
}
