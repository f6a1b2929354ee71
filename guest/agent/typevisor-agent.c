// typevisor-agent: the default guest's agent (guest/README.md, "Guest agent protocol"). Listens on
// vsock port 52; every connection carries one operation — exec with streamed stdio, file write,
// file read, ping, clock set — in frames of { u8 type, u32 little-endian length, payload }.
// Built static with musl (musl-gcc) by guest/build-default-guest.sh; started by /init.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// <linux/vm_sockets.h>, which musl's headers do not carry: struct sockaddr_vm is 16 bytes.
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#define VMADDR_CID_ANY 0xffffffffu
struct sockaddr_vm {
  unsigned short svm_family;
  unsigned short svm_reserved1;
  unsigned int svm_port;
  unsigned int svm_cid;
  unsigned char svm_zero[sizeof(struct sockaddr) - sizeof(unsigned short) * 2 - sizeof(unsigned int) * 2];
};

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif

#define AGENT_PORT 52
#define AGENT_VERSION 1
// No frame carries more: a host that sends a longer one is misbehaving and loses its connection.
#define MAX_FRAME (1u << 20)
#define IO_CHUNK 65536
#define MAX_ARGS 4096

static int conn = -1;
// The running command (and its process group), killed if the host goes away.
static pid_t exec_pid = 0;

// Reads exactly n bytes; 0 on success, -1 on EOF or error.
static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

// Signals the command's process group — and the command itself, which may not have made its own
// group yet (setsid() runs in the child after fork; a signal sent that early finds no group).
static void signal_command(pid_t pid, int sig) {
  kill(-pid, sig);
  kill(pid, sig);
}

static void send_frame(char type, const void *payload, uint32_t len) {
  unsigned char h[5] = { (unsigned char)type, len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, len >> 24 };
  // A host that went away ends this connection's process, and the command it was running.
  if (write_full(conn, h, 5) < 0 || (len > 0 && write_full(conn, payload, len) < 0)) {
    if (exec_pid > 0) signal_command(exec_pid, SIGKILL);
    _exit(1);
  }
}

static void send_failure(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
  send_frame('F', msg, (uint32_t)n);
}

// Reads one frame; the payload (NUL-terminated for convenience) is malloc'ed. -1 on EOF or a bad frame.
static int recv_frame(char *type, char **payload, uint32_t *len) {
  unsigned char h[5];
  if (read_full(conn, h, 5) < 0) return -1;
  *type = (char)h[0];
  *len = h[1] | (h[2] << 8) | (h[3] << 16) | ((uint32_t)h[4] << 24);
  if (*len > MAX_FRAME) return -1;
  *payload = malloc(*len + 1);
  if (!*payload) return -1;
  if (*len > 0 && read_full(conn, *payload, *len) < 0) { free(*payload); return -1; }
  (*payload)[*len] = 0;
  return 0;
}

// The fields of an operation's first frame: NUL-terminated strings, each "<tag><value>".
struct request {
  char *argv[MAX_ARGS + 1];
  int argc;
  char *env[MAX_ARGS + 1];
  int envc;
  const char *cwd;
  const char *path;
  unsigned mode;
};

static int parse_request(char *payload, uint32_t len, struct request *r) {
  memset(r, 0, sizeof *r);
  r->mode = 0644;
  if (len > 0 && payload[len - 1] != 0) return -1;
  for (char *p = payload; p < payload + len; p += strlen(p) + 1) {
    char *v = p + 1;
    switch (*p) {
      case 'a': if (r->argc >= MAX_ARGS) return -1; r->argv[r->argc++] = v; break;
      case 'e': if (r->envc >= MAX_ARGS || !strchr(v, '=')) return -1; r->env[r->envc++] = v; break;
      case 'd': r->cwd = v; break;
      case 'p': r->path = v; break;
      case 'm': r->mode = (unsigned)strtoul(v, NULL, 8) & 07777; break;
      default: return -1;
    }
  }
  return 0;
}

// The command's environment: a base (what /init gives commands) overridden by the request's.
static char **command_env(struct request *r) {
  static char *base[] = { "PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root", "TERM=linux" };
  size_t nbase = sizeof base / sizeof base[0];
  char **env = calloc(nbase + (size_t)r->envc + 1, sizeof *env);
  if (!env) return NULL;
  size_t n = 0;
  for (size_t i = 0; i < nbase; i++) {
    size_t klen = strchr(base[i], '=') - base[i] + 1;
    int overridden = 0;
    for (int j = 0; j < r->envc; j++) overridden |= strncmp(r->env[j], base[i], klen) == 0;
    if (!overridden) env[n++] = base[i];
  }
  for (int j = 0; j < r->envc; j++) env[n++] = r->env[j];
  env[n] = NULL;
  return env;
}

