/* SPDX-License-Identifier: MIT */
/*
 * Commands watched from the event loop without blocking it (subproc.h):
 * a pidfd tells when the child exits (where there is no pidfd_open(), a
 * short timer polls instead), a pipe collects the tail of its stderr for
 * the message, and a timer kills its whole process group when it runs
 * too long.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "certherd/macro.h"
#include "certherd/subproc.h"

#define SUBPROC_STDERR_KEEP 4096 /* bytes of stderr kept, the newest */
#define SUBPROC_MESSAGE_TAIL 512 /* bytes of that shown in the message */
#define SUBPROC_READS_PER_WAKEUP 16
#define SUBPROC_POLL_USEC 100000 /* exit polling without pidfd */

extern char **environ;

/* One running command, from fork to done(). */
struct subproc_run {
	ch_subproc_done_fn *done;
	void *arg;
	pid_t pid;
	int pidfd; /* -1 when polling */
	int errfd;
	struct event *exit_ev;
	struct event *err_ev;
	struct event *timer_ev;
	int64_t timeout;
	bool timed_out;
	size_t err_len;
	char err_buf[SUBPROC_STDERR_KEEP];
	char message[2 * SUBPROC_MESSAGE_TAIL + 128];
};

/* Moves fd to a number >= 3 so the child's dup2() onto 0-2 cannot clash. */
static int
subproc_fd_above_stdio(int fd)
{
	int nfd, err;

	if (fd < 0 || fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	err = errno;
	close(fd);
	errno = err;
	return nfd;
}

static void
subproc_child_write(const char *s)
{
	size_t len = strlen(s);

	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/*
 * Runs in the forked child: only async-signal-safe calls, and it always
 * ends in exec or _exit.
 */
static _Noreturn void
subproc_child(char *const *argv, char *const *envp, int devnull, int errw)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	const char *desc;
	sigset_t none;
	int err;

	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &sa, NULL);
	if (setpgid(0, 0) < 0)
		_exit(127);
	if (dup2(devnull, STDIN_FILENO) < 0 || dup2(devnull, STDOUT_FILENO) < 0 ||
	    dup2(errw, STDERR_FILENO) < 0)
		_exit(127);
	if (close_range(3, ~0U, 0) < 0)
		for (int fd = 3; fd < 65536; fd++)
			(void)close(fd);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);

	execvpe(argv[0], argv, envp);

	err = errno;
	desc = strerrordesc_np(err);
	subproc_child_write("cannot execute ");
	subproc_child_write(argv[0]);
	subproc_child_write(": ");
	subproc_child_write(desc ? desc : "error");
	subproc_child_write("\n");
	_exit(127);
}

/* Appends to the stderr tail, dropping the oldest bytes beyond the cap. */
static void
subproc_keep(struct subproc_run *run, const char *p, size_t n)
{
	if (n >= sizeof(run->err_buf)) {
		memcpy(run->err_buf, p + n - sizeof(run->err_buf), sizeof(run->err_buf));
		run->err_len = sizeof(run->err_buf);
		return;
	}
	if (run->err_len + n > sizeof(run->err_buf)) {
		size_t drop = run->err_len + n - sizeof(run->err_buf);

		memmove(run->err_buf, run->err_buf + drop, run->err_len - drop);
		run->err_len -= drop;
	}
	memcpy(run->err_buf + run->err_len, p, n);
	run->err_len += n;
}

