/*
 * master_conf.c - castord's configuration: castor.conf, services.conf,
 * and finding the program each entry runs.
 *
 * A cmd= program without a '/' is looked up, first hit wins, in
 *   1. libexec_dir (castor.conf; relative to the server root),
 *   2. the directory castord itself was run from,
 *   3. when castord runs uninstalled from a build tree (its directory's
 *      grandparent holds build.ninja): every sibling directory ../<x>/
 *      of castord's directory, in name order (build/src/imap/imapd ...),
 *      then build/tests/helpers (the tests' echod),
 *   4. ../libexec/castor beside castord's directory (an installed tree
 *      that was moved or staged whole),
 *   5. $CASTOR_LIBEXECDIR from the environment,
 *   6. CASTOR_LIBEXECDIR (compiled in: <prefix>/libexec/castor),
 *   7. $PATH.
 * A cmd= program with a '/' is used as written, relative to the server
 * root when not absolute.  An entry whose program is not found makes
 * the whole file fail to load (at start-up: castord exits; on SIGHUP:
 * the reload is rejected).
 */
#include "master/master.h"

#include "castor_config.h"
#include "lib/atomicfile.h"
#include "lib/crc32c.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *self_dir;          /* directory of the castord binary */
static bool self_uninstalled;   /* running from a meson build tree */

void
master_conf_set_self(void)
{
	char exe[PATH_MAX], probe[PATH_MAX + 32];
	ssize_t n;
	char *slash;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (slash == NULL)
		return;
	*slash = '\0';
	free(self_dir);
	self_dir = xstrdup(exe[0] ? exe : "/");
	if (str_fmt(probe, sizeof(probe), "%s/../../build.ninja", self_dir) > 0 && access(probe, F_OK) == 0)
		self_uninstalled = true;
}

static bool
master_conf_is_exec(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* dir/name if it is an executable file; malloc'd or NULL. */
static char *
master_conf_try(const char *dir, const char *name)
{
	char path[PATH_MAX];

	if (dir == NULL || dir[0] == '\0')
		return NULL;
	if (str_fmt(path, sizeof(path), "%s/%s", dir, name) < 0)
		return NULL;
	return master_conf_is_exec(path) ? xstrdup(path) : NULL;
}

static int
master_conf_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Uninstalled: <self_dir>/../<sibling>/name. */
static char *
master_conf_try_siblings(const char *name)
{
	char parent[PATH_MAX], sub[PATH_MAX];
	char **names = NULL;
	size_t n = 0, i;
	struct dirent *de;
	char *hit = NULL;
	DIR *d;

	if (str_lcpy(parent, self_dir, sizeof(parent)) >= sizeof(parent) || strrchr(parent, '/') == NULL)
		return NULL;
	*strrchr(parent, '/') = '\0';
	if (parent[0] == '\0' || (d = opendir(parent)) == NULL)
		return NULL;
	while ((de = readdir(d)) != NULL && n < 256) {
		if (de->d_name[0] == '.')
			continue;
		names = xreallocarray(names, n + 1, sizeof(*names));
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), master_conf_name_cmp);
	for (i = 0; i < n; i++) {
		if (hit == NULL && str_fmt(sub, sizeof(sub), "%s/%s", parent, names[i]) > 0)
			hit = master_conf_try(sub, name);
		free(names[i]);
	}
	free(names);
	/* the programs the tests drive (echod, ...): <build>/tests/helpers */
	if (hit == NULL && strrchr(parent, '/') != NULL) {
		*strrchr(parent, '/') = '\0';
		if (str_fmt(sub, sizeof(sub), "%s/tests/helpers", parent) > 0)
			hit = master_conf_try(sub, name);
	}
	return hit;
}

