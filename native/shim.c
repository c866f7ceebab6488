/* SPDX-License-Identifier: MIT */
/*
 * softiommu preload shim: run an unmodified program against the softiommu server.
 *
 *   LD_PRELOAD=libsoftiommu-shim.so SOFTIOMMU_SOCKET=/path/to/sock program ...
 *
 * open("/dev/iommu") (or /dev/vfio/vfio) returns a Unix socket connected to the server: a real
 * kernel object, so dup/fork/close/exit keep it alive exactly as long as the kernel would keep the
 * iommufd file, and the server sees EOF when the last holder lets go. Every request (ioctl, read,
 * write on such an fd) goes whole over the process's *channel* (one more socket, at a high fd
 * number, O_CLOEXEC); while the server works on it, it reads and writes the caller's memory with
 * READ_MEM / WRITE_MEM (served here with process_vm_readv/writev on ourselves: EFAULT, never a
 * crash, never more than the server asked; an ioctl's final copy-back may come with its answer
 * instead, RESULT_WRITE), asks for /proc/self/smaps lines (MAPS) and has new fds
 * made (INSTALL_FD: fault queues, selftest accesses get their own socket, at the lowest free
 * number as get_unused_fd_flags would give). The program's own mmap/munmap/mremap/madvise and fork
 * are reported so the server's mirror of our address space keeps the pages' identity.
 *
 * Frame layouts: src/server/protocol.ts. Design: docs/design/shim-and-server.md.
 * Internal I/O uses raw syscalls so that nothing here re-enters the interposed functions.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "softiommu/iommufd.h"

#define EXPORT __attribute__((visibility("default")))

/* ---------------------------------------------------------------- protocol (protocol.ts) */

#define PROTOCOL_VERSION 2
#define MEM_CHUNK (1u << 20)
#define MAX_PAYLOAD (MEM_CHUNK + 64)
#define PREFETCH_MAX 4096

enum {
	K_HELLO = 1, K_IOCTL = 2, K_READ = 3, K_WRITE = 4, K_RANGE = 5, K_FORK = 6, K_CLOSED = 7,
	K_WHOIS = 8, K_STATS = 9, K_EXIT = 10, K_FAILNTH = 11,
	K_OPEN = 16, K_ATTACH = 17, K_IDENTIFY = 18,
	K_READ_MEM = 32, K_WRITE_MEM = 33, K_MAPS = 34, K_INSTALL_FD = 35, K_CLOSE_FD = 36,
	K_MEM_DATA = 48, K_MEM_ACK = 49, K_MAPS_DATA = 50, K_FD_INSTALLED = 51, K_CLOSE_ACK = 52,
	K_RESULT = 64, K_READY = 65, K_RESULT_WRITE = 66,
};
enum { R_IMAGE_START = 0, R_FORK_CHILD = 1, R_RECONNECT = 2 };
enum { HELLO_BELL = 1 /* HELLO.flags: we have mapped the bell file and will ring a slot */ };
enum { W_UNMAP_PRE = 1, W_MAPPED = 2, W_DONTNEED = 3 };
enum { F_IOMMUFD = 1, F_FAULT = 2, F_ACCESS = 3, F_FAILNTH = 4 /* shim-only: /proc/.../fail-nth (id = tid) */, F_VEVENTQ = 5 };

/* ---------------------------------------------------------------- state */

struct ent {
	uint64_t id; /* the server's file id; 0 = not ours */
	uint8_t kind;
	uint8_t vfio;
};

static int enabled;
static struct sockaddr_un srv_addr;
static socklen_t srv_len;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int in_shim; /* this thread holds the lock (re-entry from a signal handler) */
static int chan = -1;
static pid_t chan_pid;
static dev_t chan_dev;
static ino_t chan_ino;
static int hello_reason = R_IMAGE_START;
static struct ent *tab;
static int tab_len;
static unsigned char xbuf[MAX_PAYLOAD + 64];

/*
 * The pid, without a system call per request: cached in a MADV_WIPEONFORK page, which a fork child
 * (by fork(), clone() or anything else) sees zeroed, so a child always asks the kernel again.
 * Without WIPEONFORK (kernels before 4.14) every call asks.
 */
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
struct forkpage {
	pid_t pid;
};
static struct forkpage *forkpage;

static long sc_getpid(void)
{
	if (forkpage && forkpage->pid)
		return forkpage->pid;
	long p = syscall(SYS_getpid);
	if (forkpage)
		forkpage->pid = (pid_t)p;
	return p;
}

/* The calling thread's tid, cached per thread (and asked again in a fork child, whose pid differs). */
static __thread pid_t tid_cache, tid_cache_pid;
static uint32_t sc_gettid(void)
{
	pid_t me = (pid_t)sc_getpid();
	if (tid_cache_pid != me) {
		tid_cache = (pid_t)syscall(SYS_gettid);
		tid_cache_pid = me;
	}
	return (uint32_t)tid_cache;
}

/*
 * The channel's doorbell (src/server/bell.ts): the server's `<socket>.bell` file, mapped shared;
 * our slot's first u32 is incremented after every frame sent on the channel, so that the server,
 * polling for our next frame, reads one file instead of every socket. NULL: no bell.
 */
static unsigned char *bell_map;
static uint32_t *bell_ctr;
#define BELL_SLOTS 64
#define BELL_SLOT_BYTES 64

static void ring(int fd);

/* ---------------------------------------------------------------- fd table */

static int tab_get(int fd, struct ent *out)
{
	if (fd < 0 || fd >= tab_len || !tab[fd].id)
		return 0;
	*out = tab[fd];
	return 1;
}

static void tab_set(int fd, const struct ent *e)
{
	if (fd < 0)
		return;
	if (fd >= tab_len) {
		int n = tab_len ? tab_len : 64;
		while (n <= fd)
			n *= 2;
		struct ent *t = realloc(tab, (size_t)n * sizeof(*t));
		if (!t)
			return;
		memset(t + tab_len, 0, (size_t)(n - tab_len) * sizeof(*t));
		tab = t;
		tab_len = n;
	}
	tab[fd] = *e;
}

static void tab_clear(int fd)
{
	if (fd >= 0 && fd < tab_len)
		memset(&tab[fd], 0, sizeof(tab[fd]));
}

static int emulated(int fd)
{
	return enabled && fd >= 0 && fd < tab_len && tab[fd].id;
}

static void lock_shim(void)
{
	pthread_mutex_lock(&lock);
	in_shim = 1;
}

static void unlock_shim(void)
{
	in_shim = 0;
	pthread_mutex_unlock(&lock);
}

/* ---------------------------------------------------------------- socket I/O */

