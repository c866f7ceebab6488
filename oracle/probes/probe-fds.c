/*
 * What the fds iommufd hands out look like to a program: the fault queue fd (and /dev/iommu
 * itself, and an mmap of it): close-on-exec, access mode, lseek, fstat's file type and mode, the
 * /proc/self/fd link, and mmap of the iommufd fd. Lines are "NAME value".
 * Self-contained (no probe.h): test/server/fds.test.ts builds this same file against the
 * project's header, runs it through the shim and compares with the real kernel's transcript.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/iommufd.h>
#define E(rc) (rc), ((rc) < 0 ? errno : 0)
static int xopen(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) { perror("open /dev/iommu"); exit(1); }
	return fd;
}
#include <sys/stat.h>

static void describe(const char *name, int fd)
{
	int fdfl = fcntl(fd, F_GETFD);
	int fl = fcntl(fd, F_GETFL);
	printf("%s cloexec=%d accmode=%d\n", name, fdfl >= 0 ? !!(fdfl & FD_CLOEXEC) : -1, fl >= 0 ? (fl & O_ACCMODE) : -1);
	off_t o = lseek(fd, 0, SEEK_SET);
	printf("%s lseek rc=%lld errno=%d\n", name, (long long)o, o < 0 ? errno : 0);
	struct stat st;
	int rc = fstat(fd, &st);
	printf("%s fstat rc=%d ifmt=0%o perm=0%o\n", name, rc, rc ? 0 : (unsigned)(st.st_mode & S_IFMT), rc ? 0 : (unsigned)(st.st_mode & 07777));
	char path[64], link[128] = { 0 };
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	printf("%s link=%s\n", name, n > 0 ? link : "?");
}

int main(void)
{
	int fd = xopen();
	describe("iommufd", fd);
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	int rc = ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa);
	printf("fault_alloc rc=%d errno=%d\n", E(rc));
	if (!rc)
		describe("faultfd", fa.out_fault_fd);
	void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	printf("mmap iommufd rc=%d errno=%d\n", p == MAP_FAILED ? -1 : 0, p == MAP_FAILED ? errno : 0);
	return 0;
}
