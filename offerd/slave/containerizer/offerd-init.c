/*
 * offerd-init: the first process of a container.
 *
 * The slave starts it with posix_spawn (vfork semantics: the slave's heap is
 * never copied) with the container's stdout and stderr already in place. It
 * closes every other fd it inherited (but the report pipe), enters the sandbox
 * (--chdir), sets the container up with system calls only, forks the task, and
 * stays as the task's parent until the task ends:
 *
 *   1. creates the container's cgroups (--mkdir DIR), writes their limits
 *      (--write FILE VALUE) and joins them (--join FILE: 0 into a v1 `tasks` or
 *      a v2 `cgroup.procs` file), in the order given, before anything of the
 *      task exists;
 *   2. makes the namespaces it was asked for (mount, UTS, IPC, network); with
 *      --mount-proc it is PID 1 of the PID namespace the slave's launcher thread
 *      made for it, and mounts that namespace's own /proc;
 *   3. binds the sandbox (--bind SRC DST), sets the hostname, brings up the
 *      loopback device of a new network namespace;
 *   4. forks the task, which switches user (--user) and execs the command;
 *      With --enter PID it makes none: it joins the namespaces of process PID
 *      (a running container's init) instead, so that what it runs (a health
 *      check) sees what that container's task sees;
 *   5. reaps every process that ends up as its child (orphans in a PID
 *      namespace), and when the task ends writes the task's status, shell style
 *      (the exit code, or 128+N for signal N), to --status-file, and exits with
 *      that status. As the init of a PID namespace its exit ends the whole
 *      namespace.
 *
 * Failures before the task's exec are reported on --report-fd as one line
 * saying which step failed ("joining cgroup /sys/fs/cgroup/memory/offerd/x:
 * Permission denied"), and init exits 127. The fd is closed, without a word,
 * once the task's exec succeeded: the slave reads it to EOF to know.
 *
 * Signals: TERM, INT, HUP, QUIT, USR1 and USR2 are caught and ignored here
 * once the task runs. The slave signals the container's whole process group, so
 * the task gets them directly; init must outlive the task to report its status
 * (and, as PID 1, keep its namespace alive until the task is done). One that
 * arrives while the container is being set up means the task is not started:
 * init exits 128+N.
 *
 * Standard C and Linux system calls only; built by the slave on first use
 * (offerd/slave/containerizer/init_binary.py), statically where the C library
 * allows it, so that its exec costs no dynamic linking.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_STEPS 64

static int report_fd = -1;

/* The first TERM-like signal received before the task started: it is not started. */
static volatile sig_atomic_t early_signal = 0;

/* Report what failed (on the report fd, else stderr) and exit 127; killed
 * meanwhile, exit as killed. */
static void fail(const char *format, ...)
{
    if (early_signal)
        _exit(128 + early_signal);   /* a kill interrupted the set-up: not a launch failure */
    char message[1024];
    va_list args;
    va_start(args, format);
    int length = vsnprintf(message, sizeof message, format, args);
    va_end(args);
    if (length < 0)
        length = 0;
    if (length >= (int)sizeof message - 1)
        length = sizeof message - 2;
    message[length++] = '\n';
    int fd = report_fd >= 0 ? report_fd : 2;
    ssize_t ignored = write(fd, message, (size_t)length);
    (void)ignored;
    _exit(127);
}

static void usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: offerd-init [--mkdir DIR | --write FILE VALUE | --join FILE]... [--mount-proc] [--bind SRC DST] [--hostname NAME]\n"
            "                   [--ipc] [--net] [--enter PID] [--user UID GID GROUPS NAME] [--exec PATH]\n"
            "                   [--chdir DIR] [--status-file PATH] [--report-fd FD] -- COMMAND [ARG]...\n"
            "The first process of an offerd container: joins its cgroups, makes its namespaces,\n"
            "runs COMMAND as its child and exits with COMMAND's status (128+N for signal N).\n"
            "Started by the offerd slave; not meant to be run by hand.\n");
    exit(code);
}

static void write_file(const char *path, const char *value, const char *step)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        fail("%s: %s", step, strerror(errno));
    ssize_t written = write(fd, value, strlen(value));
    int saved = errno;
    close(fd);
    if (written < 0)
        fail("%s: %s", step, strerror(saved));
}