static int send_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len) {
		long n = syscall(SYS_sendto, fd, p, len, MSG_NOSIGNAL, NULL, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int recv_all(int fd, void *buf, size_t len)
{
	unsigned char *p = buf;
	while (len) {
		long n = syscall(SYS_recvfrom, fd, p, len, 0, NULL, NULL);
		if (n == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * recvfrom that waits a little for an answer by polling (MSG_DONTWAIT) before it blocks: the server
 * usually answers within tens of microseconds, and a blocked process takes about as long again to
 * be woken up. Returns what recvfrom returns (EINTR and EAGAIN are retried).
 */
#define SPIN_NS 150000
static long recv_spin(int fd, void *buf, size_t len, int flags)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int wait = MSG_DONTWAIT;
	for (unsigned i = 1;; i++) {
		if (wait && (i & 15) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > SPIN_NS)
				wait = 0;
		}
		long n = syscall(SYS_recvfrom, fd, buf, len, flags | wait, NULL, NULL);
		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return n;
	}
}

static int send_frame(int fd, uint32_t kind, const void *payload, uint32_t len)
{
	unsigned char small[8 + 512];
	if (len <= 512) {
		memcpy(small, &len, 4);
		memcpy(small + 4, &kind, 4);
		if (len)
			memcpy(small + 8, payload, len);
		return send_all(fd, small, 8 + len);
	}
	uint32_t h[2] = { len, kind };
	if (send_all(fd, h, 8) < 0)
		return -1;
	return send_all(fd, payload, len);
}

/*
 * Read-ahead on the channel: the server sends one frame at a time there and then waits for us, so
 * reading up to sizeof(ra) bytes at once never takes more than that frame, and a small RESULT
 * costs one recvfrom instead of three. Only for the channel: file sockets carry READY frames that
 * must stay in the socket (they are what poll() sees).
 */
static unsigned char ra[256];
static uint32_t ra_off, ra_len;
static int ra_fd = -1;

static void ra_reset(void)
{
	ra_fd = -1;
	ra_off = ra_len = 0;
}

/* Exactly len bytes of fd's stream: what the read-ahead holds first, then the socket. */
static int take(int fd, void *buf, size_t len)
{
	unsigned char *p = buf;
	if (fd == ra_fd && ra_off < ra_len) {
		size_t k = ra_len - ra_off < len ? ra_len - ra_off : len;
		memcpy(p, ra + ra_off, k);
		ra_off += (uint32_t)k;
		p += k;
		len -= k;
	}
	return len ? recv_all(fd, p, len) : 0;
}

/* The next frame's header (polling a while first, see recv_spin). */
static int next_header(int fd, uint32_t h[2])
{
	if (fd != chan) {
		unsigned char b;
		if (recv_spin(fd, &b, 1, MSG_PEEK) < 0)
			return -1;
		return recv_all(fd, h, 8);
	}
	if (ra_fd != fd || ra_off == ra_len) {
		ra_fd = fd;
		ra_off = ra_len = 0;
		long n = recv_spin(fd, ra, sizeof(ra), 0);
		if (n <= 0) {
			if (n == 0)
				errno = ECONNRESET;
			return -1;
		}
		ra_len = (uint32_t)n;
	}
	return take(fd, h, 8);
}

static int skip_bytes(int fd, uint32_t n)
{
	unsigned char junk[256];
	while (n) {
		uint32_t k = n < sizeof(junk) ? n : (uint32_t)sizeof(junk);
		if (take(fd, junk, k) < 0)
			return -1;
		n -= k;
	}
	return 0;
}

static int connect_server(int cloexec)
{
	int s = (int)syscall(SYS_socket, AF_UNIX, SOCK_STREAM | (cloexec ? SOCK_CLOEXEC : 0), 0);
	if (s < 0)
		return -1;
	if (syscall(SYS_connect, s, &srv_addr, srv_len) < 0) {
		int e = errno;
		syscall(SYS_close, s);
		errno = e;
		return -1;
	}
	return s;
}

/* ---------------------------------------------------------------- serving the server */

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Copy [addr, addr+len) of our own memory into buf: 0, or -1 when any byte is unreadable. */
static int mem_read(uint64_t addr, void *buf, size_t len)
{
	struct iovec l = { buf, len }, r = { (void *)(uintptr_t)addr, len };
	long n = syscall(SYS_process_vm_readv, sc_getpid(), &l, 1, &r, 1, 0);
	if (n == (long)len)
		return 0;
	if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
		int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/mem", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -1;
		n = syscall(SYS_pread64, fd, buf, len, (off_t)addr);
		syscall(SYS_close, fd);
		return n == (long)len ? 0 : -1;
	}
	return -1;
}

static int mem_write(uint64_t addr, const void *buf, size_t len)
{
	struct iovec l = { (void *)buf, len }, r = { (void *)(uintptr_t)addr, len };
	long n = syscall(SYS_process_vm_writev, sc_getpid(), &l, 1, &r, 1, 0);
	return n == (long)len ? 0 : -1;
}

/* The /proc/self/smaps entries overlapping [addr, addr+len): header lines + KernelPageSize. */
static void serve_maps(int fd, uint64_t addr, uint64_t len)
{
	size_t cap = 1 << 16, used = 0;
	char *text = malloc(cap);
	int sfd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/smaps", O_RDONLY | O_CLOEXEC);
	if (text && sfd >= 0) {
		for (;;) {
			if (cap - used < 4096) {
				char *t = realloc(text, cap * 2);
				if (!t)
					break;
				text = t;
				cap *= 2;
			}
			long n = syscall(SYS_read, sfd, text + used, cap - used - 1);
			if (n <= 0)
				break;
			used += (size_t)n;
		}
	}
	if (sfd >= 0)
		syscall(SYS_close, sfd);
	unsigned char *out = xbuf + 8;
	size_t o = 8, limit = MEM_CHUNK - 256;
	uint32_t flags = 0;
	int take = 0;
	uint64_t end = addr + len < addr ? UINT64_MAX : addr + len;
	for (size_t i = 0; text && i < used;) {
		char *line = text + i;
		char *nl = memchr(line, '\n', used - i);
		size_t ll = nl ? (size_t)(nl - line) + 1 : used - i;
		i += ll;
		char *dash = NULL;
		unsigned long long s = strtoull(line, &dash, 16);
		if (dash && *dash == '-' && dash != line) {
			char *sp = NULL;
			unsigned long long e = strtoull(dash + 1, &sp, 16);
			if (sp && *sp == ' ') {
				take = s < end && e > addr;
				if (take && o + ll + 64 > limit) {
					flags |= 1;
					break;
				}
			}
		} else if (!take || strncmp(line, "KernelPageSize:", 15) != 0) {
			continue;
		}
		if (!take)
			continue;
		memcpy(out + o, line, ll);
		o += ll;
		if (!nl)
			out[o++] = '\n';
	}
	free(text);
	put32(out, flags);
	put32(out + 4, 0);
	send_frame(fd, K_MAPS_DATA, out, (uint32_t)o);
}

static int install_fd(int fd, const unsigned char *p);
static void close_fd(int fd, const unsigned char *p);

/* Tell the server's doorbell that a frame went out on the channel. */
static void ring(int fd)
{
	if (fd == chan && bell_ctr)
		__atomic_fetch_add(bell_ctr, 1, __ATOMIC_RELEASE);
}

/* Map the server's bell file (once per process image; fork children share the mapping). Locked. */
static void map_bell(void)
{
	if (bell_map)
		return;
	char path[sizeof(srv_addr.sun_path) + 8];
	snprintf(path, sizeof(path), "%s.bell", srv_addr.sun_path);
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	struct stat st;
	if (syscall(SYS_fstat, fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= BELL_SLOTS * BELL_SLOT_BYTES) {
		void *m = (void *)syscall(SYS_mmap, NULL, BELL_SLOTS * BELL_SLOT_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m != MAP_FAILED)
			bell_map = m;
	}
	syscall(SYS_close, fd);
}

/*
 * Send one request on fd and serve the server's requests until its RESULT. Returns the result
 * (>= 0, or -errno). extra/extra_max receive the RESULT's bytes after the i64. -EIO when the
 * connection broke (it is then closed if it is the channel).
 */
static int64_t request(int fd, uint32_t kind, const void *payload, uint32_t len, void *extra, size_t extra_max)
{
	if (send_frame(fd, kind, payload, len) < 0)
		goto broken;
	ring(fd);
	for (;;) {
		uint32_t h[2];
		if (next_header(fd, h) < 0)
			goto broken;
		uint32_t n = h[0], k = h[1];
		if (n > MAX_PAYLOAD)
			goto broken;
		switch (k) {
		case K_RESULT: {
			if (n < 8 || take(fd, xbuf, n) < 0)
				goto broken;
			int64_t ret;
			memcpy(&ret, xbuf, 8);
			if (extra && extra_max)
				memcpy(extra, xbuf + 8, n - 8 < extra_max ? n - 8 : extra_max);
			return ret;
		}
		case K_RESULT_WRITE: {
			/* {i64 ret, u64 addr, bytes}: the call's last store (an ioctl's copy-back), then ret,
			 * or -EFAULT when the store faults, as the kernel's copy_to_user would. */
			if (n < 16 || take(fd, xbuf, n) < 0)
				goto broken;
			int64_t ret;
			memcpy(&ret, xbuf, 8);
			if (n > 16 && mem_write(get64(xbuf + 8), xbuf + 16, n - 16) < 0)
				ret = -EFAULT;
			return ret;
		}
		case K_READ_MEM: {
			unsigned char q[16];
			if (n != 16 || take(fd, q, 16) < 0)
				goto broken;
			uint64_t addr = get64(q);
			uint32_t want = get32(q + 8);
			unsigned char *out = xbuf;
			put32(out + 4, 0);
			if (want > MEM_CHUNK || mem_read(addr, out + 8, want) < 0) {
				put32(out, EFAULT);
				if (send_frame(fd, K_MEM_DATA, out, 8) < 0)
					goto broken;
			} else {
				put32(out, 0);
				if (send_frame(fd, K_MEM_DATA, out, 8 + want) < 0)
					goto broken;
			}
			break;
		}
		case K_WRITE_MEM: {
			if (n < 8 || take(fd, xbuf, n) < 0)
				goto broken;
			unsigned char a[8] = { 0 };
			put32(a, mem_write(get64(xbuf), xbuf + 8, n - 8) < 0 ? EFAULT : 0);
			if (send_frame(fd, K_MEM_ACK, a, 8) < 0)
				goto broken;
			break;
		}
		case K_MAPS: {
			unsigned char q[16];
			if (n != 16 || take(fd, q, 16) < 0)
				goto broken;
			serve_maps(fd, get64(q), get64(q + 8));
			break;
		}
		case K_INSTALL_FD: {
			unsigned char q[24];
			if (n != 24 || take(fd, q, 24) < 0)
				goto broken;
			unsigned char a[8] = { 0 };
			put32(a, (uint32_t)install_fd(fd, q));
			if (send_frame(fd, K_FD_INSTALLED, a, 8) < 0)
				goto broken;
			break;
		}
		case K_CLOSE_FD: {
			unsigned char q[8];
			if (n != 8 || take(fd, q, 8) < 0)
				goto broken;
			close_fd(fd, q);
			break;
		}
		default:
			if (skip_bytes(fd, n) < 0)
				goto broken;
			break;
		}
		ring(fd); /* every case but RESULT answered with a frame */
	}
broken:
	if (fd == chan) {
		ra_reset();
		syscall(SYS_close, chan);
		chan = -1;
		hello_reason = R_RECONNECT;
	}
	return -EIO;
}

/* INSTALL_FD {u64 token, u64 file id, u32 kind, u32 open flags}: a new socket for an ioctl-made file. */
static int install_fd(int fd, const unsigned char *p)
{
	(void)fd;
	uint32_t oflags = get32(p + 20);
	int s = connect_server(!!(oflags & O_CLOEXEC));
	if (s < 0)
		return -errno;
	unsigned char a[8];
	memcpy(a, p, 8);
	if (send_frame(s, K_ATTACH, a, 8) < 0) {
		int e = errno;
		syscall(SYS_close, s);
		return -e;
	}
	struct ent e = { .id = get64(p + 8), .kind = (uint8_t)get32(p + 16), .vfio = 0 };
	tab_set(s, &e);
	return s;
}

static void close_fd(int fd, const unsigned char *p)
{
	int victim = (int)get32(p);
	unsigned char a[8] = { 0 };
	if (emulated(victim)) {
		tab_clear(victim);
		syscall(SYS_close, victim);
	} else {
		put32(a, EBADF);
	}
	send_frame(fd, K_CLOSE_ACK, a, 8);
}

/* ---------------------------------------------------------------- the channel */

static int high_fd_base(void)
{
	struct rlimit rl;
	long lim = 1024;
	if (syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) == 0 && rl.rlim_cur < 1024)
		lim = (long)rl.rlim_cur;
	long base = lim - 16;
	return base < 3 ? 3 : (int)base;
}

static uint64_t cap_effective(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) < 0)
		return 0;
	return (uint64_t)d[0].effective | ((uint64_t)d[1].effective << 32);
}

