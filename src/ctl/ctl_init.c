/*
 * ctl_init.c - castorctl init: create a server root, as initdb does.
 *
 *     castorctl init ROOT --port-base N [--role master|replica]
 *         [--channel NAME=HOST:PORT ...] [--sync-password PW | --sync-password-file F]
 *         [--listen ADDR] [--servername NAME] [--user NAME]
 *
 * writes, in this order:
 *     ROOT/                      created (an existing ROOT must be empty)
 *     ROOT/db/users.db ...       store_create(): the empty databases, role, epoch 1
 *     ROOT/tls/key.pem cert.pem  a self-signed certificate (tls_make_selfsigned)
 *     ROOT/castor.conf           settings (mode 0600 when it holds a password)
 *     ROOT/services.conf         imap N, pop3 N+1, lmtp N+2, syncd N+3, imaps N+4
 * and checks that both configuration files load.  If anything fails,
 * what init created is removed again: ROOT is left as it was found.
 *
 * Services whose program is not built yet are written commented out, so
 * castord starts what exists; the lookup (ctl_init_find_prog) searches
 * the places castord does: CASTOR_LIBEXECDIR, the directory castorctl
 * runs from, and its sibling build directories.  A server with channels
 * (master or replica: the configuration is symmetric, docs/failover.md)
 * gets a DAEMON entry "sync-client -r -n CHAN" per channel, the SHUTDOWN
 * entry "sync-client --drain", and "castorctl peer-check" as a START and
 * an EVENTS entry; --sync-password also becomes `sync_password` (what its
 * syncd checks while it is a replica), and a replica given it gets the
 * credential its master's channel logs in with (authname "sync") in
 * users.db sync_auth: never a mail user.
 *
 * Run as root, init gives the server to an unprivileged user (docs/security.md
 * "Privileges"): --user NAME, else "castor", created with useradd --system
 * (home ROOT, no login shell) when it does not exist yet; everything init
 * wrote is chowned to it, castor.conf names it in run_user, and init checks
 * that the user can reach ROOT (every parent directory searchable).
 * --user root keeps the server root's files root's and says run_user: root.
 */
#include "ctl/ctl.h"

#include "castor_config.h"
#include "lib/atomicfile.h"
#include "lib/netaddr.h"
#include "lib/priv.h"
#include "lib/str.h"
#include "lib/servicesconf.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define CTL_SYNC_AUTHNAME "sync"

struct ctl_channel {
	char name[33];
	char host[256];
	uint16_t port;
};

static bool
ctl_init_is_exec(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Is the program `name` built or installed where castord would look?
 * $CASTOR_LIBEXECDIR first (then written as libexec_dir, so castord finds
 * the programs without the variable), the compiled-in libexec
 * directory, ../libexec/castor beside castorctl (a moved or staged
 * install), castorctl's directory and the build tree's. */
static bool
ctl_init_find_prog(const char *name)
{
	static const char *const siblings[] = { "master", "imap", "pop3", "lmtp", "sync" };
	char self[PATH_MAX], path[PATH_MAX + 64];
	const char *env = getenv("CASTOR_LIBEXECDIR");
	ssize_t n;
	char *slash;
	size_t i;

	if (env != NULL && env[0] != '\0' && str_fmt(path, sizeof(path), "%s/%s", env, name) > 0 &&
	    ctl_init_is_exec(path))
		return true;
	if (str_fmt(path, sizeof(path), "%s/%s", CASTOR_LIBEXECDIR, name) > 0 && ctl_init_is_exec(path))
		return true;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return false;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (slash == NULL)
		return false;
	*slash = '\0';
	if (str_fmt(path, sizeof(path), "%s/%s", self, name) > 0 && ctl_init_is_exec(path))
		return true;
	if (str_fmt(path, sizeof(path), "%s/../libexec/castor/%s", self, name) > 0 &&
	    ctl_init_is_exec(path))
		return true;
	for (i = 0; i < sizeof(siblings) / sizeof(siblings[0]); i++)
		if (str_fmt(path, sizeof(path), "%s/../%s/%s", self, siblings[i], name) > 0 &&
		    ctl_init_is_exec(path))
			return true;
	return false;
}

static int
ctl_init_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

/* Remove everything below root; the root itself too when remove_root. */
static void
ctl_init_cleanup(const char *root, bool remove_root)
{
	DIR *d;
	struct dirent *de;
	struct buf p = BUF_INIT;

	if (remove_root) {
		nftw(root, ctl_init_rm, 16, FTW_DEPTH | FTW_PHYS);
		return;
	}
	d = opendir(root);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (str_eq(de->d_name, ".") || str_eq(de->d_name, ".."))
			continue;
		buf_reset(&p);
		buf_printf(&p, "%s/%s", root, de->d_name);
		nftw(buf_cstr(&p), ctl_init_rm, 16, FTW_DEPTH | FTW_PHYS);
	}
	closedir(d);
	buf_free(&p);
}

