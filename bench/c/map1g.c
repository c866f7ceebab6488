/*
 * shim_map_1g_ratio (numerator): IOAS_MAP + IOAS_UNMAP of 1 GiB of MAP_SHARED|MAP_ANONYMOUS memory
 * with one mock domain attached, through the shim. Usage: map1g [ROUNDS]. Prints the median ms.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <linux/iommufd.h>

#define GIB (1ul << 30)

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 15;
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) {
		perror("open /dev/iommu");
		return 1;
	}
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &a) || (md.id = a.out_ioas_id, ioctl(fd, IOMMU_TEST_CMD, &md))) {
		perror("setup");
		return 1;
	}
	void *buf = mmap(NULL, GIB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = a.out_ioas_id, .user_va = (uintptr_t)buf, .length = GIB, .iova = 1ul << 24,
	};
	struct iommu_ioas_unmap um = { .size = sizeof(um), .ioas_id = a.out_ioas_id, .iova = 1ul << 24, .length = GIB };
	double *xs = malloc(sizeof(double) * (size_t)(rounds + 1));
	for (int i = 0; i <= rounds; i++) {
		double t0 = now_ms();
		if (ioctl(fd, IOMMU_IOAS_MAP, &map) || ioctl(fd, IOMMU_IOAS_UNMAP, &um)) {
			perror("map/unmap");
			return 1;
		}
		xs[i] = now_ms() - t0;
	}
	qsort(xs + 1, (size_t)rounds, sizeof(double), cmp); /* round 0 faults the memory in */
	printf("median_ms %.3f\n", xs[1 + rounds / 2]);
	return 0;
}
