/*
 * maildirread.c - reading a Maildir for import.  See maildirread.h.
 */
#include "ctl/maildirread.h"

#include "lib/atomicfile.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

void
maildirread_parse_name(const char *name, unsigned *flags_r, uint32_t *keywords_r)
{
	const char *info = NULL, *p;

	*flags_r = 0;
	*keywords_r = 0;
	for (p = name; *p; p++)
		if ((p[0] == ':' || p[0] == '!') && p[1] == '2' && p[2] == ',')
			info = p + 3;
	if (info == NULL)
		return;
	for (p = info; *p; p++) {
		switch (*p) {
		case 'S': *flags_r |= MAILDIR_F_SEEN; break;
		case 'R': *flags_r |= MAILDIR_F_ANSWERED; break;
		case 'F': *flags_r |= MAILDIR_F_FLAGGED; break;
		case 'T': *flags_r |= MAILDIR_F_DELETED; break;
		case 'D': *flags_r |= MAILDIR_F_DRAFT; break;
		case 'P': *flags_r |= MAILDIR_F_PASSED; break;
		default:
			if (*p >= 'a' && *p <= 'z')
				*keywords_r |= (uint32_t)1 << (*p - 'a');
			break;
		}
	}
}

int
maildirread_valid_keyword(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 100)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return 0;
	}
	return 1;
}

int
maildirread_parse_keywords(const char *text, size_t len, char *names[MAILDIR_KEYWORDS])
{
	size_t pos = 0;
	int count = 0;

	while (pos < len) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - line) : len - pos;
		size_t i = 0, kstart;
		unsigned idx = 0;
		int digits = 0;

		pos += n + (nl ? 1 : 0);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		while (i < n && line[i] >= '0' && line[i] <= '9' && digits < 3) {
			idx = idx * 10 + (unsigned)(line[i] - '0');
			i++;
			digits++;
		}
		if (digits == 0 || i >= n || line[i] != ' ' || idx >= MAILDIR_KEYWORDS)
			continue;
		kstart = i + 1;
		if (!maildirread_valid_keyword(line + kstart, n - kstart))
			continue;
		if (names[idx] == NULL)
			count++;
		free(names[idx]);
		names[idx] = xstrndup(line + kstart, n - kstart);
	}
	return count;
}

void
maildirread_crlf(const char *in, size_t n, int *cr_pending, struct buf *out)
{
	size_t i, start = 0;

	for (i = 0; i < n; i++) {
		if (in[i] == '\n') {
			int had_cr = i > 0 ? in[i - 1] == '\r' : *cr_pending;
			if (!had_cr) {
				buf_append(out, in + start, i - start);
				buf_append(out, "\r\n", 2);
				start = i + 1;
			}
		}
	}
	buf_append(out, in + start, n - start);
	if (n > 0)
		*cr_pending = in[n - 1] == '\r';
}

int
maildirread_load(const struct maildir_msg *m, size_t max, struct buf *out, struct err *err)
{
	char chunk[65536];
	int fd, cr = 0;

	buf_reset(out);
	fd = open(m->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_errno(err, errno == ENOENT ? ERR_NOTFOUND : ERR_PERM, "open %s", m->path);
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err_errno(err, ERR_TEMP, "read %s", m->path);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		maildirread_crlf(chunk, (size_t)n, &cr, out);
		if (out->len > max) {
			close(fd);
			return err_set(err, ERR_TOOBIG, "%s is larger than %zu bytes", m->path, max);
		}
	}
	close(fd);
	return 0;
}

static int
maildirread_cmp(const void *a, const void *b)
{
	const struct maildir_msg *x = a, *y = b;

	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int
maildirread_scan(struct maildir *md, const char *sub, size_t *cap, struct err *err)
{
	struct buf path = BUF_INIT;
	DIR *d;
	struct dirent *de;
	int rc = 0;

	buf_printf(&path, "%s/%s", md->dir, sub);
	d = opendir(buf_cstr(&path));
	if (d == NULL) {
		if (errno == ENOENT) {
			buf_free(&path);
			return 0;
		}
		rc = err_errno(err, ERR_PERM, "open directory %s", buf_cstr(&path));
		buf_free(&path);
		return rc;
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		struct maildir_msg *m;
		struct stat st;
		size_t dirlen = path.len;

		if (de->d_name[0] == '.')
			continue;
		buf_printf(&path, "/%s", de->d_name);
		if (stat(buf_cstr(&path), &st) < 0 || !S_ISREG(st.st_mode)) {
			buf_truncate(&path, dirlen);
			continue;
		}
		if (md->n == *cap) {
			*cap = *cap ? *cap * 2 : 64;
			md->msgs = xreallocarray(md->msgs, *cap, sizeof(*md->msgs));
		}
		m = &md->msgs[md->n++];
		memset(m, 0, sizeof(*m));
		m->path = xstrdup(buf_cstr(&path));
		m->name = m->path + dirlen + 1;
		m->is_new = sub[0] == 'n';
		m->mtime = st.st_mtime;
		m->size = (uint64_t)st.st_size;
		maildirread_parse_name(m->name, &m->flags, &m->keywords);
		buf_truncate(&path, dirlen);
	}
	if (errno != 0)
		rc = err_errno(err, ERR_TEMP, "read directory %s", buf_cstr(&path));
	closedir(d);
	buf_free(&path);
	return rc;
}

int
maildirread_open(const char *dir, struct maildir **md_r, struct err *err)
{
	struct maildir *md;
	struct stat st;
	struct buf p = BUF_INIT;
	int has = 0;
	size_t cap = 0;
	const char *subs[] = { "cur", "new" };
	size_t i;

	if (stat(dir, &st) < 0)
		return err_errno(err, errno == ENOENT ? ERR_NOTFOUND : ERR_PERM, "%s", dir);
	if (!S_ISDIR(st.st_mode))
		return err_set(err, ERR_INVALID, "not a Maildir: %s is not a directory", dir);
	for (i = 0; i < 2; i++) {
		buf_reset(&p);
		buf_printf(&p, "%s/%s", dir, subs[i]);
		if (stat(buf_cstr(&p), &st) == 0 && S_ISDIR(st.st_mode))
			has = 1;
	}
	if (!has) {
		buf_free(&p);
		return err_set(err, ERR_INVALID, "not a Maildir: %s has neither cur/ nor new/", dir);
	}
	md = xcalloc(1, sizeof(*md));
	md->dir = xstrdup(dir);
	for (i = 0; i < 2; i++) {
		if (maildirread_scan(md, subs[i], &cap, err) < 0) {
			buf_free(&p);
			maildirread_free(&md);
			return -1;
		}
	}
	buf_reset(&p);
	buf_printf(&p, "%s/dovecot-keywords", dir);
	{
		char *text = NULL;
		size_t len = 0;
		struct err e2;
		if (atomicfile_read_all(buf_cstr(&p), 1 << 20, &text, &len, &e2) == 0) {
			maildirread_parse_keywords(text, len, md->keywords);
			free(text);
		}
	}
	buf_free(&p);
	if (md->n > 1)
		qsort(md->msgs, md->n, sizeof(*md->msgs), maildirread_cmp);
	*md_r = md;
	return 0;
}

void
maildirread_free(struct maildir **mdp)
{
	struct maildir *md = *mdp;
	size_t i;

	if (md == NULL)
		return;
	for (i = 0; i < md->n; i++)
		free(md->msgs[i].path);
	for (i = 0; i < MAILDIR_KEYWORDS; i++)
		free(md->keywords[i]);
	free(md->msgs);
	free(md->dir);
	free(md);
	*mdp = NULL;
}