/* Make sure this process has a live channel (after fork or a close of ours: a new one). Locked. */
static int ensure_channel(void)
{
	pid_t me = (pid_t)sc_getpid();
	if (chan >= 0 && chan_pid != me) {
		/* a fork we did not see (clone): the channel is the parent's */
		syscall(SYS_close, chan);
		chan = -1;
		hello_reason = R_FORK_CHILD;
	}
	if (chan >= 0) {
		struct stat st;
		if (syscall(SYS_fstat, chan, &st) == 0 && st.st_ino == chan_ino && st.st_dev == chan_dev)
			return 0;
		chan = -1; /* someone closed or replaced it (close_range): that number is not ours any more */
		hello_reason = R_RECONNECT;
	}
	int s = connect_server(1);
	if (s < 0)
		return -1;
	int h = (int)syscall(SYS_fcntl, s, F_DUPFD_CLOEXEC, high_fd_base());
	if (h >= 0) {
		syscall(SYS_close, s);
		s = h;
	}
	struct stat st;
	if (syscall(SYS_fstat, s, &st) < 0) {
		syscall(SYS_close, s);
		return -1;
	}
	chan_dev = st.st_dev;
	chan_ino = st.st_ino;
	chan = s;
	chan_pid = me;
	struct rlimit rl = { 0, 0 };
	syscall(SYS_prlimit64, 0, RLIMIT_MEMLOCK, NULL, &rl);
	unsigned char p[40];
	memset(p, 0, sizeof(p));
	put32(p, PROTOCOL_VERSION);
	put32(p + 4, (uint32_t)me);
	put32(p + 8, (uint32_t)syscall(SYS_getppid));
	put32(p + 12, (uint32_t)hello_reason);
	put32(p + 16, (uint32_t)syscall(SYS_geteuid));
	map_bell();
	put32(p + 20, bell_map ? HELLO_BELL : 0);
	put64(p + 24, cap_effective());
	put64(p + 32, rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur);
	ra_reset();
	bell_ctr = NULL;
	unsigned char slot[4];
	memset(slot, 0xff, sizeof(slot));
	if (request(chan, K_HELLO, p, sizeof(p), slot, sizeof(slot)) < 0) {
		if (chan >= 0)
			syscall(SYS_close, chan);
		chan = -1;
		return -1;
	}
	uint32_t sl = get32(slot);
	if (sl < BELL_SLOTS && bell_map)
		bell_ctr = (uint32_t *)(bell_map + (size_t)sl * BELL_SLOT_BYTES);
	hello_reason = R_RECONNECT;
	return 0;
}

