/* SPDX-License-Identifier: MIT */
/*
 * The "exec" target: runs a command with CERTHERD_* variables naming the
 * certificate and its files, and reports its exit status. The child is
 * watched from the event loop without blocking it: a pidfd tells when it
 * exits (where there is no pidfd_open(), a short timer polls instead), a
 * pipe collects the tail of its stderr for the message, and a timer kills
 * its whole process group when it runs too long.
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

#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/target.h"
#include "certherd/util.h"

#define EXEC_TIMEOUT_DEFAULT 60
#define EXEC_STDERR_KEEP 4096   /* bytes of stderr kept, the newest */
#define EXEC_MESSAGE_TAIL 512   /* bytes of that shown in the message */
#define EXEC_READS_PER_WAKEUP 16
#define EXEC_POLL_USEC 100000   /* exit polling without pidfd */

extern char **environ;

struct exec_opts {
	char **command;
	int64_t timeout;
};

static const struct ch_conf_key exec_keys[] = {
	{ "command", CH_CONF_STRV, offsetof(struct exec_opts, command), true,
	  "a command as a list of arguments, e.g. [/usr/local/bin/hook, --reload]" },
	{ "timeout", CH_CONF_DURATION, offsetof(struct exec_opts, timeout), false,
	  "a duration such as 30s or 5m (default 60s)" },
	{ NULL },
};

/* One running command, from fork to done(). */
struct exec_run {
	ch_deploy_done_fn *done;
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
	char err_buf[EXEC_STDERR_KEEP];
	char message[2 * EXEC_MESSAGE_TAIL + 128];
};

/* The environment of the child, built before fork. */
struct exec_env {
	char *own[8];
	size_t n_own;
	char **envp; /* borrows environ's strings and own[] */
};

static int64_t
exec_timeout(const struct exec_opts *o)
{
	return o->timeout > 0 ? o->timeout : EXEC_TIMEOUT_DEFAULT;
}

static int
exec_check(const void *opts, struct ch_err *reterr)
{
	const struct exec_opts *o = opts;

	if (!o->command || !o->command[0])
		return ch_err_set(reterr, -EINVAL, "command is required");
	if (!o->command[0][0])
		return ch_err_set(reterr, -EINVAL, "command: the program name is empty");
	if (o->timeout < 0)
		return ch_err_set(reterr, -EINVAL, "timeout must not be negative");
	return 0;
}

static void
exec_env_clear(struct exec_env *e)
{
	for (size_t i = 0; i < e->n_own; i++)
		free(e->own[i]);
	free(e->envp);
	*e = (struct exec_env){ 0 };
}

static int
exec_env_add(struct exec_env *e, const char *name, const char *dir, const char *value)
{
	char *s;
	int n;

	if (!value)
		return 0;
	if (e->n_own >= ARRAY_SIZE(e->own))
		return -ENOBUFS;
	if (dir)
		n = asprintf(&s, "%s=%s/%s", name, dir, value);
	else
		n = asprintf(&s, "%s=%s", name, value);
	if (n < 0)
		return -ENOMEM;
	e->own[e->n_own++] = s;
	return 0;
}

/*
 * The daemon's environment without any CERTHERD_* variable, plus the
 * ones describing this deploy.
 */
static int
exec_env_build(struct exec_env *e, const char *target_name, const struct ch_deploy_item *item)
{
	const char *dir = item->dir;
	size_t n = 0, i = 0;
	int r = 0;

	r = r < 0 ? r : exec_env_add(e, "CERTHERD_NAME", NULL, item->cert_name);
	r = r < 0 ? r : exec_env_add(e, "CERTHERD_TARGET", NULL, target_name);
	r = r < 0 ? r : exec_env_add(e, "CERTHERD_SERIAL", NULL, item->serial);
	if (dir) {
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_DIR", NULL, dir);
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_CERT_FILE", dir, "cert.pem");
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_CHAIN_FILE", dir, "chain.pem");
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_FULLCHAIN_FILE", dir, "fullchain.pem");
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_KEY_FILE", dir, "key.pem");
	}
	if (r < 0)
		return r;

	while (environ && environ[n])
		n++;
	e->envp = calloc(n + e->n_own + 1, sizeof(char *));
	if (!e->envp)
		return -ENOMEM;
	for (size_t j = 0; j < n; j++)
		if (strncmp(environ[j], "CERTHERD_", 9) != 0)
			e->envp[i++] = environ[j];
	for (size_t j = 0; j < e->n_own; j++)
		e->envp[i++] = e->own[j];
	e->envp[i] = NULL;
	return 0;
}

/* Moves fd to a number >= 3 so the child's dup2() onto 0-2 cannot clash. */
static int
exec_fd_above_stdio(int fd)
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
exec_child_write(const char *s)
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
exec_child(char *const *argv, char *const *envp, int devnull, int errw)
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
	exec_child_write("cannot execute ");
	exec_child_write(argv[0]);
	exec_child_write(": ");
	exec_child_write(desc ? desc : "error");
	exec_child_write("\n");
	_exit(127);
}