static void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void op_exec(struct request *r) {
  if (r->argc == 0) { send_failure("exec: no command"); return; }
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
    send_failure("exec: pipe: %s", strerror(errno));
    return;
  }
  char **env = command_env(r);
  pid_t pid = fork();
  if (pid < 0) { send_failure("exec: fork: %s", strerror(errno)); return; }
  if (pid == 0) {
    // Its own session and process group, so a signal from the host reaches everything it starts.
    setsid();
    signal(SIGPIPE, SIG_DFL);
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    if (r->cwd && chdir(r->cwd) < 0) {
      dprintf(2, "typevisor-agent: cannot enter %s: %s\n", r->cwd, strerror(errno));
      _exit(126);
    }
    if (env) environ = env;
    r->argv[r->argc] = NULL;
    execvp(r->argv[0], r->argv);
    int e = errno;
    dprintf(2, "typevisor-agent: cannot run %s: %s\n", r->argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  exec_pid = pid;
  close(in[0]);
  close(out[1]);
  close(err[1]);
  int stdin_fd = in[1];
  set_nonblocking(stdin_fd);
  // Readable once the command has exited (Linux ≥ 5.3): the loop then still hears the host while
  // waiting for a command that closed its output early.
  int exit_fd = (int)syscall(SYS_pidfd_open, pid, 0);
  char *pending = NULL; // stdin bytes from the host not yet taken by the command
  uint32_t pending_len = 0, pending_at = 0;
  int stdin_eof = 0, host_open = 1, out_open = 1, err_open = 1, exited = 0, status = 0;
  static char buf[IO_CHUNK];
  // Done when the command has exited and its output has ended — or, once the host is gone, as
  // soon as it has exited (something it left behind may hold the pipes open).
  while (!(exited && ((!out_open && !err_open) || !host_open))) {
    struct pollfd p[5];
    int n = 0, i_out = -1, i_err = -1, i_host = -1, i_in = -1, i_exit = -1;
    if (out_open) { p[n] = (struct pollfd){ out[0], POLLIN, 0 }; i_out = n++; }
    if (err_open) { p[n] = (struct pollfd){ err[0], POLLIN, 0 }; i_err = n++; }
    // Host frames are read only when the command has taken the previous stdin data; a hang-up is
    // heard either way.
    if (host_open) { p[n] = (struct pollfd){ conn, (short)((pending ? 0 : POLLIN) | POLLRDHUP), 0 }; i_host = n++; }
    if (pending && stdin_fd >= 0) { p[n] = (struct pollfd){ stdin_fd, POLLOUT, 0 }; i_in = n++; }
    if (!exited && exit_fd >= 0) { p[n] = (struct pollfd){ exit_fd, POLLIN, 0 }; i_exit = n++; }
    if (!exited && exit_fd < 0 && !out_open && !err_open) {
      // No pidfd: the output has ended, wait for the command itself.
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
      exited = 1;
      continue;
    }
    if (poll(p, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (i_exit >= 0 && p[i_exit].revents && waitpid(pid, &status, WNOHANG) == pid) exited = 1;
    if (i_out >= 0 && p[i_out].revents) {
      ssize_t k = read(out[0], buf, sizeof buf);
      if (k > 0) { if (host_open) send_frame('O', buf, (uint32_t)k); }
      else if (k == 0 || errno != EINTR) { out_open = 0; close(out[0]); }
    }
    if (i_err >= 0 && p[i_err].revents) {
      ssize_t k = read(err[0], buf, sizeof buf);
      if (k > 0) { if (host_open) send_frame('E', buf, (uint32_t)k); }
      else if (k == 0 || errno != EINTR) { err_open = 0; close(err[0]); }
    }
    if (i_in >= 0 && p[i_in].revents) {
      ssize_t w = write(stdin_fd, pending + pending_at, pending_len - pending_at);
      if (w > 0) pending_at += (uint32_t)w;
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || pending_at == pending_len) {
        // EPIPE: the command closed its stdin; the rest is dropped, as a pipe would.
        free(pending);
        pending = NULL;
        if (w < 0 && errno == EPIPE) { close(stdin_fd); stdin_fd = -1; }
      }
    }
    if (i_host >= 0 && p[i_host].revents) {
      char type;
      char *payload;
      uint32_t len;
      int readable = !pending && (p[i_host].revents & POLLIN);
      if (!readable || recv_frame(&type, &payload, &len) < 0) {
        // The host went away (or broke the protocol): the command goes with it.
        host_open = 0;
        signal_command(pid, SIGKILL);
        continue;
      }
      if (type == 'I' && len == 0) {
        stdin_eof = 1;
        free(payload);
      } else if (type == 'I' && !stdin_eof && stdin_fd >= 0) {
        pending = payload;
        pending_len = len;
        pending_at = 0;
      } else if (type == 'K' && len == 1) {
        signal_command(pid, (unsigned char)payload[0]);
        free(payload);
      } else {
        free(payload);
      }
    }
    if (stdin_eof && !pending && stdin_fd >= 0) { close(stdin_fd); stdin_fd = -1; }
  }
  if (!exited) while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  exec_pid = 0;
  if (!host_open) return;
  // What a shell reports: the exit code, or 128 + the signal that ended it.
  int32_t result[2];
  result[0] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result[1] = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  unsigned char le[8];
  for (int i = 0; i < 2; i++) for (int b = 0; b < 4; b++) le[i * 4 + b] = ((uint32_t)result[i] >> (8 * b)) & 0xff;
  send_frame('X', le, 8);
}

// Writes into a temporary file beside `path` and renames it into place once complete: a reader
// never sees half a file, and a failed upload leaves the old one.
static void op_write(struct request *r) {
  if (!r->path || !*r->path) { send_failure("write: no path"); return; }
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.typevisor-%d", r->path, (int)getpid()) >= (int)sizeof tmp) { send_failure("write: path too long"); return; }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, r->mode);
  // A failure is reported after the upload's last frame, not in the middle of it: the host is
  // still sending, and a connection closed under it could lose the reason.
  int failed = fd < 0 ? errno : 0;
  uint64_t total = 0;
  for (;;) {
    char type;
    char *payload;
    uint32_t len;
    if (recv_frame(&type, &payload, &len) < 0) { if (fd >= 0) { close(fd); unlink(tmp); } _exit(1); }
    if (type != 'D') { free(payload); if (!failed) failed = EPROTO; break; }
    if (len == 0) { free(payload); break; }
    if (!failed && write_full(fd, payload, len) < 0) failed = errno;
    total += len;
    free(payload);
  }
  if (fd >= 0 && !failed && fchmod(fd, r->mode) < 0) failed = errno;
  if (fd >= 0 && close(fd) < 0 && !failed) failed = errno;
  if (!failed && rename(tmp, r->path) < 0) failed = errno;
  if (failed) {
    unlink(tmp);
    send_failure("write %s: %s", r->path, strerror(failed));
    return;
  }
  unsigned char le[8];
  for (int b = 0; b < 8; b++) le[b] = (total >> (8 * b)) & 0xff;
  send_frame('K', le, 8);
}

static void op_read(struct request *r) {
  if (!r->path || !*r->path) { send_failure("read: no path"); return; }
  int fd = open(r->path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) { send_failure("read %s: %s", r->path, strerror(errno)); return; }
  if (S_ISDIR(st.st_mode)) { send_failure("read %s: %s", r->path, strerror(EISDIR)); return; }
  static char buf[IO_CHUNK];
  for (;;) {
    ssize_t k = read(fd, buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) { send_failure("read %s: %s", r->path, strerror(errno)); return; }
    if (k == 0) break;
    send_frame('D', buf, (uint32_t)k);
  }
  send_frame('D', NULL, 0);
}

static void op_ping(void) {
  struct sysinfo si;
  char text[256];
  sysinfo(&si);
  int n = snprintf(text, sizeof text, "version=%d\nuptime_s=%ld\nmem_total_kib=%llu\nmem_free_kib=%llu\nprocs=%u\n", AGENT_VERSION, si.uptime,
                   (unsigned long long)si.totalram * si.mem_unit / 1024, (unsigned long long)si.freeram * si.mem_unit / 1024, si.procs);
  send_frame('P', text, (uint32_t)n);
}

static void op_clock(const char *payload, uint32_t len) {
  if (len != 8) { send_failure("clock: payload is not 8 bytes"); return; }
  uint64_t ns = 0;
  for (int b = 0; b < 8; b++) ns |= (uint64_t)(unsigned char)payload[b] << (8 * b);
  struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u) };
  if (clock_settime(CLOCK_REALTIME, &ts) < 0) { send_failure("clock: %s", strerror(errno)); return; }
  send_frame('K', NULL, 0);
}