/* The channel exists for this process (reports are only sent then). Locked. */
static int have_channel(void)
{
	return chan >= 0 && chan_pid == (pid_t)sc_getpid();
}

/* An fd we do not know that is a socket connected to the server (inherited across exec): ask. Locked. */
static int identify(int fd, struct ent *out)
{
	struct stat st;
	if (syscall(SYS_fstat, fd, &st) < 0 || !S_ISSOCK(st.st_mode))
		return 0;
	struct sockaddr_un a;
	socklen_t al = sizeof(a);
	memset(&a, 0, sizeof(a));
	if (syscall(SYS_getpeername, fd, &a, &al) < 0 || al != srv_len || memcmp(&a, &srv_addr, al) != 0)
		return 0;
	if (ensure_channel() < 0)
		return 0;
	uint64_t nonce = 0;
	if (syscall(SYS_getrandom, &nonce, sizeof(nonce), 0) != sizeof(nonce))
		nonce = ((uint64_t)sc_getpid() << 32) ^ (uint64_t)fd ^ (uint64_t)(uintptr_t)&nonce;
	unsigned char q[16] = { 0 };
	put64(q, nonce);
	if (send_frame(fd, K_IDENTIFY, q, 8) < 0)
		return 0;
	put32(q + 8, (uint32_t)fd);
	unsigned char x[16];
	if (request(chan, K_WHOIS, q, 16, x, sizeof(x)) < 0)
		return 0;
	struct ent e = { .id = get64(x), .kind = (uint8_t)get32(x + 8), .vfio = 0 };
	tab_set(fd, &e);
	*out = e;
	return 1;
}

/* Tell the server an fd of file id was closed; it answers once it has seen the EOF if that was the last one. */
static void closed_barrier(const struct ent *e, int fd)
{
	if (ensure_channel() < 0)
		return;
	unsigned char p[16] = { 0 };
	put64(p, e->id);
	put32(p + 8, (uint32_t)fd);
	request(chan, K_CLOSED, p, 16, NULL, 0);
}

static void range_report(uint32_t what, uint64_t addr, uint64_t len)
{
	if (!enabled || in_shim)
		return;
	lock_shim();
	if (have_channel()) {
		unsigned char p[24] = { 0 };
		put64(p, addr);
		put64(p + 8, len);
		put32(p + 16, what);
		request(chan, K_RANGE, p, 24, NULL, 0);
	}
	unlock_shim();
}

/* ---------------------------------------------------------------- constructor / destructor */

/* "0-2,5" -> set; 0 when the list is malformed or empty. */
static int parse_cpulist(const char *s, const char *end, cpu_set_t *set)
{
	CPU_ZERO(set);
	int any = 0;
	while (s < end) {
		char *e;
		long a = strtol(s, &e, 10), b = a;
		if (e == s || a < 0 || a >= CPU_SETSIZE)
			return 0;
		s = e;
		if (s < end && *s == '-') {
			b = strtol(s + 1, &e, 10);
			if (e == s + 1 || b < a || b >= CPU_SETSIZE)
				return 0;
			s = e;
		}
		for (long c = a; c <= b; c++)
			CPU_SET((int)c, set);
		any = 1;
		if (s < end && *s != ',')
			return 0;
		if (s < end)
			s++;
	}
	return any;
}

/*
 * SOFTIOMMU_PIN=SERVER_TID:SERVER_CPUS:PROGRAM_CPUS (softiommu run --pin): put the server's main
 * thread and this program on different CPUs. When the two share a CPU, the one that polls keeps
 * the other from running; and once a wake-up has put them together the scheduler tends to keep
 * them there (see README, "Latency"). Best effort: a failure leaves the affinities as they were.
 */
static void apply_pin(const char *spec)
{
	const char *c1 = strchr(spec, ':');
	const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c1 || !c2)
		return;
	long tid = strtol(spec, NULL, 10);
	cpu_set_t srv, prog;
	if (tid <= 0 || !parse_cpulist(c1 + 1, c2, &srv) || !parse_cpulist(c2 + 1, c2 + strlen(c2), &prog))
		return;
	syscall(SYS_sched_setaffinity, (pid_t)tid, sizeof(srv), &srv);
	syscall(SYS_sched_setaffinity, 0, sizeof(prog), &prog);
}

__attribute__((constructor)) static void shim_init(void)
{
	const char *p = getenv("SOFTIOMMU_SOCKET");
	if (!p || !*p)
		return;
	size_t n = strlen(p);
	if (n >= sizeof(srv_addr.sun_path)) {
		static const char msg[] = "softiommu shim: SOFTIOMMU_SOCKET path too long; not emulating\n";
		syscall(SYS_write, 2, msg, sizeof(msg) - 1);
		return;
	}
	srv_addr.sun_family = AF_UNIX;
	memcpy(srv_addr.sun_path, p, n + 1);
	srv_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	void *fp = (void *)syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fp != MAP_FAILED) {
		if (syscall(SYS_madvise, fp, 4096, MADV_WIPEONFORK) == 0)
			forkpage = fp;
		else
			syscall(SYS_munmap, fp, 4096);
	}
	const char *pin = getenv("SOFTIOMMU_PIN");
	if (pin && *pin)
		apply_pin(pin);
	enabled = 1;
}

__attribute__((destructor)) static void shim_fini(void)
{
	if (!enabled || in_shim || pthread_mutex_trylock(&lock) != 0)
		return;
	in_shim = 1;
	if (have_channel())
		request(chan, K_EXIT, NULL, 0, NULL, 0);
	unlock_shim();
}

/* ---------------------------------------------------------------- open */

/* Path tests through a call the compiler cannot see into: glibc declares these paths nonnull, but a
 * NULL from the program must reach the kernel (EFAULT), not crash here. */
__attribute__((noinline)) static int is_abs(const char *p) { return p && p[0] == '/'; }
__attribute__((noinline)) static int is_empty(const char *p) { return p && !p[0]; }

__attribute__((noinline)) static int path_kind(const char *path)
{
	if (!path)
		return -1;
	if (strcmp(path, "/dev/iommu") == 0)
		return 0;
	if (strcmp(path, "/dev/vfio/vfio") == 0)
		return 1;
	return -1;
}


/* ---------------------------------------------------------------- fault injection (fail-nth, debugfs) */