/* Appends to the stderr tail, dropping the oldest bytes beyond the cap. */
static void
exec_keep(struct exec_run *run, const char *p, size_t n)
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
exec_drain_stderr(struct exec_run *run)
{
	char buf[4096];

	if (run->errfd < 0)
		return;
	for (int i = 0; i < EXEC_READS_PER_WAKEUP; i++) {
		ssize_t n = read(run->errfd, buf, sizeof(buf));

		if (n > 0) {
			exec_keep(run, buf, (size_t)n);
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
 * Formats the last line(s) of stderr, at most EXEC_MESSAGE_TAIL bytes of
 * it, as one line (lines joined by "; ") into buf. Returns its length.
 */
static size_t
exec_format_tail(const struct exec_run *run, char *buf, size_t len)
{
	const char *s = run->err_buf;
	size_t end = run->err_len, start = 0, off = 0;
	bool sep = false;

	if (len == 0)
		return 0;
	while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == '\r' || s[end - 1] == ' ' ||
			   s[end - 1] == '\t'))
		end--;
	if (end > EXEC_MESSAGE_TAIL) {
		start = end - EXEC_MESSAGE_TAIL;
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
exec_run_free(struct exec_run *run)
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
exec_finish(struct exec_run *run, int r)
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
	exec_run_free(run);
}

static void
exec_report(struct exec_run *run, const siginfo_t *si)
{
	char tail[2 * EXEC_MESSAGE_TAIL + 8];
	size_t tl = exec_format_tail(run, tail, sizeof(tail));
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
	exec_finish(run, r);
}

static void
exec_exit_cb(evutil_socket_t fd, short what, void *userdata)
{
	struct exec_run *run = userdata;
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
		exec_finish(run, r);
		return;
	}
	if (si.si_pid == 0)
		return; /* not exited yet */
	exec_drain_stderr(run);
	exec_report(run, &si);
}

static void
exec_stderr_cb(evutil_socket_t fd, short what, void *userdata)
{
	exec_drain_stderr(userdata);
}

static void
exec_timeout_cb(evutil_socket_t fd, short what, void *userdata)
{
	struct exec_run *run = userdata;

	/* The child is not reaped yet, so neither id can have been reused. */
	run->timed_out = true;
	(void)kill(-run->pid, SIGKILL);
	(void)kill(run->pid, SIGKILL);
}

/* Ends a child that will not be watched: kill and reap it. */
static void
exec_abandon(pid_t pid)
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
exec_spawn(char *const *argv, char *const *envp, pid_t *ret_pid, int *ret_errfd)
{
	int devnull = -1, pipefd[2] = { -1, -1 };
	sigset_t all, old;
	pid_t pid;
	int r;

	devnull = exec_fd_above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY));
	if (devnull < 0)
		return -errno;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	pipefd[0] = exec_fd_above_stdio(pipefd[0]);
	pipefd[1] = exec_fd_above_stdio(pipefd[1]);
	if (pipefd[0] < 0 || pipefd[1] < 0 || fcntl(pipefd[0], F_SETFL, O_NONBLOCK) < 0) {
		r = -errno;
		goto out;
	}

	/* No handler of ours may run in the child before it resets them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		exec_child(argv, envp, devnull, pipefd[1]);
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

static int
exec_deploy(const struct ch_target_env *env, const char *target_name, const void *opts,
	    const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	const struct exec_opts *o = opts;
	struct exec_env ce = { 0 };
	struct exec_run *run;
	struct timeval tv = { 0 }, poll = { 0, EXEC_POLL_USEC };
	int errfd = -1, r;
	pid_t pid = -1;

	if (!o->command || !o->command[0])
		return -EINVAL;

	r = exec_env_build(&ce, target_name, item);
	if (r >= 0)
		r = exec_spawn(o->command, ce.envp, &pid, &errfd);
	exec_env_clear(&ce);
	if (r < 0)
		return r;

	run = calloc(1, sizeof(*run));
	if (!run) {
		close(errfd);
		exec_abandon(pid);
		return -ENOMEM;
	}
	run->done = done;
	run->arg = arg;
	run->pid = pid;
	run->errfd = errfd;
	run->timeout = exec_timeout(o);
	run->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (run->pidfd < 0 && errno != ENOSYS && errno != EPERM) {
		r = -errno;
		goto fail;
	}
	if (run->pidfd >= 0)
		run->exit_ev = event_new(env->base, run->pidfd, EV_READ | EV_PERSIST, exec_exit_cb,
					 run);
	else
		run->exit_ev = event_new(env->base, -1, EV_PERSIST, exec_exit_cb, run);
	run->err_ev = event_new(env->base, run->errfd, EV_READ | EV_PERSIST, exec_stderr_cb, run);
	run->timer_ev = evtimer_new(env->base, exec_timeout_cb, run);
	tv.tv_sec = (time_t)run->timeout;
	if (!run->exit_ev || !run->err_ev || !run->timer_ev ||
	    event_add(run->exit_ev, run->pidfd >= 0 ? NULL : &poll) < 0 ||
	    event_add(run->err_ev, NULL) < 0 || evtimer_add(run->timer_ev, &tv) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	ch_log_debug("target %s: %s: started %s as pid %d", target_name, item->cert_name,
		     o->command[0], (int)pid);
	return 0;
fail:
	exec_abandon(pid);
	exec_run_free(run);
	return r;
}

const struct ch_target_ops ch_target_exec_ops = {
	.type = "exec",
	.keys = exec_keys,
	.opts_size = sizeof(struct exec_opts),
	.check = exec_check,
	.deploy = exec_deploy,
	.current = NULL,
};
