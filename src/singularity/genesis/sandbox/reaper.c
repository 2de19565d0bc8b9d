/* The sandbox's native helper: its PID 1 (the reaper) and, for a root worker, its stager.
 *
 * Built once per worker by `native.py` with the host's C compiler; without one the worker uses
 * `reaper.py` and the util-linux chain (unshare, sh, mount, setpriv, prlimit) instead, with the
 * same arguments and report: the two must stay alike (read reaper.py's docstring first).
 *
 *   reaper SCOPE REPORT_FD CONTROL_FD CPU_S AS_BYTES NPROC FSIZE NOFILE
 *          --step IN OUT ERR EXTRA COUNT WORD... [--step ...]
 *     PID 1 of the sandbox: runs each step in turn under the rlimits (EXTRA, unless -1, is the
 *     program's descriptor 3), kills and reaps its whole tree, reports "pid K N" and
 *     "end K exit|signal CODE USER_S SYS_S MAX_RSS_KB STOPPED"; the first step that does not
 *     exit 0 is the last.
 *   reaper stage UID GID NPROC [-t OPTIONS ENTRY | SOURCE ENTRY]... -- PROGRAM ARG...
 *     As root, in a private mount namespace of its own: mounts each sized tmpfs and binds each
 *     source on its entry (what bubblewrap, mounting as the sandbox's uid, cannot), caps the
 *     uid's processes, drops to UID and GID with no supplementary groups, executes PROGRAM.
 *   reaper probe
 *     Says "reaper ok" (the worker's check that the build runs here).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct usage {
    double user, system;
    long max_rss;
};

static int wake[2];

static void on_child(int signum) {
    int saved = errno;
    (void)signum;
    if (write(wake[1], "c", 1) < 0) { /* full: a wake-up is pending anyway */
    }
    errno = saved;
}

static long number(const char *text) {
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0) _exit(125);
    return (long)value;
}

static void say(int fd, const char *line) {
    size_t left = strlen(line);
    while (left > 0) {
        ssize_t done = write(fd, line, left);
        if (done < 0) {
            if (errno == EINTR) continue;
            return;
        }
        line += done;
        left -= (size_t)done;
    }
}

static void add(struct usage *usage, const struct rusage *found) {
    usage->user += (double)found->ru_utime.tv_sec + (double)found->ru_utime.tv_usec / 1e6;
    usage->system += (double)found->ru_stime.tv_sec + (double)found->ru_stime.tv_usec / 1e6;
    if (found->ru_maxrss > usage->max_rss) usage->max_rss = found->ru_maxrss;
}

/* Reap every child that has exited; sets *status once the step's program is among them. */
static void reap_ready(pid_t pid, int *status, int *have, struct usage *usage) {
    for (;;) {
        struct rusage found;
        int wstatus;
        pid_t child = wait4(-1, &wstatus, WNOHANG, &found);
        if (child <= 0) return;
        add(usage, &found);
        if (child == pid) {
            *status = wstatus;
            *have = 1;
        }
    }
}

static void set_limit(int which, rlim_t soft, rlim_t hard) {
    struct rlimit limit = {soft, hard};
    if (setrlimit(which, &limit) != 0) _exit(126);
}