static void loopback_up(void)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        fail("bringing up the loopback device: %s", strerror(errno));
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(sock, SIOCGIFFLAGS, &request) < 0)
        fail("bringing up the loopback device: %s", strerror(errno));
    request.ifr_flags |= IFF_UP;
    if (ioctl(sock, SIOCSIFFLAGS, &request) < 0)
        fail("bringing up the loopback device: %s", strerror(errno));
    close(sock);
}

static void note_signal(int signum)
{
    if (!early_signal)
        early_signal = signum;
}

/* Nothing of the slave's but stdin, stdout, stderr and the report fd reaches the task,
 * whatever the spawning side left open. */
static void close_stray_fds(int keep)
{
#ifdef SYS_close_range
    int done;
    if (keep > 3)
        done = syscall(SYS_close_range, 3U, (unsigned)keep - 1, 0U) == 0 &&
               syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0U) == 0;
    else
        done = syscall(SYS_close_range, keep == 3 ? 4U : 3U, ~0U, 0U) == 0;
    if (done)
        return;
#endif
    DIR *fds = opendir("/proc/self/fd");
    if (!fds)
        return;   /* no /proc: nothing better to do than trust close-on-exec */
    int own = dirfd(fds);
    for (struct dirent *entry; (entry = readdir(fds));) {
        int fd = atoi(entry->d_name);
        if (fd > 2 && fd != keep && fd != own)
            close(fd);
    }
    closedir(fds);
}

/* Join the IPC, UTS, network, PID (for the children) and mount namespaces of
 * process `pid`, skipping those this process already shares with it. All are
 * opened first: entering the mount namespace changes what /proc shows. */
static void enter_namespaces(const char *pid)
{
    static const char *const kinds[] = {"ipc", "uts", "net", "pid", "mnt"};
    enum { N_KINDS = sizeof kinds / sizeof *kinds };
    int fds[N_KINDS];
    for (int k = 0; k < N_KINDS; k++) {
        char theirs[64], ours[64];
        snprintf(theirs, sizeof theirs, "/proc/%s/ns/%s", pid, kinds[k]);
        snprintf(ours, sizeof ours, "/proc/self/ns/%s", kinds[k]);
        struct stat their_ns, our_ns;
        fds[k] = open(theirs, O_RDONLY | O_CLOEXEC);
        if (fds[k] < 0)
            fail("opening the %s namespace of process %s: %s", kinds[k], pid, strerror(errno));
        if (fstat(fds[k], &their_ns) == 0 && stat(ours, &our_ns) == 0 &&
            their_ns.st_dev == our_ns.st_dev && their_ns.st_ino == our_ns.st_ino) {
            close(fds[k]);
            fds[k] = -1;   /* shared already */
        }
    }
    for (int k = 0; k < N_KINDS; k++) {
        if (fds[k] >= 0 && setns(fds[k], 0) < 0)
            fail("entering the %s namespace of process %s: %s", kinds[k], pid, strerror(errno));
        if (fds[k] >= 0)
            close(fds[k]);
    }
}

/* A non-negative decimal number no larger than `most`, or fail naming `what`. */
static unsigned long parse_number(const char *text, const char *what, unsigned long most)
{
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno || *end || end == text || *text == '-' || value > most)
        fail("invalid %s '%s'", what, text);
    return value;
}