/* "NAME=HOST:PORT" */
static int
ctl_init_parse_channel(const char *spec, struct ctl_channel *ch, struct err *err)
{
	const char *eq = strchr(spec, '=');
	struct netaddr a;
	size_t i, n;

	if (eq == NULL)
		return err_set(err, ERR_INVALID, "--channel %s: expected NAME=HOST:PORT", spec);
	n = (size_t)(eq - spec);
	if (n == 0 || n >= sizeof(ch->name))
		return err_set(err, ERR_INVALID, "--channel %s: the name must be 1-32 characters", spec);
	for (i = 0; i < n; i++)
		if (!((spec[i] >= 'a' && spec[i] <= 'z') || (spec[i] >= '0' && spec[i] <= '9')))
			return err_set(err, ERR_INVALID,
			    "--channel %s: the name may hold only a-z and 0-9 (it prefixes castor.conf keys)", spec);
	memcpy(ch->name, spec, n);
	ch->name[n] = '\0';
	if (netaddr_parse(eq + 1, &a, err) < 0) {
		err_prefix(err, "--channel %s", spec);
		return -1;
	}
	if (a.kind != NETADDR_TCP || a.host[0] == '\0')
		return err_set(err, ERR_INVALID, "--channel %s: the replica needs a host and a port", spec);
	str_lcpy(ch->host, a.host, sizeof(ch->host));
	ch->port = a.port;
	return 0;
}

/* "HOST:PORT" with brackets for IPv6 literals; checked by netaddr_parse. */
static int
ctl_init_listen(const char *host, unsigned port, char *out, size_t size, struct err *err)
{
	struct netaddr a;
	int rc;

	if (strchr(host, ':') != NULL && host[0] != '[')
		rc = str_fmt(out, size, "[%s]:%u", host, port);
	else
		rc = str_fmt(out, size, "%s:%u", host, port);
	if (rc < 0)
		return err_set(err, ERR_INVALID, "--listen %s: too long", host);
	if (netaddr_parse(out, &a, err) < 0 || a.kind != NETADDR_TCP) {
		err_prefix(err, "--listen %s", host);
		if (err != NULL && err->kind == ERR_NONE)
			err->kind = ERR_INVALID;
		return -1;
	}
	return 0;
}