static void serve(void) {
  char type;
  char *payload;
  uint32_t len;
  if (recv_frame(&type, &payload, &len) < 0) return;
  struct request r;
  if (type == 't') { op_clock(payload, len); return; }
  if (type == 'p') { op_ping(); return; }
  if (parse_request(payload, len, &r) < 0) { send_failure("malformed request"); return; }
  switch (type) {
    case 'x': op_exec(&r); break;
    case 'w': op_write(&r); break;
    case 'r': op_read(&r); break;
    default: send_failure("unknown operation 0x%02x", (unsigned char)type);
  }
}

// `connect CID PORT` / `listen PORT`: copies stdin to a vsock stream and the stream to stdout (a
// netcat for vsock, for scripts and tests in the guest); exits when both directions have ended.
static int relay(int sock) {
  char buf[IO_CHUNK];
  int in_open = 1, sock_open = 1;
  while (sock_open) {
    struct pollfd p[2] = { { sock, POLLIN, 0 }, { 0, POLLIN, 0 } };
    if (poll(p, in_open ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (p[0].revents) {
      ssize_t k = read(sock, buf, sizeof buf);
      if (k <= 0) sock_open = 0;
      else if (write_full(1, buf, (size_t)k) < 0) return 1;
    }
    if (in_open && p[1].revents) {
      ssize_t k = read(0, buf, sizeof buf);
      if (k <= 0) { in_open = 0; shutdown(sock, SHUT_WR); }
      else if (write_full(sock, buf, (size_t)k) < 0) return 1;
    }
  }
  return 0;
}

static int vsock_tool(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) { perror("typevisor-agent: socket(AF_VSOCK)"); return 1; }
  if (strcmp(argv[1], "connect") == 0 && argc == 4) {
    struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = (unsigned)strtoul(argv[2], NULL, 10), .svm_port = (unsigned)strtoul(argv[3], NULL, 10) };
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("typevisor-agent: connect"); return 1; }
    return relay(s);
  }
  if (strcmp(argv[1], "listen") == 0 && argc == 3) {
    struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = (unsigned)strtoul(argv[2], NULL, 10) };
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 1) < 0) { perror("typevisor-agent: listen"); return 1; }
    int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) { perror("typevisor-agent: accept"); return 1; }
    close(s);
    return relay(c);
  }
  fprintf(stderr, "usage: typevisor-agent [--listen-unix PATH] | connect CID PORT | listen PORT | randread FILE BLOCK COUNT\n");
  return 2;
}

