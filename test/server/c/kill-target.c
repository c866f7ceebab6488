/*
 * Sets up a context with objects and pinned pages, prints "ready", then issues one ioctl that
 * keeps the server reading its memory for seconds (HWPT_INVALIDATE of a mock nested HWPT with
 * 2^19 entries: one read per entry; ALLOW_IOVAS reads its array in large chunks now). The test
 * kills it with SIGKILL meanwhile.
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
	/* a nesting parent on a2 and a mock nested HWPT over it */
	struct iommu_test_cmd md2 = { .size = sizeof(md2), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = a2.out_ioas_id };
	if (ioctl(fd, IOMMU_TEST_CMD, &md2)) DIE("mock domain 2");
	struct iommu_hwpt_alloc parent = {
		.size = sizeof(parent), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT,
		.dev_id = md2.mock_domain.out_idev_id, .pt_id = a2.out_ioas_id,
	};
	if (ioctl(fd, IOMMU_HWPT_ALLOC, &parent)) DIE("nest parent");
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_hwpt_alloc nested = {
		.size = sizeof(nested), .dev_id = md2.mock_domain.out_idev_id, .pt_id = parent.out_hwpt_id,
		.data_type = IOMMU_HWPT_DATA_SELFTEST, .data_len = sizeof(data), .data_uptr = (uintptr_t)&data,
	};
	if (ioctl(fd, IOMMU_HWPT_ALLOC, &nested)) DIE("nested");
	unsigned n = 1u << 19;
	struct iommu_hwpt_invalidate_selftest *inv = calloc(n, sizeof(*inv));
	if (!inv) DIE("calloc");
	printf("ready\n");
	fflush(stdout);
	struct iommu_hwpt_invalidate al = {
		.size = sizeof(al), .hwpt_id = nested.out_hwpt_id, .data_uptr = (uintptr_t)inv,
		.data_type = IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, .entry_len = sizeof(*inv), .entry_num = n,
	};
	int ret = ioctl(fd, IOMMU_HWPT_INVALIDATE, &al);
	printf("finished %d\n", ret);
	return 0;
}