static void
ctl_init_entry(struct buf *b, bool present, const char *prog, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
ctl_init_entry(struct buf *b, bool present, const char *prog, const char *fmt, ...)
{
	va_list ap;

	buf_puts(b, present ? "  " : "# ");
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
	if (!present)
		buf_printf(b, "    # %s is not built yet: uncomment when it is", prog);
	buf_putc(b, '\n');
}

static int
ctl_init_services(struct buf *b, const char *root, const char *role, const char *listen_host,
    unsigned base, const struct ctl_channel *chans, size_t nchan, struct err *err)
{
	static const struct {
		const char *name, *prog, *extra;
	} svcs[] = {
		{ "imap", "imapd", " prefork=1" },
		{ "pop3", "pop3d", " prefork=1" },
		{ "lmtp", "lmtpd", " prefork=1" },
		{ "syncd", "syncd", "" },
		{ "imaps", "imapd", " tls=yes prefork=1" },
	};
	char listen[300];
	bool have_client = ctl_init_find_prog("sync-client");
	size_t i;

	buf_printf(b,
	    "# services.conf for the server root %s (role %s), written by castorctl init.\n"
	    "# The processes castord runs, in the grammar of Cyrus's cyrus.conf (services.conf(5), docs/config.md).\n"
	    "# Entries whose program was not built when this file was written are commented out.\n"
	    "\n"
	    "START {\n", root, role);
	if (nchan > 0)
		ctl_init_entry(b, ctl_init_find_prog("castorctl"), "castorctl",
		    "peer_check cmd=\"castorctl -q peer-check\"");
	buf_puts(b, "}\n\nSERVICES {\n");
	for (i = 0; i < sizeof(svcs) / sizeof(svcs[0]); i++) {
		if (ctl_init_listen(listen_host, base + (unsigned)i, listen, sizeof(listen), err) < 0)
			return -1;
		ctl_init_entry(b, ctl_init_find_prog(svcs[i].prog), svcs[i].prog,
		    "%-6s cmd=\"%s\" listen=\"%s\"%s", svcs[i].name, svcs[i].prog, listen, svcs[i].extra);
	}
	/* Symmetric (failover engineer, docs/failover.md): master and replica
	 * get the same entries, so a failover flips the roles stored in
	 * users.db instead of rewriting files: a replica's sync-client idles
	 * until a promotion, its drain has nothing to do, and peer-check
	 * demotes an old master that finds a newer one on its peer. */
	buf_puts(b, "}\n\nEVENTS {\n");
	/* delete_hold_days: deleted mailboxes past the hold are purged nightly */
	ctl_init_entry(b, ctl_init_find_prog("castorctl"), "castorctl",
	    "purge_deleted cmd=\"castorctl -q purge-deleted --all\" at=0400");
	if (nchan > 0)
		ctl_init_entry(b, ctl_init_find_prog("castorctl"), "castorctl",
		    "peer_watch cmd=\"castorctl -q peer-check\" period=1");
	buf_puts(b, "}\n\nDAEMON {\n");
	for (i = 0; i < nchan; i++)
		ctl_init_entry(b, have_client, "sync-client", "sync_%-4s cmd=\"sync-client -r -n %s\"",
		    chans[i].name, chans[i].name);
	buf_puts(b, "}\n\nSHUTDOWN {\n");
	if (nchan > 0)
		ctl_init_entry(b, have_client, "sync-client", "drain  cmd=\"sync-client --drain\" timeout=120");
	buf_puts(b, "}\n");
	return 0;
}

/* ---- the run user (as root) ---- */

static uid_t ctl_init_chown_uid;
static gid_t ctl_init_chown_gid;

static int
ctl_init_chown_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return lchown(path, ctl_init_chown_uid, ctl_init_chown_gid) < 0 ? -1 : 0;
}

