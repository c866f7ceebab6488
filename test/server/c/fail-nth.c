/*
 * The kernel's fail-nth interface through the shim (what iommufd_fail_nth uses): debugfs's
 * fault-injection directory accepts the selftest's writes and lists fail* entries;
 * /proc/self/task/<tid>/fail-nth arms the calling thread's counter, the Nth injection point fails,
 * the file then reads "0\n"; writing "0" disarms. Prints one line per check.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/iommufd.h>

static int ioas_alloc(int fd, unsigned *id)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	int r = ioctl(fd, IOMMU_IOAS_ALLOC, &a);
	*id = a.out_ioas_id;
	return r ? -errno : 0;
}

int main(void)
{
	DIR *d = opendir("/sys/kernel/debug/");
	if (!d) { printf("opendir: errno %d\n", errno); return 1; }
	int w = openat(dirfd(d), "failslab/ignore-gfp-wait", O_WRONLY);
	printf("writeat failslab/ignore-gfp-wait: %s\n", w >= 0 && write(w, "N", 1) == 1 ? "ok" : "failed");
	if (w >= 0) close(w);
	int nfail = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, "fail", 4) == 0)
			nfail++;
	closedir(d);
	printf("fail* entries: %d\n", nfail);

	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%ld/fail-nth", (long)syscall(SYS_gettid));
	int nth = open(path, O_RDWR);
	if (nth < 0) { printf("open fail-nth: errno %d\n", errno); return 1; }
	int fd = open("/dev/iommu", O_RDWR);
	unsigned id;
	char buf[32];
	/* the first injection point of IOAS_ALLOC fails; the next one succeeds */
	pwrite(nth, "1", 1, 0);
	int r = ioas_alloc(fd, &id);
	ssize_t n = pread(nth, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	printf("armed 1: ioas_alloc %d, fail-nth reads %s", r, buf);
	r = ioas_alloc(fd, &id);
	printf("after: ioas_alloc %d id %u\n", r, id);
	/* a count larger than the call's points: nothing fails, the rest is left */
	pwrite(nth, "100", 3, 0);
	r = ioas_alloc(fd, &id);
	n = pread(nth, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	printf("armed 100: ioas_alloc %d id %u, fail-nth reads %s", r, id, buf);
	printf("disarm: %zd\n", pwrite(nth, "0", 1, 0));
	n = pread(nth, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	printf("disarmed reads %s", buf);
	errno = 0;
	ssize_t bad = pwrite(nth, "x", 1, 0);
	int bad_errno = errno;
	printf("bad write: %zd errno %d\n", bad, bad_errno);
	/* open itself is an injection point */
	pwrite(nth, "1", 1, 0);
	int fd2 = open("/dev/iommu", O_RDWR);
	printf("armed open: %d errno %d\n", fd2 < 0 ? -1 : 0, fd2 < 0 ? errno : 0);
	close(nth);
	close(fd);
	return 0;
}