/* Reads what stderr holds now (bounded); closes it at EOF or error. */
static void
subproc_drain_stderr(struct subproc_run *run)
{
	char buf[4096];

	if (run->errfd < 0)
		return;
	for (int i = 0; i < SUBPROC_READS_PER_WAKEUP; i++) {
		ssize_t n = read(run->errfd, buf, sizeof(buf));

		if (n > 0) {
			subproc_keep(run, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (run->err_ev) {
			event_free(run->err_ev);
			run->err_ev = NULL;
		}
		close(run->errfd);
		run->errfd = -1;
		return;
	}
}

/*
 * Formats the last line(s) of stderr, at most SUBPROC_MESSAGE_TAIL bytes of
 * it, as one line (lines joined by "; ") into buf. Returns its length.
 */
static size_t
subproc_format_tail(const struct subproc_run *run, char *buf, size_t len)
{
	const char *s = run->err_buf;
	size_t end = run->err_len, start = 0, off = 0;
	bool sep = false;

	if (len == 0)
		return 0;
	while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == '\r' || s[end - 1] == ' ' ||
			   s[end - 1] == '\t'))
		end--;
	if (end > SUBPROC_MESSAGE_TAIL) {
		start = end - SUBPROC_MESSAGE_TAIL;
		/* Start at a line boundary when there is one in reach. */
		for (size_t i = start; s[start - 1] != '\n' && i < end; i++)
			if (s[i] == '\n') {
				start = i + 1;
				break;
			}
		/* Never start inside a UTF-8 sequence. */
		while (start < end && ((unsigned char)s[start] & 0xc0) == 0x80)
			start++;
	}
	for (size_t i = start; i < end && off + 3 < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\n' || c == '\r') {
			sep = off > 0;
			continue;
		}
		if (sep) {
			buf[off++] = ';';
			buf[off++] = ' ';
			sep = false;
			if (off + 3 >= len)
				break;
		}
		if (c == '\t')
			c = ' ';
		else if (c < 0x20 || c == 0x7f)
			c = '?';
		buf[off++] = (char)c;
	}
	buf[off] = '\0';
	return off;
}

static void
subproc_run_free(struct subproc_run *run)
{
	if (!run)
		return;
	if (run->exit_ev)
		event_free(run->exit_ev);
	if (run->err_ev)
		event_free(run->err_ev);
	if (run->timer_ev)
		event_free(run->timer_ev);
	if (run->pidfd >= 0)
		close(run->pidfd);
	if (run->errfd >= 0)
		close(run->errfd);
	free(run);
}

/* Frees every event and fd, calls done(), then frees the run. */
static void
subproc_finish(struct subproc_run *run, int r)
{
	if (run->exit_ev) {
		event_free(run->exit_ev);
		run->exit_ev = NULL;
	}
	if (run->err_ev) {
		event_free(run->err_ev);
		run->err_ev = NULL;
	}
	if (run->timer_ev) {
		event_free(run->timer_ev);
		run->timer_ev = NULL;
	}
	if (run->pidfd >= 0) {
		close(run->pidfd);
		run->pidfd = -1;
	}
	if (run->errfd >= 0) {
		close(run->errfd);
		run->errfd = -1;
	}
	run->done(r, run->message, run->arg);
	subproc_run_free(run);
}

static void
subproc_report(struct subproc_run *run, const siginfo_t *si)
{
	char tail[2 * SUBPROC_MESSAGE_TAIL + 8];
	size_t tl = subproc_format_tail(run, tail, sizeof(tail));
	const char *sep = tl ? ": " : "";
	int r;

	if (run->timed_out) {
		r = -ETIMEDOUT;
		snprintf(run->message, sizeof(run->message), "timed out after %" PRId64 "s%s%s",
			 run->timeout, sep, tail);
	} else if (si->si_code == CLD_EXITED && si->si_status == 0) {
		r = 0;
		snprintf(run->message, sizeof(run->message), "exited 0");
	} else if (si->si_code == CLD_EXITED) {
		r = -EIO;
		snprintf(run->message, sizeof(run->message), "exited %d%s%s", si->si_status, sep,
			 tail);
	} else {
		r = -EIO;
		snprintf(run->message, sizeof(run->message), "killed by signal %d%s%s",
			 si->si_status, sep, tail);
	}
	subproc_finish(run, r);
}

static void
subproc_exit_cb(evutil_socket_t fd, short what, void *userdata)
{
	struct subproc_run *run = userdata;
	siginfo_t si = { 0 };
	int r;

	for (;;) {
		r = -1;
		errno = EINVAL;
		if (run->pidfd >= 0)
			r = waitid(P_PIDFD, (id_t)run->pidfd, &si, WEXITED | WNOHANG);
		if (r < 0 && errno == EINVAL)
			/* Polling, or a kernel with pidfd_open but not P_PIDFD (5.3). */
			r = waitid(P_PID, (id_t)run->pid, &si, WEXITED | WNOHANG);
		if (r < 0 && errno == EINTR)
			continue;
		break;
	}
	if (r < 0) {
		r = -errno;
		snprintf(run->message, sizeof(run->message), "cannot wait for pid %d: %s",
			 (int)run->pid, strerror(-r));
		subproc_finish(run, r);
		return;
	}
	if (si.si_pid == 0)
		return; /* not exited yet */
	subproc_drain_stderr(run);
	subproc_report(run, &si);
}

