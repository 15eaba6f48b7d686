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

int
ctl_cmd_init(struct ctl *c, int argc, char **argv)
{
	const char *port_base = NULL, *role = "master", *sync_pw_opt = NULL, *sync_pw_file = NULL;
	const char *listen_host = "127.0.0.1", *servername = NULL, *user_opt = NULL, *run_user = NULL;
	char **chan_specs = NULL;
	const struct ctl_opt opts[] = {
		{ "port-base", 'p', &port_base, NULL, NULL },
		{ "role", 'r', &role, NULL, NULL },
		{ "channel", 'c', NULL, &chan_specs, NULL },
		{ "sync-password", 0, &sync_pw_opt, NULL, NULL },
		{ "sync-password-file", 0, &sync_pw_file, NULL, NULL },
		{ "listen", 'l', &listen_host, NULL, NULL },
		{ "servername", 0, &servername, NULL, NULL },
		{ "user", 'u', &user_opt, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	struct ctl_channel *chans = NULL;
	size_t nchan = 0, i, j;
	char **pos = NULL;
	int npos = 0, rc, state;
	uint32_t base;
	struct err err;
	struct buf conf = BUF_INIT, svc = BUF_INIT, path = BUF_INIT, path2 = BUF_INIT, pw = BUF_INIT;
	char host[256], listen_check[300], rootabs[PATH_MAX] = "";
	const char *root;
	bool created = false, make_user = false;
	struct priv_user ru = { 0 };
	struct store *st = NULL;
	struct conf *check = NULL;
	struct servicesconf *scheck = NULL;

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
		ctl_list_free(chan_specs);
		return ctl_usage_error(c, "init ROOT --port-base N [--role master|replica] ...");
	}
	root = pos[0];
	free(pos);
	rc = CTL_EXIT_USAGE;
	if (port_base == NULL) {
		rc = ctl_usage_error(c, "init needs --port-base N (imap N, pop3 N+1, lmtp N+2, syncd N+3, imaps N+4)");
		goto out;
	}
	if (str_to_u32(port_base, &base) < 0 || base < 1 || base > 65531) {
		rc = ctl_usage_error(c, "--port-base %s: expected a port from 1 to 65531", port_base);
		goto out;
	}
	if (!str_eq(role, "master") && !str_eq(role, "replica")) {
		rc = ctl_usage_error(c, "--role %s: expected master or replica", role);
		goto out;
	}
	if (sync_pw_opt != NULL || sync_pw_file != NULL) {
		if (ctl_read_password(sync_pw_opt, sync_pw_file, false, &pw, &err) < 0) {
			err_prefix(&err, "sync password");
			rc = ctl_fail(c, &err);
			goto out;
		}
		if (str_mem_has(pw.data, pw.len, '\n') || str_mem_has(pw.data, pw.len, '\r') ||
		    pw.data[0] == ' ' || pw.data[pw.len - 1] == ' ' || pw.data[0] == '\t' ||
		    pw.data[pw.len - 1] == '\t') {
			err_set(&err, ERR_INVALID, "the sync password must not begin or end with blanks");
			rc = ctl_fail(c, &err);
			goto out;
		}
	}
	for (i = 0; chan_specs != NULL && chan_specs[i] != NULL; i++)
		nchan++;
	chans = xcalloc(nchan + 1, sizeof(*chans));
	for (i = 0; i < nchan; i++) {
		if (ctl_init_parse_channel(chan_specs[i], &chans[i], &err) < 0) {
			rc = ctl_fail(c, &err);
			goto out;
		}
		for (j = 0; j < i; j++)
			if (str_eq(chans[j].name, chans[i].name)) {
				err_set(&err, ERR_INVALID, "--channel %s: channel %s given twice", chan_specs[i],
				    chans[i].name);
				rc = ctl_fail(c, &err);
				goto out;
			}
	}
	if (nchan > 0 && pw.len == 0) {
		rc = ctl_usage_error(c, "--channel needs --sync-password-file F (or --sync-password PW)");
		goto out;
	}
	/* check the listen address before touching the disk */
	if (ctl_init_listen(listen_host, base, listen_check, sizeof(listen_check), &err) < 0) {
		rc = ctl_fail(c, &err);
		goto out;
	}
	if (servername == NULL) {
		if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
			str_lcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		servername = host;
	} else if (servername[0] == '\0' || strpbrk(servername, " \t\r\n#") != NULL) {
		rc = ctl_usage_error(c, "--servername %s: expected a host name", servername);
		goto out;
	}

	/* the run user: as root, --user or castor (made below if missing) */
	if (geteuid() != 0) {
		if (user_opt != NULL && (priv_user_by_name(user_opt, &ru, &err) < 0 || ru.uid != geteuid())) {
			rc = ctl_usage_error(c, "--user %s: only root can give a server root to another user", user_opt);
			goto out;
		}
		run_user = user_opt;
	} else {
		run_user = user_opt != NULL ? user_opt : "castor";
		if (priv_user_by_name(run_user, &ru, &err) < 0) {
			if (user_opt != NULL) {
				rc = ctl_fail(c, &err);
				goto out;
			}
			make_user = true;
		}
	}

	state = ctl_init_root_state(root, &err);
	if (state < 0) {
		rc = ctl_fail(c, &err);
		goto out;
	}
	if (state == 0) {
		/* like initdb: missing parent directories are created too, 0755
		 * (searchable by the run user), the root itself 0750 */
		mode_t old = umask(022);

		rc = atomicfile_mkdir_p(root, 0755, &err);
		umask(old);
		if (rc < 0 || chmod(root, 0750) < 0) {
			if (rc == 0)
				err_errno(&err, ERR_PERM, "chmod %s", root);
			rc = ctl_fail(c, &err);
			goto out;
		}
		created = true;
	}
	if (realpath(root, rootabs) == NULL) {
		err_errno(&err, ERR_PERM, "%s", root);
		goto fail;
	}

	if (make_user && (ctl_init_useradd(run_user, rootabs, &err) < 0 ||
	    priv_user_by_name(run_user, &ru, &err) < 0))
		goto fail;

	/* the databases: role and epoch live in users.db */
	if (store_create(rootabs, role, &err) < 0)
		goto fail;
	/* certificate */
	buf_printf(&path, "%s/tls", rootabs);
	if (atomicfile_mkdir_p(buf_cstr(&path), 0755, &err) < 0)
		goto fail;
	buf_reset(&path);
	buf_printf(&path, "%s/tls/cert.pem", rootabs);
	buf_printf(&path2, "%s/tls/key.pem", rootabs);
	if (tls_make_selfsigned(buf_cstr(&path), buf_cstr(&path2), servername, &err) < 0)
		goto fail;
	/* castor.conf */
	ctl_init_castor_conf(&conf, servername, role, chans, nchan, pw.len ? buf_cstr(&pw) : NULL, run_user);
	buf_reset(&path);
	buf_printf(&path, "%s/castor.conf", rootabs);
	if (atomicfile_write(buf_cstr(&path), conf.data, conf.len, pw.len ? 0600 : 0644, &err) < 0)
		goto fail;
	/* services.conf */
	if (ctl_init_services(&svc, rootabs, role, listen_host, base, chans, nchan, &err) < 0)
		goto fail;
	buf_reset(&path2);
	buf_printf(&path2, "%s/services.conf", rootabs);
	if (atomicfile_write(buf_cstr(&path2), svc.data, svc.len, 0644, &err) < 0)
		goto fail;
	/* what we wrote must load */
	check = conf_load(buf_cstr(&path), &err);
	if (check == NULL || servicesconf_load(buf_cstr(&path2), &scheck, &err) < 0) {
		err_prefix(&err, "internal error: castorctl init wrote a file that does not load");
		goto fail;
	}
	/* a replica: the credential its master's channel logs in with
	 * (users.db sync_auth, not a mail user) */
	if (str_eq(role, "replica") && pw.len > 0) {
		st = store_open(rootabs, NULL, &err);
		if (st == NULL || store_sync_auth_set(st, CTL_SYNC_AUTHNAME, buf_cstr(&pw), &err) < 0)
			goto fail;
		store_close(&st);
	}
	/* last: the files become the run user's */
	if (geteuid() == 0 && ru.uid != 0 && ctl_init_give(&ru, rootabs, &err) < 0)
		goto fail;
	if (!c->quiet) {
		printf("created server root %s (role %s, epoch 1)\n", rootabs, role);
		printf("  imap %s:%u  pop3 :%u  lmtp :%u  syncd :%u  imaps :%u\n", listen_host, base,
		    base + 1, base + 2, base + 3, base + 4);
		for (i = 0; i < nchan; i++)
			printf("  channel %s -> %s:%u\n", chans[i].name, chans[i].host, chans[i].port);
		if (geteuid() == 0 && ru.uid != 0)
			printf("  owned by user %s (run_user): castord started as root runs its children as %s\n",
			    ru.name, ru.name);
		printf("start it with: castord -C %s/castor.conf\n", rootabs);
	}
	rc = 0;
	goto out;
fail:
	if (st != NULL)
		store_close(&st);
	rc = ctl_fail(c, &err);
	if (created)
		ctl_init_cleanup(root, true);
	else if (rootabs[0] != '\0')
		ctl_init_cleanup(rootabs, false);
out:
	if (check != NULL)
		conf_free(check);
	if (scheck != NULL)
		servicesconf_free(scheck);
	ctl_list_free(chan_specs);
	priv_user_free(&ru);
	free(chans);
	buf_free(&conf);
	buf_free(&svc);
	buf_free(&path);
	buf_free(&path2);
	ctl_wipe(&pw);
	return rc;
}
