/*
 * signals.c - signal handling through a self-pipe.  See signals.h.
 *
 * The handler is async-signal-safe: it stores to a sig_atomic_t and
 * write(2)s one byte, saving and restoring errno.  Everything else runs
 * in the main loop.
 */
#include "lib/signals.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef NSIG
#define NSIG 65
#endif

static int signals_pipe[2] = { -1, -1 };
static volatile sig_atomic_t signals_mark[NSIG];
static bool signals_caught[NSIG];

static void
signals_handler(int sig)
{
	int saved = errno;
	char c = (char)sig;
	ssize_t w;

	if (sig > 0 && sig < NSIG)
		signals_mark[sig] = 1;
	if (signals_pipe[1] >= 0)
		w = write(signals_pipe[1], &c, 1);  /* EAGAIN when full: a wakeup is pending anyway */
	(void)w;
	errno = saved;
}

int
signals_init(struct err *err)
{
	if (signals_pipe[0] >= 0)
		return 0;
	if (pipe2(signals_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		signals_pipe[0] = signals_pipe[1] = -1;
		return err_errno(err, ERR_TEMP, "signals: pipe");
	}
	return 0;
}

static int
signals_check(int sig, struct err *err)
{
	if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP)
		return err_set(err, ERR_INVALID, "signals: cannot handle signal %d", sig);
	return 0;
}

int
signals_catch(int sig, int flags, struct err *err)
{
	struct sigaction sa;

	if (signals_check(sig, err) < 0 || signals_init(err) < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = signals_handler;
	sigfillset(&sa.sa_mask);
	if (flags & SIGNALS_RESTART)
		sa.sa_flags |= SA_RESTART;
	if ((flags & SIGNALS_NOCLDSTOP) && sig == SIGCHLD)
		sa.sa_flags |= SA_NOCLDSTOP;
	if (sigaction(sig, &sa, NULL) < 0)
		return err_errno(err, ERR_TEMP, "signals: sigaction(%s)", signals_name(sig));
	signals_caught[sig] = true;
	return 0;
}

static int
signals_set(int sig, void (*disp)(int), struct err *err)
{
	struct sigaction sa;

	if (signals_check(sig, err) < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = disp;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) < 0)
		return err_errno(err, ERR_TEMP, "signals: sigaction(%s)", signals_name(sig));
	signals_caught[sig] = false;
	signals_mark[sig] = 0;
	return 0;
}

int
signals_ignore(int sig, struct err *err)
{
	return signals_set(sig, SIG_IGN, err);
}

int
signals_default(int sig, struct err *err)
{
	return signals_set(sig, SIG_DFL, err);
}

int
signals_fd(void)
{
	return signals_pipe[0];
}

bool
signals_poll(void)
{
	char drain[64];
	int sig;

	if (signals_pipe[0] >= 0) {
		while (read(signals_pipe[0], drain, sizeof(drain)) > 0)
			;
	}
	for (sig = 1; sig < NSIG; sig++)
		if (signals_mark[sig])
			return true;
	return false;
}

bool
signals_pending(int sig)
{
	return sig > 0 && sig < NSIG && signals_mark[sig] != 0;
}

bool
signals_take(int sig)
{
	if (sig <= 0 || sig >= NSIG || !signals_mark[sig])
		return false;
	signals_mark[sig] = 0;
	return true;
}

void
signals_raise(int sig)
{
	signals_handler(sig);
}

void
signals_reset_child(const int *also_default)
{
	struct sigaction sa;
	int sig;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (sig = 1; sig < NSIG; sig++) {
		if (signals_caught[sig]) {
			sigaction(sig, &sa, NULL);
			signals_caught[sig] = false;
		}
		signals_mark[sig] = 0;
	}
	for (; also_default != NULL && *also_default != 0; also_default++)
		sigaction(*also_default, &sa, NULL);
	if (signals_pipe[0] >= 0) {
		close(signals_pipe[0]);
		close(signals_pipe[1]);
		signals_pipe[0] = signals_pipe[1] = -1;
	}
}

const char *
signals_name(int sig)
{
	static char other[16];

	switch (sig) {
	case SIGHUP: return "SIGHUP";
	case SIGINT: return "SIGINT";
	case SIGQUIT: return "SIGQUIT";
	case SIGILL: return "SIGILL";
	case SIGTRAP: return "SIGTRAP";
	case SIGABRT: return "SIGABRT";
	case SIGBUS: return "SIGBUS";
	case SIGFPE: return "SIGFPE";
	case SIGKILL: return "SIGKILL";
	case SIGUSR1: return "SIGUSR1";
	case SIGSEGV: return "SIGSEGV";
	case SIGUSR2: return "SIGUSR2";
	case SIGPIPE: return "SIGPIPE";
	case SIGALRM: return "SIGALRM";
	case SIGTERM: return "SIGTERM";
	case SIGCHLD: return "SIGCHLD";
	case SIGCONT: return "SIGCONT";
	case SIGSTOP: return "SIGSTOP";
	case SIGTSTP: return "SIGTSTP";
	case SIGXCPU: return "SIGXCPU";
	case SIGXFSZ: return "SIGXFSZ";
	case SIGSYS: return "SIGSYS";
	default:
		snprintf(other, sizeof(other), "SIG%d", sig);
		return other;
	}
}