static void become_program(char **argv, const long *fds, const long *numbers, int group) {
    sigset_t none;
    if (group) setpgid(0, 0);
    /* What the reaper ignores would stay ignored across exec: every default comes back. */
    for (int signum = 1; signum < NSIG; signum++) signal(signum, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int stdin_fd = fds[0] >= 0 ? (int)fds[0] : open("/dev/null", O_RDONLY);
    if (stdin_fd < 0 || dup2(stdin_fd, 0) < 0 || dup2((int)fds[1], 1) < 0 ||
        dup2((int)fds[2], 2) < 0 || (fds[3] >= 0 && dup2((int)fds[3], 3) < 0))
        _exit(126);
    unsigned first = fds[3] >= 0 ? 4U : 3U; /* the step's own descriptor 3 stays */
    if (syscall(SYS_close_range, first, ~0U, 0U) != 0)
        for (int fd = (int)first; fd < 65536; fd++) close(fd);
    set_limit(RLIMIT_CPU, (rlim_t)numbers[0], (rlim_t)numbers[0] + 1); /* SIGXCPU, then KILL */
    const int limits[] = {RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_NOFILE};
    for (int index = 0; index < 4; index++)
        if (numbers[index + 1] > 0) /* 0: not limited (the unsafe mode's process count) */
            set_limit(limits[index], (rlim_t)numbers[index + 1], (rlim_t)numbers[index + 1]);
    set_limit(RLIMIT_CORE, 0, 0);
    execvp(argv[0], argv);
    int failed = errno;
    char line[512];
    snprintf(line, sizeof line, "sandbox: cannot execute %s: %s\n", argv[0], strerror(failed));
    say(2, line);
    _exit(failed == ENOENT ? 127 : 126);
}

/* Wait until the step's program exits (1) or the host asks to stop (0). */
static int watch(pid_t pid, int control, int *status, int *have, struct usage *usage) {
    struct pollfd fds[2] = {{wake[0], POLLIN, 0}, {control, POLLIN, 0}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        if (fds[1].revents) {
            reap_ready(pid, status, have, usage);
            return 0;
        }
        char drain[512];
        while (read(wake[0], drain, sizeof drain) > 0) {
        }
        reap_ready(pid, status, have, usage);
        if (*have) return 1;
    }
}

/* Kill what is left of the step's tree and reap it all. */
static void kill_tree(int group, pid_t pid, int *status, int *have, struct usage *usage) {
    const struct timespec pause = {0, 1000000};
    for (int round = 0; round < 1000; round++) {
        int gone = group ? killpg(pid, SIGKILL) : kill(-1, SIGKILL);
        if (gone != 0 && errno == ESRCH) break;
        reap_ready(pid, status, have, usage);
        nanosleep(&pause, NULL);
    }
    while (!*have) {
        struct rusage found;
        int wstatus;
        pid_t child = wait4(-1, &wstatus, 0, &found);
        if (child < 0) {
            if (errno == EINTR) continue;
            break;
        }
        add(usage, &found);
        if (child == pid) {
            *status = wstatus;
            *have = 1;
        }
    }
    reap_ready(pid, status, have, usage);
}

static int reaper(int argc, char **argv) {
    int group = argc > 1 && strcmp(argv[1], "group") == 0;
    if (!group && getpid() != 1) {
        /* Before anything else: its last act kills every process it may signal, which only a
         * namespace's init may do (on a host, as root, that would be every process there). */
        say(2, "sandbox: the reaper must be PID 1 of its own PID namespace\n");
        return 125;
    }
    if (argc < 9) return 125;
    int report = (int)number(argv[2]), control = (int)number(argv[3]);
    long numbers[5];
    for (int index = 0; index < 5; index++) numbers[index] = number(argv[4 + index]);
    /* Not dumpable: the program (same uid) can neither ptrace this process nor open its
     * /proc/1/fd, so it cannot forge the report or fork from here. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return 125;
    for (int signum = 1; signum < NSIG; signum++)
        if (signum != SIGKILL && signum != SIGSTOP && signum != SIGCHLD) signal(signum, SIG_IGN);
    /* The tree's process limit holds here too: this process forks once per step. */
    if (numbers[2] > 0) set_limit(RLIMIT_NPROC, (rlim_t)numbers[2], (rlim_t)numbers[2]);
    if (pipe2(wake, O_NONBLOCK | O_CLOEXEC) != 0) return 125;
    struct sigaction child = {0};
    child.sa_handler = on_child;
    child.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &child, NULL);

    int code = 0, index = 0;
    for (int at = 9; at < argc; index++) {
        if (strcmp(argv[at], "--step") != 0 || at + 6 > argc) return 125;
        long fds[4];
        for (int which = 0; which < 4; which++) fds[which] = number(argv[at + 1 + which]);
        int count = (int)number(argv[at + 5]);
        if (count < 1 || at + 6 + count > argc) return 125;
        char **command = calloc((size_t)count + 1, sizeof *command);
        if (command == NULL) return 125;
        memcpy(command, argv + at + 6, (size_t)count * sizeof *command);
        at += 6 + count;

        struct usage usage = {0, 0, 0};
        int status = 0, have = 0;
        char line[160];
        pid_t pid = fork();
        if (pid < 0) return 125;
        if (pid == 0) become_program(command, fds, numbers, group);
        free(command);
        snprintf(line, sizeof line, "pid %d %d\n", index, (int)pid);
        say(report, line);
        int stopped = !watch(pid, control, &status, &have, &usage);
        kill_tree(group, pid, &status, &have, &usage);
        /* The step's streams end with it: the host reads them to their EOF at once. */
        for (int which = 0; which < 4; which++)
            if (fds[which] > 2) close((int)fds[which]);
        if (!have) status = SIGKILL; /* a raw wait status: killed by SIGKILL */
        int signaled = WIFSIGNALED(status);
        code = signaled ? WTERMSIG(status) : WEXITSTATUS(status);
        snprintf(line, sizeof line, "end %d %s %d %.6f %.6f %ld %d\n", index,
                 signaled ? "signal" : "exit", code, usage.user, usage.system, usage.max_rss,
                 stopped);
        say(report, line);
        if (stopped || signaled || code != 0) return signaled ? 128 + code : code;
    }
    return code;
}

static void fail(const char *what, const char *where) {
    char line[512];
    snprintf(line, sizeof line, "%s: %s: %s\n", what, where, strerror(errno));
    say(2, line);
    _exit(125);
}

static int stage(int argc, char **argv) {
    if (argc < 6) return 125;
    uid_t uid = (uid_t)number(argv[2]);
    gid_t gid = (gid_t)number(argv[3]);
    rlim_t nproc = (rlim_t)number(argv[4]);
    if (uid == 0 || gid == 0) return 125; /* never hands a sandbox to root */
    if (unshare(CLONE_NEWNS) != 0) fail("unshare", "--mount");
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) fail("mount", "/");
    int at = 5;
    while (at < argc && strcmp(argv[at], "--") != 0) {
        if (strcmp(argv[at], "-t") == 0 && at + 2 < argc) {
            if (mount("tmpfs", argv[at + 2], "tmpfs", MS_NOSUID | MS_NODEV, argv[at + 1]) != 0)
                fail("mount", argv[at + 2]);
            at += 3;
        } else if (at + 1 < argc) {
            if (mount(argv[at], argv[at + 1], NULL, MS_BIND, NULL) != 0) fail("mount", argv[at]);
            at += 2;
        } else {
            return 125;
        }
    }
    if (at + 1 >= argc) return 125;
    set_limit(RLIMIT_NPROC, nproc, nproc);
    if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0)
        fail("setpriv", argv[2]);
    execv(argv[at + 1], argv + at + 1);
    fail("exec", argv[at + 1]);
    return 125;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "probe") == 0) {
        say(1, "reaper ok\n");
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "stage") == 0) return stage(argc, argv);
    return reaper(argc, argv);
}