char *
master_conf_find_program(const struct conf *conf, const char *name, struct err *err)
{
	char *hit = NULL, *libexec;
	const char *path, *p;

	if (name == NULL || name[0] == '\0')
		return err_set(err, ERR_INVALID, "empty command"), NULL;
	if (strchr(name, '/') != NULL) {
		char full[PATH_MAX];

		if (name[0] == '/')
			str_lcpy(full, name, sizeof(full));
		else if (str_fmt(full, sizeof(full), "%s/%s", conf_dir(conf), name) < 0)
			return err_set(err, ERR_INVALID, "path too long: %s", name), NULL;
		if (!master_conf_is_exec(full))
			return err_set(err, ERR_NOTFOUND, "program %s is not an executable file", full), NULL;
		return xstrdup(full);
	}
	libexec = conf_get_path(conf, "libexec_dir", NULL);
	hit = master_conf_try(libexec, name);
	free(libexec);
	if (hit == NULL)
		hit = master_conf_try(self_dir, name);
	if (hit == NULL && self_uninstalled)
		hit = master_conf_try_siblings(name);
	if (hit == NULL && self_dir != NULL) {
		/* an installed tree moved as a whole (a staged DESTDIR, a package
		 * root): bin/castord beside libexec/castor/ */
		char rel[PATH_MAX];

		if (str_fmt(rel, sizeof(rel), "%s/../libexec/castor", self_dir) > 0)
			hit = master_conf_try(rel, name);
	}
	if (hit == NULL && getenv("CASTOR_LIBEXECDIR") != NULL && getenv("CASTOR_LIBEXECDIR")[0] != '\0')
		hit = master_conf_try(getenv("CASTOR_LIBEXECDIR"), name);
	if (hit == NULL)
		hit = master_conf_try(CASTOR_LIBEXECDIR, name);
	path = getenv("PATH");
	for (p = path; hit == NULL && p != NULL && *p != '\0';) {
		const char *colon = strchr(p, ':');
		size_t len = colon ? (size_t)(colon - p) : strlen(p);
		char *dir = xstrndup(p, len);

		hit = master_conf_try(len ? dir : ".", name);
		free(dir);
		p = colon ? colon + 1 : NULL;
	}
	if (hit == NULL)
		err_set(err, ERR_NOTFOUND, "program %s not found (libexec_dir, %s, %s, PATH)", name,
			self_dir ? self_dir : "?", CASTOR_LIBEXECDIR);
	return hit;
}

void
master_conf_entry_clear(struct mentry *e)
{
	char **a;

	free(e->name);
	for (a = e->argv; a != NULL && *a != NULL; a++)
		free(*a);
	free(e->argv);
	free(e->path);
	free(e->listen);
	memset(e, 0, sizeof(*e));
}

void
master_conf_entry_copy(struct mentry *dst, const struct mentry *src)
{
	size_t n = 0, i;

	*dst = *src;
	dst->name = xstrdup(src->name);
	dst->path = src->path ? xstrdup(src->path) : NULL;
	dst->listen = src->listen ? xstrdup(src->listen) : NULL;
	while (src->argv != NULL && src->argv[n] != NULL)
		n++;
	dst->argv = xcalloc(n + 1, sizeof(char *));
	for (i = 0; i < n; i++)
		dst->argv[i] = xstrdup(src->argv[i]);
}

bool
master_conf_entry_same_cmd(const struct mentry *a, const struct mentry *b)
{
	size_t i;

	if (!str_eq(a->path, b->path))
		return false;
	for (i = 0; a->argv[i] != NULL && b->argv[i] != NULL; i++)
		if (!str_eq(a->argv[i], b->argv[i]))
			return false;
	return a->argv[i] == NULL && b->argv[i] == NULL;
}

void
master_conf_free(struct mconf *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++)
		master_conf_entry_clear(&c->entries[i]);
	free(c->entries);
	if (c->conf != NULL)
		conf_free(c->conf);
	free(c->conf_path);
	free(c->svc_path);
	free(c);
}

static char *
master_conf_abs(const char *path)
{
	char cwd[PATH_MAX], full[PATH_MAX * 2];
	char *r;

	if ((r = realpath(path, NULL)) != NULL)
		return r;
	if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return xstrdup(path);
	snprintf(full, sizeof(full), "%s/%s", cwd, path);
	return xstrdup(full);
}

/* The line castord writes when it refuses a client itself (maxchild,
 * maxperip): the protocol from proto=, else from the program's name. */
static void
master_conf_refusal(struct mentry *me, enum svc_proto proto)
{
	const char *base = strrchr(me->argv[0], '/'), *line = "";

	base = base != NULL ? base + 1 : me->argv[0];
	if (proto == SCONF_PROTO_AUTO) {
		if (str_eq(base, "imapd"))
			proto = SCONF_PROTO_IMAP;
		else if (str_eq(base, "pop3d"))
			proto = SCONF_PROTO_POP3;
		else if (str_eq(base, "lmtpd"))
			proto = SCONF_PROTO_LMTP;
		else if (str_eq(base, "syncd"))
			proto = SCONF_PROTO_SYNC;
		else if (str_eq(base, "echod"))
			line = "* BYE too many connections";  /* the test service */
	}
	switch (proto) {
	case SCONF_PROTO_IMAP: line = "* BYE [UNAVAILABLE] Too many connections, try again later"; break;
	case SCONF_PROTO_POP3: line = "-ERR [SYS/TEMP] Too many connections, try again later"; break;
	case SCONF_PROTO_LMTP: line = "421 4.3.2 Too many connections, try again later"; break;
	case SCONF_PROTO_SYNC: line = "* BYE [TEMP] \"too many connections\""; break;
	case SCONF_PROTO_AUTO:
	case SCONF_PROTO_NONE: break;
	}
	str_lcpy(me->refuse, line, sizeof(me->refuse));
}

