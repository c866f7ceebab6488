/*
 * Sets up a context with objects and pinned pages, prints "ready", then issues one ioctl that
 * keeps the server reading its memory for seconds (IOAS_ALLOW_IOVAS with a long array: one read
 * per range). The test kills it with SIGKILL meanwhile.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/iommufd.h>

#define DIE(...) do { fprintf(stderr, __VA_ARGS__); fprintf(stderr, " errno %d\n", errno); exit(1); } while (0)

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) DIE("open");
	struct iommu_ioas_alloc a1 = { .size = sizeof(a1) }, a2 = { .size = sizeof(a2) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &a1) || ioctl(fd, IOMMU_IOAS_ALLOC, &a2)) DIE("ioas");
	struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = a1.out_ioas_id };
	if (ioctl(fd, IOMMU_TEST_CMD, &md)) DIE("mock domain");
	char *buf = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iommu_ioas_map map = {
		.size = sizeof(map), .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = a1.out_ioas_id, .user_va = (uintptr_t)buf, .length = 4 << 20,
	};
	if (ioctl(fd, IOMMU_IOAS_MAP, &map)) DIE("map");
	unsigned n = 1u << 20;
	struct iommu_iova_range *r = malloc(n * sizeof(*r));
	for (unsigned i = 0; i < n; i++) {
		r[i].start = (uint64_t)i * 0x10000;
		r[i].last = r[i].start + 0xfff;
	}
	printf("ready\n");
	fflush(stdout);
	struct iommu_ioas_allow_iovas al = { .size = sizeof(al), .ioas_id = a2.out_ioas_id, .num_iovas = n, .allowed_iovas = (uintptr_t)r };
	int ret = ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &al);
	printf("finished %d\n", ret);
	return 0;
}