// `randread FILE BLOCK COUNT`: COUNT reads of BLOCK bytes at random BLOCK-aligned offsets with
// O_DIRECT (no page cache): random-read IOPS for bench:blk, where busybox has no fio.
static int randread(const char *path, long block, long count) {
  int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) { perror("typevisor-agent: randread: open"); return 1; }
  off_t size = lseek(fd, 0, SEEK_END);
  void *buf;
  if (block <= 0 || block % 512 || size < block || posix_memalign(&buf, 4096, (size_t)block)) { fprintf(stderr, "typevisor-agent: randread: bad block size or file\n"); return 2; }
  long blocks = (long)(size / block);
  unsigned long long x = 88172645463325252ull;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < count; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    if (pread(fd, buf, (size_t)block, (off_t)(x % (unsigned long long)blocks) * block) != block) { perror("typevisor-agent: randread: pread"); return 1; }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("randread %ld x %ld bytes in %.3f s: %.0f IOPS\n", count, block, s, (double)count / s);
  return 0;
}

// `--listen-unix PATH` serves on a Unix socket instead: the host's tests run the agent that way.
static int listen_unix(const char *path) {
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof addr.sun_path) { errno = ENAMETOOLONG; return -1; }
  strcpy(addr.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 64) < 0) return -1;
  return s;
}

int main(int argc, char **argv) {
  int s;
  if (argc >= 2 && (strcmp(argv[1], "connect") == 0 || strcmp(argv[1], "listen") == 0)) return vsock_tool(argc, argv);
  if (argc == 5 && strcmp(argv[1], "randread") == 0) return randread(argv[2], atol(argv[3]), atol(argv[4]));
  if (argc == 3 && strcmp(argv[1], "--listen-unix") == 0) {
    s = listen_unix(argv[2]);
    if (s < 0) { fprintf(stderr, "typevisor-agent: cannot listen on %s: %s\n", argv[2], strerror(errno)); return 1; }
  } else {
    s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_port = AGENT_PORT, .svm_cid = VMADDR_CID_ANY };
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 64) < 0) {
      // No vsock device in this VM: nothing to serve.
      fprintf(stderr, "typevisor-agent: cannot listen on vsock port %d: %s\n", AGENT_PORT, strerror(errno));
      return 1;
    }
  }
  // Connection handlers are reaped by the kernel; a host that goes away mid-write is EPIPE, not death.
  signal(SIGCHLD, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  for (;;) {
    int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      sleep(1);
      continue;
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(s);
      signal(SIGCHLD, SIG_DFL);
      conn = c;
      serve();
      _exit(0);
    }
    close(c);
  }
}