/*
 * The kernel's fail-nth interface: /proc/<pid>/task/<tid>/fail-nth (and /proc/self/..., /proc/
 * thread-self/fail-nth). Writing N makes the Nth fault-injection call of that thread fail; reading
 * gives the count still to go ("0\n" once the failure fired). The counter lives in the server (the
 * injection points are the model's); the fd is /dev/null with a shim-only table entry {id = tid}.
 * Returns the tid, 0 when the path is not a fail-nth file.
 */
static uint32_t failnth_path(const char *path)
{
	if (!path || strncmp(path, "/proc/", 6) != 0)
		return 0;
	const char *q = path + 6;
	if (strcmp(q, "thread-self/fail-nth") == 0)
		return sc_gettid();
	if (strncmp(q, "self/", 5) == 0) {
		q += 5;
	} else {
		char *end;
		unsigned long pid = strtoul(q, &end, 10);
		if (end == q || *end != '/' || pid == 0)
			return 0;
		q = end + 1;
	}
	if (strncmp(q, "task/", 5) != 0)
		return 0;
	q += 5;
	char *end;
	unsigned long tid = strtoul(q, &end, 10);
	if (end == q || tid == 0 || tid > 0x3fffffff || strcmp(end, "/fail-nth") != 0)
		return 0;
	return (uint32_t)tid;
}

static int failnth_open(uint32_t tid, int flags)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", (flags & (O_ACCMODE | O_CLOEXEC)), 0);
	if (fd < 0)
		return fd;
	lock_shim();
	struct ent e = { .id = tid, .kind = F_FAILNTH, .vfio = 0 };
	tab_set(fd, &e);
	unlock_shim();
	return fd;
}

/* FAILNTH {u32 tid, u32 op (0 get, 1 set), u64 value} -> RESULT {count}. Locked. */
static int64_t failnth_request(uint32_t tid, uint32_t op, uint64_t value)
{
	if (ensure_channel() < 0)
		return -EIO;
	unsigned char p[16] = { 0 };
	put32(p, tid);
	put32(p + 4, op);
	put64(p + 8, value);
	return request(chan, K_FAILNTH, p, 16, NULL, 0);
}

/* read/write of a fail-nth fd (proc_fail_nth_read / proc_fail_nth_write). Locked. */
static ssize_t failnth_rw(const struct ent *e, int write, void *buf, size_t count, uint64_t pos)
{
	if (write) {
		/* kstrtouint_from_user(buf, count, 0, &n): one number, optional trailing newline */
		char s[32];
		if (count == 0 || count >= sizeof(s))
			return -EINVAL;
		if (mem_read((uintptr_t)buf, s, count) < 0)
			return -EFAULT;
		s[count] = 0;
		if (s[count - 1] == '\n')
			s[count - 1] = 0;
		if (!s[0] || s[0] == '-' || s[0] == '+' || s[0] == ' ')
			return -EINVAL;
		char *end;
		errno = 0;
		unsigned long long n = strtoull(s, &end, 0);
		if (*end || errno)
			return -EINVAL;
		if (n > 0x7fffffffULL)
			return -EINVAL;
		int64_t r = failnth_request((uint32_t)e->id, 1, n);
		return r < 0 ? (ssize_t)r : (ssize_t)count;
	}
	int64_t r = failnth_request((uint32_t)e->id, 0, 0);
	if (r < 0)
		return (ssize_t)r;
	char s[32];
	int len = snprintf(s, sizeof(s), "%u\n", (unsigned)r);
	if (pos >= (uint64_t)len)
		return 0;
	size_t n = (size_t)len - (size_t)pos;
	if (n > count)
		n = count;
	if (mem_write((uintptr_t)buf, s + pos, n) < 0)
		return -EFAULT;
	return (ssize_t)n;
}

/*
 * debugfs as the fault-injection selftest sees it: /sys/kernel/debug/ with failslab,
 * fail_page_alloc and fail_iommufd directories whose attribute files accept writes. It is a real
 * directory next to the server socket (so opendir/readdir/dirfd/openat work unchanged); opendir
 * and absolute opens of /sys/kernel/debug/fail* are redirected there.
 */
static char debugfs_dir[sizeof(((struct sockaddr_un *)0)->sun_path) + 32];

static const char *debugfs_root(void)
{
	if (debugfs_dir[0])
		return debugfs_dir;
	char base[sizeof(debugfs_dir)];
	snprintf(base, sizeof(base), "%s", srv_addr.sun_path);
	char *slash = strrchr(base, '/');
	if (!slash)
		return NULL;
	*slash = 0;
	char d[sizeof(debugfs_dir) + 64];
	snprintf(d, sizeof(d), "%s/debugfs", base);
	syscall(SYS_mkdirat, AT_FDCWD, d, 0700);
	static const char *const dirs[] = { "failslab", "fail_page_alloc", "fail_iommufd" };
	static const char *const files[][2] = {
		{ "ignore-gfp-wait", "Y\n" }, { "ignore-gfp-highmem", "Y\n" }, { "verbose", "2\n" },
		{ "probability", "0\n" }, { "interval", "1\n" }, { "times", "1\n" }, { "space", "0\n" },
		{ "task-filter", "N\n" },
	};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char sub[sizeof(d) + 64];
		snprintf(sub, sizeof(sub), "%s/%s", d, dirs[i]);
		syscall(SYS_mkdirat, AT_FDCWD, sub, 0700);
		for (size_t j = 0; j < sizeof(files) / sizeof(files[0]); j++) {
			char f[sizeof(sub) + 64];
			snprintf(f, sizeof(f), "%s/%s", sub, files[j][0]);
			int fd = (int)syscall(SYS_openat, AT_FDCWD, f, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd >= 0) {
				syscall(SYS_write, fd, files[j][1], strlen(files[j][1]));
				syscall(SYS_close, fd);
			}
		}
	}
	if (strlen(d) >= sizeof(debugfs_dir))
		return NULL;
	memcpy(debugfs_dir, d, strlen(d) + 1);
	return debugfs_dir;
}

/* "/sys/kernel/debug[/rest]" -> the emulated directory (into out); NULL when not such a path. */
static const char *debugfs_path(const char *path, char *out, size_t outlen)
{
	static const char pre[] = "/sys/kernel/debug";
	if (!enabled || !path || strncmp(path, pre, sizeof(pre) - 1) != 0)
		return NULL;
	const char *rest = path + sizeof(pre) - 1;
	while (*rest == '/')
		rest++;
	if (path[sizeof(pre) - 1] != 0 && path[sizeof(pre) - 1] != '/')
		return NULL;
	if (*rest && strncmp(rest, "fail", 4) != 0)
		return NULL; /* only the fault-injection part of debugfs is emulated */
	const char *root = debugfs_root();
	if (!root)
		return NULL;
	snprintf(out, outlen, "%s/%s", root, rest);
	return out;
}

EXPORT DIR *opendir(const char *name)
{
	static DIR *(*real_opendir)(const char *);
	if (!real_opendir)
		real_opendir = (DIR * (*)(const char *)) dlsym(RTLD_NEXT, "opendir");
	if (!real_opendir) {
		errno = ENOSYS;
		return NULL;
	}
	char buf[PATH_MAX];
	const char *p = debugfs_path(name, buf, sizeof(buf));
	return real_opendir(p ? p : name);
}

