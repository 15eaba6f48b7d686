/*
 * ctl_util.c - castorctl helpers shared by the command files: reading a
 * password (option, file or terminal with echo off) and the progress
 * line of long commands.  See ctl.h.
 */
#include "ctl/ctl.h"

#include "lib/clock.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CTL_PASSWORD_MAX 1024

void
ctl_wipe(struct buf *b)
{
	if (b->data != NULL)
		explicit_bzero(b->data, b->cap);
	buf_free(b);
}

/* Read the first line of fd into out (without CR/LF), at most
 * CTL_PASSWORD_MAX bytes. */
static int
ctl_read_line(int fd, const char *what, struct buf *out, struct err *err)
{
	char c;

	buf_reset(out);
	for (;;) {
		ssize_t n = read(fd, &c, 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return err_errno(err, ERR_TEMP, "read %s", what);
		}
		if (n == 0 || c == '\n')
			break;
		if (out->len >= CTL_PASSWORD_MAX)
			return err_set(err, ERR_INVALID, "password in %s is longer than %d bytes", what,
			    CTL_PASSWORD_MAX);
		buf_putc(out, c);
	}
	if (out->len > 0 && out->data[out->len - 1] == '\r')
		buf_truncate(out, out->len - 1);
	return 0;
}

static int
ctl_prompt(const char *prompt, struct buf *out, struct err *err)
{
	struct termios old, noecho;
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return err_errno(err, ERR_INVALID, "no password given and no terminal to ask on");
	if (tcgetattr(fd, &old) < 0) {
		close(fd);
		return err_errno(err, ERR_INVALID, "no password given and no terminal to ask on");
	}
	noecho = old;
	noecho.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	noecho.c_lflag |= ICANON;
	/* echo off before the prompt: what is typed after the prompt is never shown */
	tcsetattr(fd, TCSAFLUSH, &noecho);
	if (write(fd, prompt, strlen(prompt)) < 0)
		(void)0;
	rc = ctl_read_line(fd, "the terminal", out, err);
	tcsetattr(fd, TCSANOW, &old);
	if (write(fd, "\n", 1) < 0)
		(void)0;
	close(fd);
	return rc;
}

int
ctl_read_password(const char *pw, const char *file, bool confirm, struct buf *out, struct err *err)
{
	buf_reset(out);
	if (pw != NULL && file != NULL)
		return err_set(err, ERR_INVALID, "give either --password or --password-file, not both");
	if (pw != NULL) {
		buf_puts(out, pw);
	} else if (file != NULL) {
		int fd = str_eq(file, "-") ? 0 : open(file, O_RDONLY | O_CLOEXEC);
		int rc;

		if (fd < 0)
			return err_errno(err, errno == ENOENT ? ERR_NOTFOUND : ERR_PERM, "password file %s", file);
		rc = ctl_read_line(fd, file, out, err);
		if (fd != 0)
			close(fd);
		if (rc < 0)
			return -1;
	} else {
		struct buf again = BUF_INIT;

		if (!isatty(0))
			return err_set(err, ERR_INVALID,
			    "no password given: use --password-file FILE (or --password PW, or run on a terminal)");
		if (ctl_prompt("Password: ", out, err) < 0)
			return -1;
		if (confirm) {
			if (ctl_prompt("Again: ", &again, err) < 0) {
				ctl_wipe(&again);
				return -1;
			}
			if (again.len != out->len || (out->len && memcmp(again.data, out->data, out->len) != 0)) {
				ctl_wipe(&again);
				return err_set(err, ERR_INVALID, "the passwords do not match");
			}
			ctl_wipe(&again);
		}
	}
	if (out->len == 0)
		return err_set(err, ERR_INVALID, "empty password");
	if (str_mem_has(out->data, out->len, '\0'))
		return err_set(err, ERR_INVALID, "password contains a NUL byte");
	return 0;
}

double
ctl_now(void)
{
	return clock_mono_s();
}

void
ctl_progress_init(struct ctl_progress *p, bool enabled)
{
	p->start = p->last = ctl_now();
	p->tty = isatty(2);
	p->shown = false;
	p->enabled = enabled;
}

void
ctl_progress(struct ctl_progress *p, bool force, const char *fmt, ...)
{
	double now;
	va_list ap;

	if (!p->enabled)
		return;
	now = ctl_now();
	if (!force && now - p->last < 1.0)
		return;
	p->last = now;
	if (p->tty)
		fputs("\r\033[K", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (!p->tty)
		fputc('\n', stderr);
	fflush(stderr);
	p->shown = true;
}

void
ctl_progress_done(struct ctl_progress *p)
{
	if (p->enabled && p->shown && p->tty) {
		fputc('\n', stderr);
		fflush(stderr);
	}
}

int
ctl_users_arg(struct ctl *c, bool all, char **pos, int npos, const char *usage, char ***users_r)
{
	struct err err;
	char **users;
	int rc;

	if ((all && npos != 0) || (!all && npos != 1)) {
		free(pos);
		return ctl_usage_error(c, "%s", usage);
	}
	if (!all && ctl_check_user_name(pos[0], &err) < 0) {
		free(pos);
		return ctl_fail(c, &err);
	}
	if ((rc = ctl_open_store(c)) != 0) {
		free(pos);
		return rc;
	}
	if (all) {
		if (ctl_all_users(c, &users, &err) < 0) {
			free(pos);
			return ctl_fail(c, &err);
		}
	} else {
		users = xcalloc(2, sizeof(char *));
		users[0] = xstrdup(pos[0]);
	}
	free(pos);
	*users_r = users;
	return 0;
}