int main(int argc, char **argv)
{
    /* cgroup steps, in order: 'm' mkdir, 'w' write, 'j' join */
    struct { char kind; const char *path, *value; } steps[MAX_STEPS];
    int n_steps = 0, mount_proc = 0, new_ipc = 0, new_net = 0, switch_user = 0;
    const char *bind_source = NULL, *bind_target = NULL, *hostname = NULL;
    const char *status_file = NULL, *executable = NULL, *user_name = NULL, *directory = NULL;
    const char *enter_pid = NULL;
    uid_t uid = 0;
    gid_t gid = 0;
    gid_t *groups = NULL;
    size_t n_groups = 0;
    int i = 1;

    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--")) {
            i++;
            break;
        } else if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(0);
        } else if ((!strcmp(arg, "--mkdir") || !strcmp(arg, "--join")) && i + 1 < argc) {
            if (n_steps == MAX_STEPS)
                fail("more than %d cgroup steps", MAX_STEPS);
            steps[n_steps].kind = arg[2];
            steps[n_steps].value = NULL;
            steps[n_steps++].path = argv[++i];
        } else if (!strcmp(arg, "--write") && i + 2 < argc) {
            if (n_steps == MAX_STEPS)
                fail("more than %d cgroup steps", MAX_STEPS);
            steps[n_steps].kind = 'w';
            steps[n_steps].path = argv[++i];
            steps[n_steps++].value = argv[++i];
        } else if (!strcmp(arg, "--mount-proc")) {
            mount_proc = 1;
        } else if (!strcmp(arg, "--bind") && i + 2 < argc) {
            bind_source = argv[++i];
            bind_target = argv[++i];
        } else if (!strcmp(arg, "--hostname") && i + 1 < argc) {
            hostname = argv[++i];
        } else if (!strcmp(arg, "--ipc")) {
            new_ipc = 1;
        } else if (!strcmp(arg, "--net")) {
            new_net = 1;
        } else if (!strcmp(arg, "--enter") && i + 1 < argc) {
            enter_pid = argv[++i];
            parse_number(enter_pid, "process id", 0x7fffffffUL);
        } else if (!strcmp(arg, "--user") && i + 4 < argc) {
            switch_user = 1;
            uid = (uid_t)parse_number(argv[++i], "uid", 0xfffffffeUL);
            gid = (gid_t)parse_number(argv[++i], "gid", 0xfffffffeUL);
            char *list = argv[++i];
            size_t most = 1;
            for (const char *c = list; *c; c++)
                most += *c == ',';
            groups = calloc(most, sizeof *groups);
            if (!groups)
                fail("out of memory for %zu group ids", most);
            for (char *item = strtok(list, ","); item; item = strtok(NULL, ","))
                groups[n_groups++] = (gid_t)parse_number(item, "group id", 0xfffffffeUL);
            user_name = argv[++i];
        } else if (!strcmp(arg, "--exec") && i + 1 < argc) {
            executable = argv[++i];
        } else if (!strcmp(arg, "--chdir") && i + 1 < argc) {
            directory = argv[++i];
        } else if (!strcmp(arg, "--status-file") && i + 1 < argc) {
            status_file = argv[++i];
        } else if (!strcmp(arg, "--report-fd") && i + 1 < argc) {
            report_fd = (int)parse_number(argv[++i], "report fd", 1 << 20);
            fcntl(report_fd, F_SETFD, FD_CLOEXEC);
        } else {
            fprintf(stderr, "offerd-init: unknown or incomplete option '%s'\n", arg);
            usage(2);
        }
    }
    if (i >= argc)
        usage(2);
    char **command = argv + i;
    if (!executable)
        executable = command[0];
    close_stray_fds(report_fd);
    if (directory && chdir(directory) < 0)
        fail("entering the sandbox %s: %s", directory, strerror(errno));

    /* Caught from the start (a PID namespace's init would silently drop what it does
     * not handle) and blocked around the fork, so that a kill arriving while the
     * container is set up is neither lost nor swallowed by the task before its exec. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = note_signal;   /* caught, not SIG_IGN: exec resets it for the task */
    sigemptyset(&action.sa_mask);
    const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    sigset_t blocked;
    sigemptyset(&blocked);
    for (size_t s = 0; s < sizeof forwarded / sizeof *forwarded; s++) {
        sigaction(forwarded[s], &action, NULL);
        sigaddset(&blocked, forwarded[s]);
    }

    for (int s = 0; s < n_steps; s++) {
        char step[4096 + 64];
        const char *path = steps[s].path;
        if (steps[s].kind == 'm') {
            if (mkdir(path, 0755) < 0 && errno != EEXIST)
                fail("creating cgroup %s: %s", path, strerror(errno));
        } else if (steps[s].kind == 'w') {
            snprintf(step, sizeof step, "writing %s to %s", steps[s].value, path);
            write_file(path, steps[s].value, step);
        } else {
            snprintf(step, sizeof step, "joining cgroup %s", path);
            char *slash = strrchr(step, '/');
            if (slash)
                *slash = '\0';   /* name the cgroup, not its tasks/cgroup.procs file */
            write_file(path, "0", step);
        }
    }

    if (enter_pid) {
        enter_namespaces(enter_pid);
        /* Entering a mount namespace moves the working directory to its root. */
        if (directory && chdir(directory) < 0)
            fail("entering %s in the namespaces of process %s: %s", directory, enter_pid, strerror(errno));
    }

    int flags = 0;
    if (mount_proc || bind_source)
        flags |= CLONE_NEWNS;
    if (hostname)
        flags |= CLONE_NEWUTS;
    if (new_ipc)
        flags |= CLONE_NEWIPC;
    if (new_net)
        flags |= CLONE_NEWNET;
    if (flags && unshare(flags) < 0)
        fail("creating namespaces: %s", strerror(errno));
    if (flags & CLONE_NEWNS) {
        /* Nothing mounted here may propagate back to the host. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            fail("making mounts private: %s", strerror(errno));
        if (mount_proc && mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            fail("mounting /proc: %s", strerror(errno));
        if (bind_source && mount(bind_source, bind_target, NULL, MS_BIND | MS_REC, NULL) < 0)
            fail("mounting the sandbox at %s: %s", bind_target, strerror(errno));
    }
    if (new_net)
        loopback_up();
    if (hostname && sethostname(hostname, strlen(hostname)) < 0)
        fail("setting the hostname: %s", strerror(errno));

    /* The task reports a failure before its exec on this pipe; exec closes it. */
    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) < 0)
        fail("creating a pipe: %s", strerror(errno));
    sigset_t previous;
    sigprocmask(SIG_BLOCK, &blocked, &previous);
    if (early_signal)
        return 128 + early_signal;   /* killed while being set up: the task never starts */
    pid_t task = fork();
    if (task < 0)
        fail("forking the task: %s", strerror(errno));
    if (task == 0) {
        close(exec_pipe[0]);
        report_fd = exec_pipe[1];
        for (size_t s = 0; s < sizeof forwarded / sizeof *forwarded; s++)
            signal(forwarded[s], SIG_DFL);
        sigprocmask(SIG_SETMASK, &previous, NULL);   /* a pending kill now takes the task */
        if (switch_user) {
            if (setgroups(n_groups, groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
                fail("switching to user %s: %s", user_name, strerror(errno));
        }
        execvp(executable, command);
        fail("executing %s: %s", executable, strerror(errno));
    }
    sigprocmask(SIG_SETMASK, &previous, NULL);
    close(exec_pipe[1]);
    char message[1024];
    ssize_t length, total = 0;
    while ((length = read(exec_pipe[0], message + total, sizeof message - 1 - (size_t)total)) != 0) {
        if (length < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        total += length;
        if (total == (ssize_t)sizeof message - 1)
            break;
    }
    close(exec_pipe[0]);
    while (total > 0 && message[total - 1] == '\n')
        total--;   /* the task's fail() ended its line; ours will too */
    if (total > 0) {
        message[total] = '\0';
        waitpid(task, NULL, 0);
        fail("%s", message);
    }
    if (report_fd >= 0) {
        close(report_fd);   /* the task runs */
        report_fd = -1;
    }

    int status = 0;
    for (;;) {
        int child_status;
        pid_t pid = waitpid(-1, &child_status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;   /* ECHILD: cannot happen before the task is reaped */
        }
        if (pid == task) {
            status = WIFEXITED(child_status) ? WEXITSTATUS(child_status)
                   : WIFSIGNALED(child_status) ? 128 + WTERMSIG(child_status) : 1;
            break;
        }
    }
    if (status_file) {
        char text[16];
        /* The sandbox is the task's: never through a link (or into a FIFO) it put at this name. */
        int fd = open(status_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
        if (fd >= 0) {
            ssize_t ignored = write(fd, text, (size_t)snprintf(text, sizeof text, "%d\n", status));
            (void)ignored;
            close(fd);
        }
    }
    return status;
}
