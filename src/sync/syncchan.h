/*
 * syncchan.h - a replica channel's settings from castor.conf, and the
 * replica side's sync identity.
 *
 * Master side, per channel CHAN listed in `sync_channels`:
 *     CHAN_sync_host, CHAN_sync_port            (required)
 *     CHAN_sync_authname                        (default "sync")
 *     CHAN_sync_password | CHAN_sync_password_file (first line)
 *     CHAN_sync_tls        STARTTLS on the channel (default: yes unless the host is loopback)
 *     CHAN_sync_ca_file    verify the replica's certificate against this CA (default: no check)
 *     CHAN_sync_compress   zstd (default: yes unless the host is loopback)
 * Replica side (the account a master's channel logs in as):
 *     sync_authname        (default "sync")
 *     sync_password | sync_password_file: when absent, the credential of
 *                          `sync_authname` in db/users.db sync_auth is
 *                          checked (castorctl init --role replica
 *                          --sync-password or castorctl sync-password set
 *                          it; it is not a mail user).
 */
#ifndef CASTOR_SYNCCHAN_H
#define CASTOR_SYNCCHAN_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/conf.h"
#include "lib/err.h"
#include "sync/cursor.h"

struct syncchan {
	char name[CURSOR_CHANNEL_MAX + 1];
	char host[256];
	unsigned port;
	char authname[256];
	char *password;   /* malloc'd; NULL when none is configured */
	bool tls;
	bool compress;
	bool loopback;    /* host is a loopback address or "localhost" */
	char *ca_file;    /* malloc'd or NULL */
};

/* The channel names of `sync_channels` (conf_list_free()); *n_r the count. */
char **syncchan_names(const struct conf *conf, size_t *n_r);
/* Is name one of sync_channels? */
bool syncchan_listed(const struct conf *conf, const char *name);

/* Load channel `name`.  0, or -1 with ERR_INVALID naming the key. */
int syncchan_load(const struct conf *conf, const char *name, struct syncchan *ch, struct err *err);
void syncchan_free(struct syncchan *ch);

/* First line of a password file, trailing CR/LF removed (malloc'd). */
int syncchan_read_password_file(const char *path, char **pw_r, struct err *err);

/* Is this host name or address on this machine (127/8, ::1, localhost)? */
bool syncchan_host_is_loopback(const char *host);

#endif
