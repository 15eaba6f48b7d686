/*
 * log.h - logging with key=value fields.
 *
 * Messages are written as one line: a short event phrase followed by
 * key=value fields, e.g.
 *     log_info("delivered user=%s mailbox=%s uid=%u", user, mbox, uid);
 * Values containing spaces should be quoted by the caller (log_q()).
 * Destination is stderr (default, with timestamp, service and pid) or
 * syslog (facility mail).  The service name is set once per process.
 */
#ifndef CASTOR_LOG_H
#define CASTOR_LOG_H

#include <stdarg.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_NOTICE, LOG_LVL_WARN, LOG_LVL_ERROR, LOG_LVL_FATAL };

enum log_dest { LOG_DEST_STDERR = 0, LOG_DEST_SYSLOG };

void log_init(const char *service, enum log_dest dest);
void log_set_service(const char *service);
const char *log_service(void);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "debug|info|notice|warn|error"; -1 when unknown. */
int log_level_parse(const char *s);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

/* Log at FATAL and exit(code).  Only for start-up errors in main programs,
 * never inside library code. */
void log_fatal(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Quote a value for a key=value field when it needs it; returns a pointer
 * into one of a few rotating static buffers (truncates at 200 bytes). */
const char *log_q(const char *value);

#endif