/* -2: not emulated (fall through to the real open). */
static int emu_open(int which, int flags)
{
	lock_shim();
	if (ensure_channel() < 0) {
		unlock_shim();
		return -2;
	}
	int s = connect_server(!!(flags & O_CLOEXEC));
	if (s < 0) {
		int e = errno;
		unlock_shim();
		errno = e;
		return -1;
	}
	unsigned char p[24] = { 0 };
	put32(p, PROTOCOL_VERSION);
	put32(p + 4, (uint32_t)sc_getpid());
	put32(p + 8, (uint32_t)s);
	put32(p + 12, (uint32_t)flags);
	put32(p + 16, (uint32_t)which);
	put32(p + 20, sc_gettid()); /* the opening thread (fail-nth) */
	unsigned char x[8] = { 0 };
	int64_t r = request(s, K_OPEN, p, 24, x, 8);
	if (r < 0) {
		syscall(SYS_close, s);
		unlock_shim();
		errno = (int)-r;
		return -1;
	}
	struct ent e = { .id = get64(x), .kind = F_IOMMUFD, .vfio = (uint8_t)which };
	tab_set(s, &e);
	unlock_shim();
	return s;
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	int k = enabled ? path_kind(path) : -1;
	if (k >= 0) {
		int saved = errno;
		int r = emu_open(k, flags);
		if (r != -2)
			return r;
		errno = saved;
	}
	if (enabled && dirfd == AT_FDCWD) {
		uint32_t tid = failnth_path(path);
		if (tid)
			return failnth_open(tid, flags);
		char buf[PATH_MAX];
		const char *p = debugfs_path(path, buf, sizeof(buf));
		if (p)
			return (int)syscall(SYS_openat, AT_FDCWD, p, flags, mode);
	}
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	return do_openat(AT_FDCWD, path, flags, m);
}

EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	return do_openat(AT_FDCWD, path, flags, m);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	return do_openat(is_abs(path) ? AT_FDCWD : dirfd, path, flags, m);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	return do_openat(is_abs(path) ? AT_FDCWD : dirfd, path, flags, m);
}

/* _FORTIFY_SOURCE variants */
EXPORT int __open_2(const char *path, int flags) { return do_openat(AT_FDCWD, path, flags, 0); }
EXPORT int __open64_2(const char *path, int flags) { return do_openat(AT_FDCWD, path, flags, 0); }
EXPORT int __openat_2(int dirfd, const char *path, int flags) { return do_openat(dirfd, path, flags, 0); }
EXPORT int __openat64_2(int dirfd, const char *path, int flags) { return do_openat(dirfd, path, flags, 0); }

/* ---------------------------------------------------------------- ioctl */

EXPORT int ioctl(int fd, unsigned long request_nr, ...)
{
	va_list ap;
	va_start(ap, request_nr);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	if (!enabled || in_shim)
		return (int)syscall(SYS_ioctl, fd, request_nr, arg);
	int saved = errno;
	lock_shim();
	struct ent e;
	if ((!tab_get(fd, &e) && !identify(fd, &e)) || e.kind == F_FAILNTH) {
		unlock_shim();
		errno = saved;
		return (int)syscall(SYS_ioctl, fd, request_nr, arg);
	}
	if (ensure_channel() < 0) {
		unlock_shim();
		errno = EIO;
		return -1;
	}
	uint32_t cmd = (uint32_t)request_nr;
	static unsigned char p[32 + PREFETCH_MAX];
	uint32_t plen = 0;
	/* the bytes copy_struct_from_user reads: the u32 size, then that many (for ';' ioctls) */
	if (((cmd >> 8) & 0xff) == IOMMUFD_TYPE && arg) {
		/* one read for the usual small struct: up to 256 bytes, not past arg's page (the same
		 * page is readable all or nothing); a second one only when the struct is longer */
		uint32_t first = 4096 - (uint32_t)(arg & 4095);
		if (first > 256)
			first = 256;
		uint32_t size;
		int have = 0;
		if (first >= 4 && mem_read(arg, p + 32, first) == 0) {
			memcpy(&size, p + 32, 4);
			have = 1;
		} else if (first < 4 && mem_read(arg, &size, 4) == 0) {
			first = 0;
			have = 1;
		}
		if (have) {
			plen = size < 4 ? 4 : size > PREFETCH_MAX ? PREFETCH_MAX : size;
			if (plen > first && mem_read(arg, p + 32, plen) < 0) {
				memcpy(p + 32, &size, 4);
				plen = 4;
			}
		}
	}
	put64(p, e.id);
	put64(p + 8, arg);
	put32(p + 16, (uint32_t)fd);
	put32(p + 20, sc_gettid());
	put32(p + 24, cmd);
	put32(p + 28, plen);
	int64_t r = request(chan, K_IOCTL, p, 32 + plen, NULL, 0);
	unlock_shim();
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	errno = saved;
	return (int)r;
}

/* ---------------------------------------------------------------- read / write */

static void drain(int fd)
{
	unsigned char junk[512];
	while (syscall(SYS_recvfrom, fd, junk, sizeof(junk), MSG_DONTWAIT, NULL, NULL) > 0)
		;
}

static ssize_t emu_rw(int fd, uint32_t kind, uint64_t buf, size_t count, uint64_t pos)
{
	int saved = errno;
	lock_shim();
	struct ent e;
	if (!tab_get(fd, &e)) {
		unlock_shim();
		return -2;
	}
	if (e.kind == F_FAILNTH) {
		ssize_t r = failnth_rw(&e, kind == K_WRITE, (void *)(uintptr_t)buf, count, pos == UINT64_MAX ? 0 : pos);
		unlock_shim();
		if (r < 0) {
			errno = (int)-r;
			return -1;
		}
		errno = saved;
		return r;
	}
	if (ensure_channel() < 0) {
		unlock_shim();
		errno = EIO;
		return -1;
	}
	uint32_t flags = 0;
	if ((e.kind == F_FAULT || e.kind == F_VEVENTQ) && kind == K_READ) {
		drain(fd);
		flags |= 1;
	}
	unsigned char p[40] = { 0 };
	put64(p, e.id);
	put64(p + 8, buf);
	put64(p + 16, (uint64_t)count);
	put64(p + 24, pos);
	put32(p + 32, (uint32_t)fd);
	put32(p + 36, flags);
	int64_t r = request(chan, kind, p, 40, NULL, 0);
	unlock_shim();
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	errno = saved;
	return (ssize_t)r;
}

EXPORT ssize_t read(int fd, void *buf, size_t count)
{
	if (emulated(fd) && !in_shim) {
		ssize_t r = emu_rw(fd, K_READ, (uintptr_t)buf, count, UINT64_MAX);
		if (r != -2)
			return r;
	}
	return syscall(SYS_read, fd, buf, count);
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
	(void)buflen;
	return read(fd, buf, count);
}

EXPORT ssize_t write(int fd, const void *buf, size_t count)
{
	if (emulated(fd) && !in_shim) {
		ssize_t r = emu_rw(fd, K_WRITE, (uintptr_t)buf, count, UINT64_MAX);
		if (r != -2)
			return r;
	}
	return syscall(SYS_write, fd, buf, count);
}