static int
master_conf_entry(struct mconf *c, struct mentry *me, const struct servicesconf_entry *se, struct err *err)
{
	int i;

	memset(me, 0, sizeof(*me));
	me->section = se->section;
	me->name = xstrdup(se->name);
	me->argv = xcalloc((size_t)se->argc + 1, sizeof(char *));
	for (i = 0; i < se->argc; i++)
		me->argv[i] = xstrdup(se->argv[i]);
	me->tls = se->tls;
	me->prefork = se->prefork;
	me->maxchild = se->maxchild;
	me->maxforkrate = se->maxforkrate;
	me->maxuse = se->maxuse;
	me->maxperip = se->maxperip;
	me->maxidle = se->maxidle;
	me->period = se->period;
	me->at = se->at;
	me->timeout = se->timeout;
	me->line = se->line;
	if (se->argc < 1)
		return err_set(err, ERR_INVALID, "%s:%d: %s: empty cmd", c->svc_path, se->line, se->name);
	me->path = master_conf_find_program(c->conf, se->argv[0], err);
	if (me->path == NULL) {
		err_prefix(err, "%s:%d: %s", c->svc_path, se->line, se->name);
		return -1;
	}
	if (se->section == SCONF_SERVICES) {
		if (se->listen == NULL)
			return err_set(err, ERR_INVALID, "%s:%d: %s: no listen=", c->svc_path, se->line, se->name);
		me->listen = xstrdup(se->listen);
		if (netaddr_parse(se->listen, &me->addr, err) < 0) {
			err_prefix(err, "%s:%d: %s: listen", c->svc_path, se->line, se->name);
			return -1;
		}
		if (netaddr_format(&me->addr, me->addr_key, sizeof(me->addr_key)) < 0)
			str_lcpy(me->addr_key, se->listen, sizeof(me->addr_key));
		if (me->maxchild >= 0 && me->prefork > me->maxchild)
			me->prefork = me->maxchild;
		master_conf_refusal(me, se->proto);
	}
	return 0;
}

struct mconf *
master_conf_load(const char *conf_path, const char *svc_path, struct err *err)
{
	struct mconf *c = xcalloc(1, sizeof(*c));
	struct servicesconf *sc = NULL;
	char *p;
	size_t i, j;

	c->conf_path = master_conf_abs(conf_path);
	c->conf = conf_load(c->conf_path, err);
	if (c->conf == NULL)
		goto fail;
	{
		char *data = NULL;
		size_t len = 0;
		struct err e2;

		if (atomicfile_read_all(c->conf_path, 16u << 20, &data, &len, &e2) == 0)
			c->conf_crc = crc32c(0, data, len);
		free(data);
	}
	if (svc_path != NULL)
		c->svc_path = master_conf_abs(svc_path);
	else if ((p = conf_get_path(c->conf, "services_conf", NULL)) != NULL)
		c->svc_path = p;
	else {
		size_t len = strlen(conf_dir(c->conf)) + sizeof("/services.conf");

		c->svc_path = xmalloc(len);
		snprintf(c->svc_path, len, "%s/services.conf", conf_dir(c->conf));
	}
	c->shutdown_timeout_ms = conf_get_duration_ms(c->conf, "shutdown_timeout", 10000);
	if (c->shutdown_timeout_ms < 0) {
		err_set(err, ERR_INVALID, "%s: shutdown_timeout must not be negative", c->conf_path);
		goto fail;
	}
	c->maxidle_ms = conf_get_duration_ms(c->conf, "service_maxidle", 60000);
	if (c->maxidle_ms < 0) {
		err_set(err, ERR_INVALID, "%s: service_maxidle must not be negative", c->conf_path);
		goto fail;
	}
	if (servicesconf_load(c->svc_path, &sc, err) < 0)
		goto fail;
	c->entries = xcalloc(sc->n ? sc->n : 1, sizeof(*c->entries));
	for (i = 0; i < sc->n; i++) {
		c->n = i + 1;
		if (master_conf_entry(c, &c->entries[i], &sc->entries[i], err) < 0)
			goto fail;
		for (j = 0; c->entries[i].section == SCONF_SERVICES && j < i; j++) {
			if (c->entries[j].section == SCONF_SERVICES &&
			    str_eq(c->entries[j].addr_key, c->entries[i].addr_key)) {
				err_set(err, ERR_INVALID, "%s:%d: %s: listen=%s is already used by %s", c->svc_path,
					c->entries[i].line, c->entries[i].name, c->entries[i].listen,
					c->entries[j].name);
				goto fail;
			}
		}
	}
	servicesconf_free(sc);
	return c;
fail:
	if (sc != NULL)
		servicesconf_free(sc);
	master_conf_free(c);
	return NULL;
}
