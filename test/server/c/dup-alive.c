/*
 * A dup'ed fd keeps the context: close the original, the dup still sees the IOAS made through
 * it; dup2/F_DUPFD copies too. After the last copy is closed the program says so and waits, so the
 * test can check the server released the context before the process exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/iommufd.h>

#define DIE(...) do { fprintf(stderr, __VA_ARGS__); fprintf(stderr, " errno %d\n", errno); exit(1); } while (0)

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) DIE("open");
	struct stat st;
	if (fstat(fd, &st) || !S_ISCHR(st.st_mode)) DIE("fstat: not a character device");
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) DIE("ioas");
	int d1 = dup(fd);
	if (close(fd)) DIE("close");
	struct iommu_ioas_alloc a2 = { .size = sizeof(a2) };
	if (ioctl(d1, IOMMU_IOAS_ALLOC, &a2)) DIE("ioas via dup");
	int d2 = dup2(d1, 40);
	int d3 = fcntl(d1, F_DUPFD_CLOEXEC, 50);
	if (d2 != 40 || d3 < 50) DIE("dup2/F_DUPFD");
	if (close(d1) || close(d2)) DIE("close dups");
	struct iommu_destroy d = { .size = sizeof(d), .id = alloc.out_ioas_id };
	if (ioctl(d3, IOMMU_DESTROY, &d)) DIE("destroy via F_DUPFD copy");
	printf("first-ioas %u second-ioas %u alive-through-dups\n", alloc.out_ioas_id, a2.out_ioas_id);
	if (close(d3)) DIE("close last");
	int again = open("/dev/iommu", O_RDWR);
	printf("reopened-fd %d\nreleased-check\n", again);
	fflush(stdout);
	close(again);
	usleep(400000);
	return 0;
}