EXPORT ssize_t pread(int fd, void *buf, size_t count, off_t off)
{
	if (emulated(fd) && !in_shim) {
		if (off < 0) {
			errno = EINVAL;
			return -1;
		}
		ssize_t r = emu_rw(fd, K_READ, (uintptr_t)buf, count, (uint64_t)off);
		if (r != -2)
			return r;
	}
	return syscall(SYS_pread64, fd, buf, count, off);
}

EXPORT ssize_t pread64(int fd, void *buf, size_t count, off_t off) { return pread(fd, buf, count, off); }

EXPORT ssize_t pwrite(int fd, const void *buf, size_t count, off_t off)
{
	if (emulated(fd) && !in_shim) {
		if (off < 0) {
			errno = EINVAL;
			return -1;
		}
		ssize_t r = emu_rw(fd, K_WRITE, (uintptr_t)buf, count, (uint64_t)off);
		if (r != -2)
			return r;
	}
	return syscall(SYS_pwrite64, fd, buf, count, off);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t count, off_t off) { return pwrite(fd, buf, count, off); }

/* ---------------------------------------------------------------- close / dup */

EXPORT int close(int fd)
{
	if (!enabled || in_shim)
		return (int)syscall(SYS_close, fd);
	lock_shim();
	if (fd >= 0 && fd == chan && chan_pid == (pid_t)sc_getpid()) {
		/* the program closes an fd it never opened (a close-everything loop): keep our channel */
		unlock_shim();
		return 0;
	}
	struct ent e;
	int had = tab_get(fd, &e);
	if (had)
		tab_clear(fd);
	int r = (int)syscall(SYS_close, fd);
	int err = errno;
	if (had && r == 0 && e.kind != F_FAILNTH)
		closed_barrier(&e, fd);
	unlock_shim();
	errno = err;
	return r;
}

/* The program wants our channel's number: move the channel out of the way first. Locked. */
static void move_channel_from(int fd)
{
	if (fd < 0 || fd != chan)
		return;
	int h = (int)syscall(SYS_fcntl, chan, F_DUPFD_CLOEXEC, chan + 1);
	if (h < 0)
		return;
	struct stat st;
	syscall(SYS_fstat, h, &st);
	chan_dev = st.st_dev;
	chan_ino = st.st_ino;
	chan = h;
}

static int dup_into(int oldfd, int newfd, int flags, int use_dup3)
{
	if (!enabled || in_shim)
		return (int)(use_dup3 ? syscall(SYS_dup3, oldfd, newfd, flags) : syscall(SYS_dup2, oldfd, newfd));
	lock_shim();
	if (oldfd != newfd)
		move_channel_from(newfd);
	struct ent olde, newe;
	int had_old = tab_get(oldfd, &olde);
	int had_new = oldfd != newfd && tab_get(newfd, &newe);
	int r = (int)(use_dup3 ? syscall(SYS_dup3, oldfd, newfd, flags) : syscall(SYS_dup2, oldfd, newfd));
	int err = errno;
	if (r >= 0 && oldfd != newfd) {
		if (had_old)
			tab_set(newfd, &olde);
		else
			tab_clear(newfd);
		if (had_new)
			closed_barrier(&newe, newfd);
	}
	unlock_shim();
	errno = err;
	return r;
}

EXPORT int dup2(int oldfd, int newfd) { return dup_into(oldfd, newfd, 0, 0); }
EXPORT int dup3(int oldfd, int newfd, int flags) { return dup_into(oldfd, newfd, flags, 1); }

EXPORT int dup(int fd)
{
	int r = (int)syscall(SYS_dup, fd);
	if (r >= 0 && emulated(fd) && !in_shim) {
		int err = errno;
		lock_shim();
		struct ent e;
		if (tab_get(fd, &e))
			tab_set(r, &e);
		unlock_shim();
		errno = err;
	}
	return r;
}

static int do_fcntl(int fd, int cmd, unsigned long arg)
{
	int r = (int)syscall(SYS_fcntl, fd, cmd, arg);
	if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && emulated(fd) && !in_shim) {
		int err = errno;
		lock_shim();
		struct ent e;
		if (tab_get(fd, &e))
			tab_set(r, &e);
		unlock_shim();
		errno = err;
	}
	return r;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	return do_fcntl(fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	return do_fcntl(fd, cmd, arg);
}

/* ---------------------------------------------------------------- stat: a character device */

static void fake_stat(const struct ent *e, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	if (e->kind == F_IOMMUFD) {
		/* the kernel's misc devices: /dev/iommu 0660, /dev/vfio/vfio 0666 */
		st->st_mode = S_IFCHR | (e->vfio ? 0666 : 0660);
		st->st_rdev = e->vfio ? makedev(10, 196) : makedev(10, 123);
		st->st_dev = makedev(0, 5);
	} else {
		st->st_mode = 0600; /* an anon inode: no file type bits */
		st->st_dev = makedev(0, 15);
	}
	st->st_ino = (ino_t)e->id;
	st->st_nlink = 1;
	st->st_uid = (uid_t)syscall(SYS_geteuid);
	st->st_gid = (gid_t)syscall(SYS_getegid);
	st->st_blksize = 4096;
}

/*
 * readlink of /proc/self/fd/N (or /proc/thread-self/fd/N, /proc/<our pid>/fd/N) for an emulated
 * fd: what the kernel shows, "/dev/iommu" or the anon inode's name, not the socket behind it.
 * Returns the link's length and sets *out, or -1 when path is not such a link.
 */
static long fd_link(const char *path, const char **out)
{
	const char *p;
	char self[32];
	if (strncmp(path, "/proc/self/fd/", 14) == 0)
		p = path + 14;
	else if (strncmp(path, "/proc/thread-self/fd/", 21) == 0)
		p = path + 21;
	else {
		int n = snprintf(self, sizeof(self), "/proc/%ld/fd/", sc_getpid());
		if (n <= 0 || strncmp(path, self, (size_t)n) != 0)
			return -1;
		p = path + n;
	}
	char *end = NULL;
	long fd = strtol(p, &end, 10);
	struct ent e;
	if (!end || *end || end == p || fd < 0 || fd > INT32_MAX || !emulated((int)fd) || !tab_get((int)fd, &e))
		return -1;
	switch (e.kind) {
	case F_IOMMUFD: *out = e.vfio ? "/dev/vfio/vfio" : "/dev/iommu"; break;
	case F_FAULT: *out = "anon_inode:[iommufd-pgfault]"; break;
	case F_ACCESS: *out = "anon_inode:[iommufd_test_staccess]"; break;
	case F_VEVENTQ: *out = "anon_inode:[iommufd-viommu-event]"; break;
	default: return -1;
	}
	return (long)strlen(*out);
}

static ssize_t link_copy(const char *link, long n, char *buf, size_t size)
{
	size_t k = (size_t)n < size ? (size_t)n : size;
	memcpy(buf, link, k);
	return (ssize_t)k;
}

EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
{
	const char *link;
	long n = enabled && is_abs(path) ? fd_link(path, &link) : -1;
	if (n >= 0)
		return link_copy(link, n, buf, size);
	return (ssize_t)syscall(SYS_readlinkat, dirfd, path, buf, size);
}