static void
subproc_stderr_cb(evutil_socket_t fd, short what, void *userdata)
{
	subproc_drain_stderr(userdata);
}

static void
subproc_timeout_cb(evutil_socket_t fd, short what, void *userdata)
{
	struct subproc_run *run = userdata;

	/* The child is not reaped yet, so neither id can have been reused. */
	run->timed_out = true;
	(void)kill(-run->pid, SIGKILL);
	(void)kill(run->pid, SIGKILL);
}

/* Ends a child that will not be watched: kill and reap it. */
static void
subproc_abandon(pid_t pid)
{
	(void)kill(-pid, SIGKILL);
	(void)kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/*
 * Forks and execs argv with envp, stdin and stdout on /dev/null and
 * stderr into a pipe whose (non-blocking) read end goes to *ret_errfd.
 */
static int
subproc_spawn(char *const *argv, char *const *envp, pid_t *ret_pid, int *ret_errfd)
{
	int devnull = -1, pipefd[2] = { -1, -1 };
	sigset_t all, old;
	pid_t pid;
	int r;

	devnull = subproc_fd_above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY));
	if (devnull < 0)
		return -errno;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	pipefd[0] = subproc_fd_above_stdio(pipefd[0]);
	pipefd[1] = subproc_fd_above_stdio(pipefd[1]);
	if (pipefd[0] < 0 || pipefd[1] < 0 || fcntl(pipefd[0], F_SETFL, O_NONBLOCK) < 0) {
		r = -errno;
		goto out;
	}

	/* No handler of ours may run in the child before it resets them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		subproc_child(argv, envp, devnull, pipefd[1]);
	r = pid < 0 ? -errno : 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0)
		goto out;

	/* Also here, so the timeout can kill the group even before exec. */
	(void)setpgid(pid, pid);
	*ret_pid = pid;
	*ret_errfd = TAKE_FD(pipefd[0]);
out:
	if (devnull >= 0)
		close(devnull);
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	return r;
}


int
ch_subproc_run(struct event_base *base, char *const *argv, char *const *envp,
	       int64_t timeout_sec, ch_subproc_done_fn *done, void *arg)
{
	struct subproc_run *run;
	struct timeval tv = { 0 }, poll = { 0, SUBPROC_POLL_USEC };
	int errfd = -1, r;
	pid_t pid = -1;

	if (!argv || !argv[0] || timeout_sec <= 0)
		return -EINVAL;
	run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	r = subproc_spawn(argv, envp ? envp : environ, &pid, &errfd);
	if (r < 0) {
		free(run);
		return r;
	}
	run->done = done;
	run->arg = arg;
	run->pid = pid;
	run->errfd = errfd;
	run->timeout = timeout_sec;
	run->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (run->pidfd < 0 && errno != ENOSYS && errno != EPERM) {
		r = -errno;
		goto fail;
	}
	if (run->pidfd >= 0)
		run->exit_ev = event_new(base, run->pidfd, EV_READ | EV_PERSIST, subproc_exit_cb,
					 run);
	else
		run->exit_ev = event_new(base, -1, EV_PERSIST, subproc_exit_cb, run);
	run->err_ev = event_new(base, run->errfd, EV_READ | EV_PERSIST, subproc_stderr_cb, run);
	run->timer_ev = evtimer_new(base, subproc_timeout_cb, run);
	tv.tv_sec = (time_t)run->timeout;
	if (!run->exit_ev || !run->err_ev || !run->timer_ev ||
	    event_add(run->exit_ev, run->pidfd >= 0 ? NULL : &poll) < 0 ||
	    event_add(run->err_ev, NULL) < 0 || evtimer_add(run->timer_ev, &tv) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	return 0;
fail:
	subproc_abandon(pid);
	subproc_run_free(run);
	return r;
}
