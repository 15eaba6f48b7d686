/*
 * syncchan.c - replica channel settings from castor.conf (syncchan.h).
 */
#include "sync/syncchan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/atomicfile.h"
#include "lib/str.h"
#include "lib/xalloc.h"

char **
syncchan_names(const struct conf *conf, size_t *n_r)
{
	return conf_get_list(conf, "sync_channels", n_r);
}

bool
syncchan_listed(const struct conf *conf, const char *name)
{
	size_t n = 0;
	char **names = syncchan_names(conf, &n);
	bool found = false;

	for (size_t i = 0; i < n && !found; i++)
		found = str_eq(names[i], name);
	conf_list_free(names);
	return found;
}

bool
syncchan_host_is_loopback(const char *host)
{
	return str_eq_ci(host, "localhost") || str_has_prefix(host, "127.") || str_eq(host, "::1") ||
		str_eq(host, "[::1]") || str_has_prefix(host, "::ffff:127.");
}

int
syncchan_read_password_file(const char *path, char **pw_r, struct err *err)
{
	char *data = NULL;
	size_t len = 0, n;

	*pw_r = NULL;
	if (atomicfile_read_all(path, 64 * 1024, &data, &len, err) < 0)
		return -1;
	n = strcspn(data, "\r\n");
	data[n] = '\0';
	if (n == 0) {
		free(data);
		return err_set(err, ERR_INVALID, "%s: the first line is empty", path);
	}
	*pw_r = data;
	return 0;
}

int
syncchan_load(const struct conf *conf, const char *name, struct syncchan *ch, struct err *err)
{
	char key[CURSOR_CHANNEL_MAX + 64];
	const char *s;
	int64_t port;
	char *path;

	memset(ch, 0, sizeof(*ch));
	if (!cursor_channel_valid(name))
		return err_set(err, ERR_INVALID, "sync_channels: bad channel name %s", name);
	if (!syncchan_listed(conf, name))
		return err_set(err, ERR_NOTFOUND, "no channel %s: it is not in sync_channels (%s)", name,
			conf_get_str(conf, "sync_channels", "none"));
	str_lcpy(ch->name, name, sizeof(ch->name));
	snprintf(key, sizeof(key), "%s_sync_host", name);
	s = conf_get_str(conf, key, NULL);
	if (s == NULL || s[0] == '\0')
		return err_set(err, ERR_INVALID, "channel %s: %s is missing", name, key);
	if (str_lcpy(ch->host, s, sizeof(ch->host)) >= sizeof(ch->host))
		return err_set(err, ERR_INVALID, "channel %s: %s is too long", name, key);
	snprintf(key, sizeof(key), "%s_sync_port", name);
	port = conf_get_int(conf, key, 0);
	if (port <= 0 || port > 65535)
		return err_set(err, ERR_INVALID, "channel %s: %s is missing or not a port", name, key);
	ch->port = (unsigned)port;
	snprintf(key, sizeof(key), "%s_sync_authname", name);
	str_lcpy(ch->authname, conf_get_str(conf, key, "sync"), sizeof(ch->authname));
	snprintf(key, sizeof(key), "%s_sync_password", name);
	s = conf_get_str(conf, key, NULL);
	if (s != NULL && s[0] != '\0') {
		ch->password = xstrdup(s);
	} else {
		snprintf(key, sizeof(key), "%s_sync_password_file", name);
		path = conf_get_path(conf, key, NULL);
		if (path != NULL) {
			int rc = syncchan_read_password_file(path, &ch->password, err);
			free(path);
			if (rc < 0) {
				err_prefix(err, "channel %s", name);
				return -1;
			}
		}
	}
	ch->loopback = syncchan_host_is_loopback(ch->host);
	snprintf(key, sizeof(key), "%s_sync_tls", name);
	ch->tls = conf_get_bool(conf, key, !ch->loopback);
	snprintf(key, sizeof(key), "%s_sync_compress", name);
	ch->compress = conf_get_bool(conf, key, !ch->loopback);
	snprintf(key, sizeof(key), "%s_sync_ca_file", name);
	ch->ca_file = conf_get_path(conf, key, NULL);
	return 0;
}

void
syncchan_free(struct syncchan *ch)
{
	if (ch->password != NULL) {
		explicit_bzero(ch->password, strlen(ch->password));
		free(ch->password);
	}
	free(ch->ca_file);
	memset(ch, 0, sizeof(*ch));
}
