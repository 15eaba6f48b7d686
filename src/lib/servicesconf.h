/*
 * servicesconf.h - services.conf: the process table castord runs, in the
 * grammar of Cyrus's cyrus.conf.
 *
 *     # comment
 *     START {
 *       recover   cmd="castorctl -C /srv/castor/castor.conf check --quick"
 *     }
 *     SERVICES {
 *       imap      cmd="imapd" listen="127.0.0.1:1143" prefork=2 maxchild=100
 *       imaps     cmd="imapd" listen="[::1]:1993" tls=yes
 *       lmtpunix  cmd="lmtpd" listen="/srv/castor/run/lmtp.sock"
 *     }
 *     EVENTS   { purge cmd="castorctl purge" at=0400   checkpoint cmd="..." period=30 }
 *     DAEMON   { syncr1 cmd="sync-client -r -n r1" }
 *     SHUTDOWN { drain cmd="sync-client --drain" timeout=120 }
 *
 * Sections are upper-case names followed by '{' ... '}'.  An entry is a
 * name ([A-Za-z0-9_-]+) followed by key=value pairs; a value is a bare
 * word or a double-quoted string (with \" and \\ escapes).  An entry ends
 * at the end of its line, as in cyrus.conf; several entries may share a
 * line (the one-line form shown for EVENTS above).  '#' starts a comment
 * outside quotes.
 *
 * Every syntax or value error rejects the whole file with
 * "FILE:LINE:COL: reason".  Checked: unknown section, unterminated
 * section or string, duplicate entry name (across the whole file),
 * unknown key for the section, missing cmd, SERVICES without listen,
 * EVENTS without period or at, non-numeric or out-of-range numbers,
 * at= not a valid HHMM, malformed listen address, tls= not a boolean.
 */
#ifndef CASTOR_LIB_SERVICESCONF_H
#define CASTOR_LIB_SERVICESCONF_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/err.h"

enum svc_section {
	SCONF_START = 0,
	SCONF_SERVICES,
	SCONF_EVENTS,
	SCONF_DAEMON,
	SCONF_SHUTDOWN,
};

/* The protocol a service speaks, for the refusal castord writes itself
 * (maxchild, maxperip).  AUTO: from the program's name (imapd, pop3d,
 * lmtpd, syncd); proto= in services.conf overrides it. */
enum svc_proto {
	SCONF_PROTO_AUTO = 0,
	SCONF_PROTO_NONE,
	SCONF_PROTO_IMAP,
	SCONF_PROTO_POP3,
	SCONF_PROTO_LMTP,
	SCONF_PROTO_SYNC,
};

struct servicesconf_entry {
	enum svc_section section;
	char *name;
	char *cmd;          /* as written */
	char **argv;        /* cmd split into words (shell-like quotes, no expansion), NULL-terminated */
	int argc;
	char *listen;       /* SERVICES: "host:port", "[v6]:port", "port" or "/unix/path"; else NULL */
	bool tls;           /* SERVICES: implicit TLS on this listener (tls=yes) */
	int prefork;        /* SERVICES: idle children kept ready (default 0) */
	int maxchild;       /* SERVICES: max concurrent children (default -1 = unlimited) */
	int maxforkrate;    /* SERVICES: forks per second (default 0 = unlimited) */
	int maxuse;         /* SERVICES: connections per child before it exits (default 250) */
	int maxperip;       /* SERVICES: connections at once from one address (default 0 = unlimited) */
	int maxidle;        /* SERVICES: seconds an idle child beyond prefork lives (-1 = castor.conf's) */
	enum svc_proto proto;  /* SERVICES: proto= (default AUTO) */
	int period;         /* EVENTS: minutes between runs (0 = none) */
	int at;             /* EVENTS: HHMM (0..2359) or -1 */
	int timeout;        /* START/SHUTDOWN/EVENTS: seconds before SIGTERM (default 60; 0 = none) */
	int line;           /* where it was defined */
};

struct servicesconf {
	struct servicesconf_entry *entries;  /* in file order */
	size_t n;
	char *filename;
};

const char *svc_section_name(enum svc_section s);
/* "imap", "pop3", "lmtp", "sync", "none"; SCONF_PROTO_AUTO for anything else. */
enum svc_proto servicesconf_proto_parse(const char *s);

/* 0 on success with *conf_r set; -1 with err "FILE:LINE:COL: reason". */
int servicesconf_load(const char *path, struct servicesconf **conf_r, struct err *err);
int servicesconf_parse(const char *text, size_t len, const char *name, struct servicesconf **conf_r, struct err *err);
void servicesconf_free(struct servicesconf *conf);
/* Find an entry by name, NULL if none. */
const struct servicesconf_entry *servicesconf_find(const struct servicesconf *conf, const char *name);

/* --- additions --- */

/* Split a command line into words as servicesconf does for cmd=: blanks (space,
 * tab) separate words; "..." groups (inside it \" and \\ are escapes,
 * any other backslash is literal); '...' groups literally; outside quotes
 * a backslash makes the next character literal.  No expansion of any
 * kind.  0 with a malloc'd NULL-terminated *argv_r (free with
 * servicesconf_argv_free) and *argc_r >= 1; -1 with err and *pos_r (if not
 * NULL) the byte offset of the problem (an unterminated quote, a trailing
 * backslash, or 0 for an empty command). */
int servicesconf_split_argv(const char *cmd, char ***argv_r, int *argc_r, size_t *pos_r, struct err *err);
void servicesconf_argv_free(char **argv);

#endif
