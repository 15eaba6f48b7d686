/*
 * conf_keys.c - the table of known castor.conf keys: name, type, choices
 * (CONF_ENUM) and a one-line help that ends with the default.
 *
 * conf.c checks the value of every key listed here at load time and
 * warns about keys that are not listed.  A row named "*_suffix" matches
 * any "<prefix>_suffix" key (per-channel settings).  Append rows for new
 * keys (and the line in docs/config.md); keep the {NULL} terminator last.
 */
#include "lib/conf.h"

#include <stddef.h>

const struct conf_key conf_known_keys[] = {
	/* server and master */
	{ "servername", CONF_STRING, NULL, "this server's host name in greetings and Received: lines (default: the host name)" },
	{ "role", CONF_ENUM, "master|replica", "role this server starts in; the stored role and epoch win once set (default master)" },
	{ "master_name", CONF_STRING, NULL, "host name of the master, named in the replies a replica gives to writers (default none)" },
	{ "services_conf", CONF_PATH, NULL, "the process table castord runs (default services.conf beside castor.conf)" },
	{ "libexec_dir", CONF_PATH, NULL, "directory searched first for services.conf cmd= programs (default: none)" },
	{ "pidfile", CONF_PATH, NULL, "castord's pid file (default run/castord.pid)" },
	{ "log_level", CONF_ENUM, "debug|info|notice|warn|error", "lowest level logged (default info)" },
	{ "shutdown_timeout", CONF_DURATION, NULL, "graceful stop: time children get after SIGQUIT before SIGTERM (default 10s)" },
	{ "service_maxidle", CONF_DURATION, NULL, "idle service children beyond prefork exit after this long; 0 never (default 60s)" },
	{ "run_user", CONF_STRING, NULL, "user castord runs its children as when started as root; root only when named (default: the owner of the server root)" },

	/* store and delivery */
	{ "blob_inline_max", CONF_BYTES, NULL, "message bodies up to this size are kept inside the user database (default 64k)" },
	{ "blob_compress", CONF_BOOL, NULL, "zstd-compress the bodies kept inside the user database when that saves space (default yes)" },
	{ "maxmessagesize", CONF_BYTES, NULL, "largest message accepted by LMTP and APPEND; 0 = no limit (default 0)" },
	{ "quota_default_bytes", CONF_BYTES, NULL, "storage quota of a user without one of their own; 0 = none (default 0)" },
	{ "quota_default_messages", CONF_INT, NULL, "message-count quota of a user without one of their own; 0 = none (default 0)" },
	{ "duplicatesuppression", CONF_BOOL, NULL, "LMTP stores a Message-ID once per recipient mailbox (default yes)" },
	{ "duplicate_days", CONF_INT, NULL, "days a delivered Message-ID is remembered for duplicate suppression (default 3)" },
	{ "virtdomains", CONF_BOOL, NULL, "user@domain is its own user; when off the domain is dropped (default off)" },
	{ "delete_hold_days", CONF_INT, NULL, "days a deleted mailbox is held in deleted/ before purge (default 7)" },
	{ "autocreate_folders", CONF_LIST, NULL, "special-use folders created at first login (default Sent Drafts Trash Junk Archive)" },

	/* protocols and TLS */
	{ "allowplaintext", CONF_BOOL, NULL, "accept plaintext passwords on connections that are neither TLS nor loopback (default no)" },
	{ "allowplaintext_loopback", CONF_BOOL, NULL, "accept plaintext passwords from loopback and unix-socket peers without TLS (default no; castorctl init writes yes)" },
	{ "auth_penalty", CONF_BOOL, NULL, "space out password attempts per user and per client address across all processes (default yes)" },
	{ "auth_penalty_max", CONF_DURATION, NULL, "longest gap between two attempts on one user or address; a later turn is refused unchecked (default 15s)" },
	{ "auth_penalty_decay", CONF_DURATION, NULL, "a user's or address's failure count halves after this long without attempts (default 1min)" },
	{ "tls_cert_file", CONF_PATH, NULL, "PEM certificate (chain) for STARTTLS and implicit-TLS listeners (default tls/cert.pem)" },
	{ "tls_key_file", CONF_PATH, NULL, "PEM private key of tls_cert_file (default tls/key.pem)" },
	{ "tls_min_version", CONF_ENUM, "1.0|1.1|1.2|1.3|TLSv1|TLSv1.0|TLSv1.1|TLSv1.2|TLSv1.3", "lowest TLS version accepted (default 1.2)" },
	{ "tls_ciphers", CONF_STRING, NULL, "OpenSSL cipher list for TLS 1.2 and older (default: ECDHE/DHE with AES-GCM or ChaCha20-Poly1305)" },
	{ "tls_ciphersuites", CONF_STRING, NULL, "OpenSSL TLS 1.3 cipher suites (default: OpenSSL's)" },
	{ "tls_sni_dir", CONF_PATH, NULL, "directory of NAME.pem certificates served to clients asking for server name NAME (default none)" },
	{ "imap_idle_timeout", CONF_DURATION, NULL, "IMAP autologout of an authenticated idle session (default 30m)" },
	{ "imap_preauth_timeout", CONF_DURATION, NULL, "IMAP time allowed before login (default 60s)" },
	{ "imap_max_line", CONF_BYTES, NULL, "longest IMAP command line, and most octets of lines and literals in one command other than APPEND (default 64k)" },
	/* limits and deadlines (docs/security.md) */
	{ "preauth_max_line", CONF_BYTES, NULL, "longest command line or literal a client may send before login, IMAP and syncd (default 8k)" },
	{ "imap_command_timeout", CONF_DURATION, NULL, "IMAP: a command line with its literals must arrive within this, plus 1s per 64k of literal (default 5min)" },
	{ "pop3_preauth_timeout", CONF_DURATION, NULL, "POP3: deadline from the greeting to a successful login (default 60s)" },
	{ "pop3_command_timeout", CONF_DURATION, NULL, "POP3: a command line must arrive within this once it started (default 5min)" },
	{ "pop3_idle_timeout", CONF_DURATION, NULL, "POP3: autologout after this long without a command (default 10min)" },
	{ "lmtp_command_timeout", CONF_DURATION, NULL, "LMTP: a command line, or a DATA or BDAT body, must arrive within this (default 5min)" },
	{ "lmtp_idle_timeout", CONF_DURATION, NULL, "LMTP: close a session with no command for this long (default 5min)" },
	{ "sync_preauth_timeout", CONF_DURATION, NULL, "replica: syncd's deadline from the greeting to a successful AUTHENTICATE (default 60s)" },
	{ "sync_command_timeout", CONF_DURATION, NULL, "replica: a sync frame with its literals must arrive within this once it started (default 10min)" },

	/* replication */
	{ "sync_mode", CONF_ENUM, "async|semisync", "acknowledge after the local commit (async) or after a replica's too (default async)" },
	{ "sync_channels", CONF_LIST, NULL, "names of the replica channels fed from the sync log (default none)" },
	{ "*_sync_host", CONF_STRING, NULL, "channel's replica host (name or address) (required per channel)" },
	{ "*_sync_port", CONF_INT, NULL, "channel's replica syncd port (required per channel)" },
	{ "*_sync_authname", CONF_STRING, NULL, "user name the channel authenticates as (default sync)" },
	{ "*_sync_password", CONF_STRING, NULL, "channel's password (prefer *_sync_password_file)" },
	{ "*_sync_password_file", CONF_PATH, NULL, "file whose first line is the channel's password" },
	{ "*_sync_tls", CONF_BOOL, NULL, "TLS on the channel (default yes off loopback, no on loopback)" },
	{ "sync_log_segment_size", CONF_BYTES, NULL, "size at which the sync log starts a new segment (default 64M)" },
	{ "sync_log_max_bytes", CONF_BYTES, NULL, "a channel further behind than this is detached and recovers by anti-entropy (default 4G)" },
	{ "sync_async_wait", CONF_DURATION, NULL, "async: longest an answer waits for a replica when the client was idle anyway; 0 never (default 5ms)" },
	{ "sync_semisync_channels", CONF_LIST, NULL, "channels whose commit a semisync acknowledgement may wait for (default all)" },
	{ "sync_semisync_timeout", CONF_DURATION, NULL, "semisync: wait this long for a replica before degrading or refusing (default 2s)" },
	{ "sync_semisync_strict", CONF_BOOL, NULL, "semisync: refuse with a temporary error instead of degrading to async (default no)" },
	{ "sync_verify_interval", CONF_DURATION, NULL, "period of the anti-entropy pass (default 1h)" },
	{ "sync_heartbeat", CONF_DURATION, NULL, "master: an idle channel sends a heartbeat (NOOP) this often (default 2s)" },
	{ "sync_heartbeat_timeout", CONF_DURATION, NULL, "master: a replica silent this long is not live (status, semisync) and the channel is dropped (default 3 heartbeats)" },
	{ "sync_connect_timeout", CONF_DURATION, NULL, "master: TCP connect, and each read of the greeting and login (default 5s)" },
	{ "sync_timeout", CONF_DURATION, NULL, "master: the deadline of any answer the replica owes; then the channel is dropped (default 30s)" },
	{ "sync_idle_timeout", CONF_DURATION, NULL, "replica: syncd closes a session with no command for this long (default 5min)" },
	{ "sync_conflict", CONF_ENUM, "renumber|keep|replace", "split-brain policy for a UID naming different messages (default renumber)" },
	{ "sync_delete_limit", CONF_INT, NULL, "a sync pass deleting more mailboxes than this parks the users deleting them (default 50)" },
	{ "sync_delete_fraction", CONF_FLOAT, NULL, "a sync pass deleting more than this fraction of a user's mailboxes parks that user (default 0.5)" },
	{ "sync_delete_fraction_min", CONF_INT, NULL, "sync_delete_fraction applies only once a user loses more than this many mailboxes in a pass (default 4)" },
	{ "sync_user_delete_limit", CONF_INT, NULL, "more user deletions than this in a pass (or an hour, on the replica) park those users (default 5)" },
	{ "sync_park_retry", CONF_DURATION, NULL, "first retry of a parked user, doubling up to 1h (default 1min)" },
	{ "*_sync_compress", CONF_BOOL, NULL, "zstd compression on the channel (default yes off loopback, no on loopback)" },
	{ "*_sync_ca_file", CONF_PATH, NULL, "verify the replica's TLS certificate against this CA file (default: not verified)" },
	{ "sync_authname", CONF_STRING, NULL, "replica: the identity a master's sync-client must log in as (default sync)" },
	{ "sync_password", CONF_STRING, NULL, "replica: that identity's password (default: the credential set by castorctl sync-password, users.db sync_auth)" },
	{ "sync_password_file", CONF_PATH, NULL, "replica: file whose first line is that password" },

	{ NULL, CONF_STRING, NULL, NULL },
};