EXPORT ssize_t readlink(const char *path, char *buf, size_t size) { return readlinkat(AT_FDCWD, path, buf, size); }

static int path_stat(const char *path, struct stat *st)
{
	int k = enabled ? path_kind(path) : -1;
	if (k < 0)
		return 0;
	struct ent e = { .id = k == 0 ? 1 : 2, .kind = F_IOMMUFD, .vfio = (uint8_t)k };
	fake_stat(&e, st);
	return 1;
}

static int fd_stat(int fd, struct stat *st)
{
	struct ent e;
	if (!emulated(fd) || !tab_get(fd, &e) || e.kind == F_FAILNTH)
		return 0;
	fake_stat(&e, st);
	return 1;
}

EXPORT int fstat(int fd, struct stat *st)
{
	if (fd_stat(fd, st))
		return 0;
	return (int)syscall(SYS_fstat, fd, st);
}
EXPORT int fstat64(int fd, struct stat64 *st) { return fstat(fd, (struct stat *)st); }

EXPORT int stat(const char *path, struct stat *st)
{
	if (path_stat(path, st))
		return 0;
	return (int)syscall(SYS_newfstatat, AT_FDCWD, path, st, 0);
}
EXPORT int stat64(const char *path, struct stat64 *st) { return stat(path, (struct stat *)st); }

EXPORT int lstat(const char *path, struct stat *st)
{
	if (path_stat(path, st))
		return 0;
	return (int)syscall(SYS_newfstatat, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}
EXPORT int lstat64(const char *path, struct stat64 *st) { return lstat(path, (struct stat *)st); }

EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	if ((flags & AT_EMPTY_PATH) && is_empty(path) && fd_stat(dirfd, st))
		return 0;
	if (is_abs(path) && path_stat(path, st))
		return 0;
	return (int)syscall(SYS_newfstatat, dirfd, path, st, flags);
}
EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags) { return fstatat(dirfd, path, (struct stat *)st, flags); }

/* glibc < 2.33 binaries call these */
EXPORT int __fxstat(int ver, int fd, struct stat *st) { (void)ver; return fstat(fd, st); }
EXPORT int __fxstat64(int ver, int fd, struct stat64 *st) { (void)ver; return fstat(fd, (struct stat *)st); }
EXPORT int __xstat(int ver, const char *path, struct stat *st) { (void)ver; return stat(path, st); }
EXPORT int __xstat64(int ver, const char *path, struct stat64 *st) { (void)ver; return stat(path, (struct stat *)st); }
EXPORT int __lxstat(int ver, const char *path, struct stat *st) { (void)ver; return lstat(path, st); }
EXPORT int __lxstat64(int ver, const char *path, struct stat64 *st) { (void)ver; return lstat(path, (struct stat *)st); }
EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags) { (void)ver; return fstatat(dirfd, path, st, flags); }
EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags) { (void)ver; return fstatat(dirfd, path, (struct stat *)st, flags); }

EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *sx)
{
	struct stat st;
	int ours = ((flags & AT_EMPTY_PATH) && is_empty(path) && fd_stat(dirfd, &st)) || (is_abs(path) && path_stat(path, &st));
	if (!ours)
		return (int)syscall(SYS_statx, dirfd, path, flags, mask, sx);
	memset(sx, 0, sizeof(*sx));
	sx->stx_mask = STATX_BASIC_STATS;
	sx->stx_mode = (uint16_t)st.st_mode;
	sx->stx_nlink = 1;
	sx->stx_uid = st.st_uid;
	sx->stx_gid = st.st_gid;
	sx->stx_ino = st.st_ino;
	sx->stx_blksize = 4096;
	sx->stx_rdev_major = major(st.st_rdev);
	sx->stx_rdev_minor = minor(st.st_rdev);
	sx->stx_dev_major = major(st.st_dev);
	sx->stx_dev_minor = minor(st.st_dev);
	return 0;
}

EXPORT int access(const char *path, int mode)
{
	if (enabled && path_kind(path) >= 0)
		return 0;
	return (int)syscall(SYS_faccessat, AT_FDCWD, path, mode);
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	if (enabled && path_kind(path) >= 0)
		return 0;
	if (flags == 0)
		return (int)syscall(SYS_faccessat, dirfd, path, mode);
	return (int)syscall(SYS_faccessat2, dirfd, path, mode, flags);
}

/* ---------------------------------------------------------------- memory map reports */

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (emulated(fd) && tab[fd].kind != F_FAILNTH) {
		errno = ENODEV; /* iommufd's own mmap (vIOMMU pages) is not emulated */
		return MAP_FAILED;
	}
	if (enabled && (flags & MAP_FIXED) && chan >= 0)
		range_report(W_UNMAP_PRE, (uintptr_t)addr, len);
	void *r = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	if (enabled && r != MAP_FAILED && chan >= 0) {
		int err = errno;
		range_report(W_MAPPED, (uintptr_t)r, len);
		errno = err;
	}
	return r;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void *addr, size_t len)
{
	if (enabled && chan >= 0)
		range_report(W_UNMAP_PRE, (uintptr_t)addr, len);
	return (int)syscall(SYS_munmap, addr, len);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (enabled && chan >= 0) {
		range_report(W_UNMAP_PRE, (uintptr_t)old, old_len);
		if (flags & MREMAP_FIXED)
			range_report(W_UNMAP_PRE, (uintptr_t)new_addr, new_len);
	}
	void *r = (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
	if (enabled && r != MAP_FAILED && chan >= 0) {
		int err = errno;
		range_report(W_MAPPED, (uintptr_t)r, new_len);
		errno = err;
	}
	return r;
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	int r = (int)syscall(SYS_madvise, addr, len, advice);
	if (r == 0 && enabled && chan >= 0 && (advice == MADV_DONTNEED || advice == MADV_FREE || advice == MADV_REMOVE)) {
		int err = errno;
		range_report(W_DONTNEED, (uintptr_t)addr, len);
		errno = err;
	}
	return r;
}

/* ---------------------------------------------------------------- fork */

EXPORT pid_t fork(void)
{
	static pid_t (*real_fork)(void);
	if (!real_fork)
		real_fork = (pid_t(*)(void))dlsym(RTLD_NEXT, "fork");
	if (!real_fork) {
		errno = ENOSYS;
		return -1;
	}
	if (!enabled || in_shim)
		return real_fork();
	lock_shim(); /* no request is half way through when the address space is copied */
	pid_t pid = real_fork();
	if (pid == 0) {
		pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
		memcpy(&lock, &fresh, sizeof(lock));
		in_shim = 0;
		if (chan >= 0)
			syscall(SYS_close, chan); /* the parent's; ours is made on first use */
		chan = -1;
		bell_ctr = NULL; /* the parent's slot */
		ra_reset();
		hello_reason = R_FORK_CHILD;
		return 0;
	}
	int err = errno;
	if (pid > 0 && have_channel()) {
		unsigned char p[8] = { 0 };
		put32(p, (uint32_t)pid);
		request(chan, K_FORK, p, 8, NULL, 0);
	}
	unlock_shim();
	errno = err;
	return pid;
}
