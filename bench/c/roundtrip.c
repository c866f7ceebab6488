/*
 * ioctl_roundtrip_us: the median round trip of IOMMU_DESTROY of a bad id (ENOENT) through the
 * preload shim and the server. Usage: roundtrip [COUNT]. Prints the median and p90 in µs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <linux/iommufd.h>

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20000;
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) {
		perror("open /dev/iommu");
		return 1;
	}
	struct iommu_destroy d = { .size = sizeof(d), .id = 0x7ffffff0 };
	for (int i = 0; i < 2000; i++)
		ioctl(fd, IOMMU_DESTROY, &d);
	double *xs = malloc(sizeof(double) * (size_t)n);
	for (int i = 0; i < n; i++) {
		double t0 = now_us();
		int r = ioctl(fd, IOMMU_DESTROY, &d);
		xs[i] = now_us() - t0;
		if (r != -1 || errno != ENOENT) {
			fprintf(stderr, "roundtrip: DESTROY gave %d errno %d, want ENOENT\n", r, errno);
			return 1;
		}
	}
	qsort(xs, (size_t)n, sizeof(double), cmp);
	printf("median_us %.3f p90_us %.3f\n", xs[n / 2], xs[n * 9 / 10]);
	return 0;
}