/* useradd --system NAME, home ROOT, no login shell, its own group. */
static int
ctl_init_useradd(const char *name, const char *home, struct err *err)
{
	const char *shell = access("/usr/sbin/nologin", X_OK) == 0 ? "/usr/sbin/nologin" : "/bin/false";
	int status;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return err_errno(err, ERR_TEMP, "fork");
	if (pid == 0) {
		execlp("useradd", "useradd", "--system", "--user-group", "--home-dir", home, "--no-create-home",
		    "--shell", shell, "--comment", "Castor mail server", name, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return err_errno(err, ERR_TEMP, "waitpid");
	if (getpwnam(name) != NULL)
		return 0;  /* made now, or by someone else meanwhile */
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return err_set(err, ERR_TEMP, "useradd not found: create the user %s yourself "
		    "(useradd --system --home-dir %s --shell %s %s) or give --user", name, home, shell, name);
	return err_set(err, ERR_TEMP, "useradd %s failed (status %d)", name,
	    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Can u read castor.conf and write db/ under root?  Checked by a child that
 * becomes u, so every parent directory's permissions count. */
static int
ctl_init_reachable(const struct priv_user *u, const char *root, struct err *err)
{
	char conf[PATH_MAX + 16], db[PATH_MAX + 16];
	int status;
	pid_t pid;

	str_fmt(conf, sizeof(conf), "%s/castor.conf", root);
	str_fmt(db, sizeof(db), "%s/db", root);
	pid = fork();
	if (pid < 0)
		return err_errno(err, ERR_TEMP, "fork");
	if (pid == 0)
		_exit(priv_switch(u, NULL) == 0 && access(conf, R_OK) == 0 && access(db, W_OK | X_OK) == 0 ? 0 : 1);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return err_errno(err, ERR_TEMP, "waitpid");
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	return err_set(err, ERR_PERM, "user %s cannot reach %s (a parent directory is not searchable by it): "
	    "choose a root it can reach, or --user", u->name, root);
}

/* Give everything under root to u, and check u can use it. */
static int
ctl_init_give(const struct priv_user *u, const char *root, struct err *err)
{
	ctl_init_chown_uid = u->uid;
	ctl_init_chown_gid = u->gid;
	if (nftw(root, ctl_init_chown_one, 16, FTW_PHYS) != 0)
		return err_errno(err, ERR_PERM, "chown -R %s %s", u->name, root);
	return ctl_init_reachable(u, root, err);
}

static void
ctl_init_castor_conf(struct buf *b, const char *servername, const char *role,
    const struct ctl_channel *chans, size_t nchan, const char *sync_pw, const char *run_user)
{
	char when[32] = "";
	time_t now = time(NULL);
	struct tm tm;
	size_t i;

	if (gmtime_r(&now, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	buf_printf(b,
	    "# castor.conf, written by castorctl init on %s.\n"
	    "# Settings are \"key: value\" lines; docs/config.md lists every key.\n"
	    "\n"
	    "servername: %s\n"
	    "# The role this server starts in; once the databases exist, the role and\n"
	    "# epoch stored in db/users.db win (failover changes them there).\n"
	    "role: %s\n"
	    "services_conf: services.conf\n"
	    "tls_cert_file: tls/cert.pem\n"
	    "tls_key_file: tls/key.pem\n"
	    "# Plaintext passwords (LOGIN, USER/PASS, AUTH PLAIN, the sync login) without\n"
	    "# TLS from this machine: handy for a demo, wrong behind a local proxy or\n"
	    "# port forward, which makes remote clients look local (docs/security.md).\n"
	    "allowplaintext_loopback: yes\n", when, servername, role);
	if (run_user != NULL)
		buf_printf(b, "\n# castord started as root runs every child as this user (docs/security.md).\n"
		    "run_user: %s\n", run_user);
	{
		const char *env = getenv("CASTOR_LIBEXECDIR");
		char abs[PATH_MAX];

		if (env != NULL && env[0] != '\0' && realpath(env, abs) != NULL)
			buf_printf(b, "\n# Where the service programs are ($CASTOR_LIBEXECDIR when init ran).\n"
			    "libexec_dir: %s\n", abs);
	}
	/* A replica checks the users.db sync_auth credential init creates; a master gets
	 * the password here, for the day a failover makes it a replica. */
	if (sync_pw != NULL && str_eq(role, "master"))
		buf_printf(b, "\n# The password a master's sync-client logs in with (authname %s),\n"
		    "# checked by this server's syncd while it is a replica.\nsync_password: %s\n",
		    CTL_SYNC_AUTHNAME, sync_pw);
	if (nchan == 0)
		return;
	buf_puts(b, "\n# Replication: the peers this server's sync log feeds while it is the master.\nsync_channels:");
	for (i = 0; i < nchan; i++)
		buf_printf(b, " %s", chans[i].name);
	buf_putc(b, '\n');
	for (i = 0; i < nchan; i++) {
		buf_printf(b, "%s_sync_host: %s\n%s_sync_port: %u\n%s_sync_authname: %s\n",
		    chans[i].name, chans[i].host, chans[i].name, chans[i].port, chans[i].name,
		    CTL_SYNC_AUTHNAME);
		if (sync_pw != NULL)
			buf_printf(b, "%s_sync_password: %s\n", chans[i].name, sync_pw);
	}
}

/* Is dir absent (0), an empty directory (1), or something else (-1, err)? */
static int
ctl_init_root_state(const char *root, struct err *err)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int empty = 1;

	if (stat(root, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return err_errno(err, ERR_PERM, "%s", root);
	}
	if (!S_ISDIR(st.st_mode))
		return err_set(err, ERR_EXISTS, "%s exists and is not a directory", root);
	d = opendir(root);
	if (d == NULL)
		return err_errno(err, ERR_PERM, "%s", root);
	while ((de = readdir(d)) != NULL)
		if (!str_eq(de->d_name, ".") && !str_eq(de->d_name, ".."))
			empty = 0;
	closedir(d);
	if (!empty)
		return err_set(err, ERR_EXISTS, "%s exists and is not empty: refusing to overwrite it", root);
	return 1;
}
/* What `castorctl init` was asked for, checked before the disk is touched. */
struct ctl_init_req {
	const char *root, *port_base, *role, *sync_pw_opt, *sync_pw_file;
	const char *listen_host, *servername, *user_opt, *run_user;
	char **chan_specs;
	struct ctl_channel *chans;
	size_t nchan;
	uint32_t base;
	struct buf pw;              /* the sync password, or empty */
	char host[256];             /* the servername when none was given */
	bool make_user;             /* the run user is to be created */
	struct priv_user ru;
};

/* The sync password: read, and refused when it begins or ends with blanks.
 * -1 with *rc_r the exit code when it is refused. */
static int
ctl_init_password(struct ctl *c, struct ctl_init_req *r, int *rc_r)
{
	struct buf *pw = &r->pw;
	struct err err;

	if (r->sync_pw_opt == NULL && r->sync_pw_file == NULL)
		return 0;
	if (ctl_read_password(r->sync_pw_opt, r->sync_pw_file, false, pw, &err) < 0) {
		err_prefix(&err, "sync password");
		*rc_r = ctl_fail(c, &err);
		return -1;
	}
	if (str_mem_has(pw->data, pw->len, '\n') || str_mem_has(pw->data, pw->len, '\r') ||
	    pw->data[0] == ' ' || pw->data[pw->len - 1] == ' ' || pw->data[0] == '\t' ||
	    pw->data[pw->len - 1] == '\t') {
		err_set(&err, ERR_INVALID, "the sync password must not begin or end with blanks");
		*rc_r = ctl_fail(c, &err);
		return -1;
	}
	return 0;
}

/* The --channel specs, each name once; -1 with *rc_r when one is wrong. */
static int
ctl_init_channels(struct ctl *c, struct ctl_init_req *r, int *rc_r)
{
	struct err err;
	size_t i, j;

	for (i = 0; r->chan_specs != NULL && r->chan_specs[i] != NULL; i++)
		r->nchan++;
	r->chans = xcalloc(r->nchan + 1, sizeof(*r->chans));
	for (i = 0; i < r->nchan; i++) {
		if (ctl_init_parse_channel(r->chan_specs[i], &r->chans[i], &err) < 0) {
			*rc_r = ctl_fail(c, &err);
			return -1;
		}
		for (j = 0; j < i; j++)
			if (str_eq(r->chans[j].name, r->chans[i].name)) {
				err_set(&err, ERR_INVALID, "--channel %s: channel %s given twice", r->chan_specs[i],
				    r->chans[i].name);
				*rc_r = ctl_fail(c, &err);
				return -1;
			}
	}
	return 0;
}

/* The run user: as root, --user or castor (made later if missing); not as
 * root, only oneself.  -1 with *rc_r when --user cannot be had. */
static int
ctl_init_run_user(struct ctl *c, struct ctl_init_req *r, int *rc_r)
{
	struct err err;

	if (geteuid() != 0) {
		if (r->user_opt != NULL &&
		    (priv_user_by_name(r->user_opt, &r->ru, &err) < 0 || r->ru.uid != geteuid())) {
			*rc_r = ctl_usage_error(c, "--user %s: only root can give a server root to another user",
			    r->user_opt);
			return -1;
		}
		r->run_user = r->user_opt;
		return 0;
	}
	r->run_user = r->user_opt != NULL ? r->user_opt : "castor";
	if (priv_user_by_name(r->run_user, &r->ru, &err) < 0) {
		if (r->user_opt != NULL) {
			*rc_r = ctl_fail(c, &err);
			return -1;
		}
		r->make_user = true;
	}
	return 0;
}

/* Every option checked, in the order they were always checked; -1 with
 * *rc_r the exit code at the first one that is wrong. */
static int
ctl_init_check(struct ctl *c, struct ctl_init_req *r, int *rc_r)
{
	char listen_check[300];
	struct err err;

	if (r->port_base == NULL) {
		*rc_r = ctl_usage_error(c, "init needs --port-base N (imap N, pop3 N+1, lmtp N+2, syncd N+3, imaps N+4)");
		return -1;
	}
	if (str_to_u32(r->port_base, &r->base) < 0 || r->base < 1 || r->base > 65531) {
		*rc_r = ctl_usage_error(c, "--port-base %s: expected a port from 1 to 65531", r->port_base);
		return -1;
	}
	if (!str_eq(r->role, "master") && !str_eq(r->role, "replica")) {
		*rc_r = ctl_usage_error(c, "--role %s: expected master or replica", r->role);
		return -1;
	}
	if (ctl_init_password(c, r, rc_r) < 0 || ctl_init_channels(c, r, rc_r) < 0)
		return -1;
	if (r->nchan > 0 && r->pw.len == 0) {
		*rc_r = ctl_usage_error(c, "--channel needs --sync-password-file F (or --sync-password PW)");
		return -1;
	}
	/* check the listen address before touching the disk */
	if (ctl_init_listen(r->listen_host, r->base, listen_check, sizeof(listen_check), &err) < 0) {
		*rc_r = ctl_fail(c, &err);
		return -1;
	}
	if (r->servername == NULL) {
		if (gethostname(r->host, sizeof(r->host)) < 0 || r->host[0] == '\0')
			str_lcpy(r->host, "localhost", sizeof(r->host));
		r->host[sizeof(r->host) - 1] = '\0';
		r->servername = r->host;
	} else if (r->servername[0] == '\0' || strpbrk(r->servername, " \t\r\n#") != NULL) {
		*rc_r = ctl_usage_error(c, "--servername %s: expected a host name", r->servername);
		return -1;
	}
	return ctl_init_run_user(c, r, rc_r);
}

/* The root directory: like initdb, missing parent directories are created
 * too, 0755 (searchable by the run user), the root itself 0750. */
static int
ctl_init_mkroot(const char *root, struct err *err)
{
	mode_t old = umask(022);
	int rc;

	rc = atomicfile_mkdir_p(root, 0755, err);
	umask(old);
	if (rc < 0 || chmod(root, 0750) < 0) {
		if (rc == 0)
			err_errno(err, ERR_PERM, "chmod %s", root);
		return -1;
	}
	return 0;
}

/* tls/ with a self-signed certificate for servername. */
static int
ctl_init_tls(const char *rootabs, const char *servername, struct err *err)
{
	struct buf cert = BUF_INIT, key = BUF_INIT;
	int rc = -1;

	buf_printf(&cert, "%s/tls", rootabs);
	if (atomicfile_mkdir_p(buf_cstr(&cert), 0755, err) < 0)
		goto out;
	buf_reset(&cert);
	buf_printf(&cert, "%s/tls/cert.pem", rootabs);
	buf_printf(&key, "%s/tls/key.pem", rootabs);
	rc = tls_make_selfsigned(buf_cstr(&cert), buf_cstr(&key), servername, err) < 0 ? -1 : 0;
out:
	buf_free(&cert);
	buf_free(&key);
	return rc;
}

/* castor.conf and services.conf, written and loaded back. */
static int
ctl_init_write_confs(const struct ctl_init_req *r, const char *rootabs, struct err *err)
{
	struct buf conf = BUF_INIT, svc = BUF_INIT, path = BUF_INIT, path2 = BUF_INIT;
	struct conf *check = NULL;
	struct servicesconf *scheck = NULL;
	int rc = -1;

	ctl_init_castor_conf(&conf, r->servername, r->role, r->chans, r->nchan,
	    r->pw.len ? buf_cstr(&r->pw) : NULL, r->run_user);
	buf_printf(&path, "%s/castor.conf", rootabs);
	if (atomicfile_write(buf_cstr(&path), conf.data, conf.len, r->pw.len ? 0600 : 0644, err) < 0)
		goto out;
	if (ctl_init_services(&svc, rootabs, r->role, r->listen_host, r->base, r->chans, r->nchan, err) < 0)
		goto out;
	buf_printf(&path2, "%s/services.conf", rootabs);
	if (atomicfile_write(buf_cstr(&path2), svc.data, svc.len, 0644, err) < 0)
		goto out;
	/* what we wrote must load */
	check = conf_load(buf_cstr(&path), err);
	if (check == NULL || servicesconf_load(buf_cstr(&path2), &scheck, err) < 0) {
		err_prefix(err, "internal error: castorctl init wrote a file that does not load");
		goto out;
	}
	rc = 0;
out:
	if (check != NULL)
		conf_free(check);
	if (scheck != NULL)
		servicesconf_free(scheck);
	buf_free(&conf);
	buf_free(&svc);
	buf_free(&path);
	buf_free(&path2);
	return rc;
}

/* Everything below the root, in the order the file comment lists it. */
static int
ctl_init_populate(const struct ctl_init_req *r, const char *rootabs, struct err *err)
{
	struct store *st;

	/* the databases: role and epoch live in users.db */
	if (store_create(rootabs, r->role, err) < 0 || ctl_init_tls(rootabs, r->servername, err) < 0 ||
	    ctl_init_write_confs(r, rootabs, err) < 0)
		return -1;
	/* a replica: the credential its master's channel logs in with
	 * (users.db sync_auth, not a mail user) */
	if (str_eq(r->role, "replica") && r->pw.len > 0) {
		st = store_open(rootabs, NULL, err);
		if (st == NULL)
			return -1;
		if (store_sync_auth_set(st, CTL_SYNC_AUTHNAME, buf_cstr(&r->pw), err) < 0) {
			store_close(&st);
			return -1;
		}
		store_close(&st);
	}
	/* last: the files become the run user's */
	if (geteuid() == 0 && r->ru.uid != 0 && ctl_init_give(&r->ru, rootabs, err) < 0)
		return -1;
	return 0;
}

/* What was made, and how to start it. */
static void
ctl_init_report(const struct ctl *c, const struct ctl_init_req *r, const char *rootabs)
{
	size_t i;

	if (c->quiet)
		return;
	printf("created server root %s (role %s, epoch 1)\n", rootabs, r->role);
	printf("  imap %s:%u  pop3 :%u  lmtp :%u  syncd :%u  imaps :%u\n", r->listen_host, r->base,
	    r->base + 1, r->base + 2, r->base + 3, r->base + 4);
	for (i = 0; i < r->nchan; i++)
		printf("  channel %s -> %s:%u\n", r->chans[i].name, r->chans[i].host, r->chans[i].port);
	if (geteuid() == 0 && r->ru.uid != 0)
		printf("  owned by user %s (run_user): castord started as root runs its children as %s\n",
		    r->ru.name, r->ru.name);
	printf("start it with: castord -C %s/castor.conf\n", rootabs);
}

/* The root (created, or an empty one), the run user, the files; on a
 * failure what init created is removed again. */
static int
ctl_init_create(struct ctl *c, struct ctl_init_req *r)
{
	char rootabs[PATH_MAX] = "";
	bool created = false;
	struct err err;
	int rc, state;

	state = ctl_init_root_state(r->root, &err);
	if (state < 0)
		return ctl_fail(c, &err);
	if (state == 0) {
		if (ctl_init_mkroot(r->root, &err) < 0)
			return ctl_fail(c, &err);
		created = true;
	}
	if (realpath(r->root, rootabs) == NULL) {
		err_errno(&err, ERR_PERM, "%s", r->root);
		goto fail;
	}
	if (r->make_user && (ctl_init_useradd(r->run_user, rootabs, &err) < 0 ||
	    priv_user_by_name(r->run_user, &r->ru, &err) < 0))
		goto fail;
	if (ctl_init_populate(r, rootabs, &err) < 0)
		goto fail;
	ctl_init_report(c, r, rootabs);
	return 0;
fail:
	rc = ctl_fail(c, &err);
	if (created)
		ctl_init_cleanup(r->root, true);
	else if (rootabs[0] != '\0')
		ctl_init_cleanup(rootabs, false);
	return rc;
}

int
ctl_cmd_init(struct ctl *c, int argc, char **argv)
{
	struct ctl_init_req r = {
		.role = "master", .listen_host = "127.0.0.1", .pw = BUF_INIT,
	};
	const struct ctl_opt opts[] = {
		{ "port-base", 'p', &r.port_base, NULL, NULL },
		{ "role", 'r', &r.role, NULL, NULL },
		{ "channel", 'c', NULL, &r.chan_specs, NULL },
		{ "sync-password", 0, &r.sync_pw_opt, NULL, NULL },
		{ "sync-password-file", 0, &r.sync_pw_file, NULL, NULL },
		{ "listen", 'l', &r.listen_host, NULL, NULL },
		{ "servername", 0, &r.servername, NULL, NULL },
		{ "user", 'u', &r.user_opt, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL;
	int npos = 0, rc;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl init ROOT --port-base N [--role master|replica]\n"
		    "           [--channel NAME=HOST:PORT ...] [--sync-password-file F | --sync-password PW]\n"
		    "           [--listen ADDR] [--servername NAME] [--user NAME]\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	if (npos != 1) {
		free(pos);
		ctl_list_free(r.chan_specs);
		return ctl_usage_error(c, "init ROOT --port-base N [--role master|replica] ...");
	}
	r.root = pos[0];
	free(pos);
	if (ctl_init_check(c, &r, &rc) == 0)
		rc = ctl_init_create(c, &r);
	ctl_list_free(r.chan_specs);
	priv_user_free(&r.ru);
	free(r.chans);
	ctl_wipe(&r.pw);
	return rc;
}
