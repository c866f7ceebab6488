/*
 * Run twice at once: each program's context has its own ID space and mappings. Repeats
 * allocate / map / check / destroy and fails if it ever sees the other program's objects.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/iommufd.h>

#define DIE(...) do { fprintf(stderr, __VA_ARGS__); fprintf(stderr, " errno %d\n", errno); exit(1); } while (0)

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 200;
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) DIE("open");
	char *buf = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < rounds; i++) {
		struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
		if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) DIE("ioas");
		if (alloc.out_ioas_id != 1) DIE("round %d: ioas id %u, want 1 (lowest free in this context)", i, alloc.out_ioas_id);
		struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = 1 };
		if (ioctl(fd, IOMMU_TEST_CMD, &md)) DIE("mock domain");
		struct iommu_ioas_map map = {
			.size = sizeof(map), .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
			.ioas_id = 1, .user_va = (uintptr_t)buf, .length = 1 << 20,
		};
		if (ioctl(fd, IOMMU_IOAS_MAP, &map)) DIE("map");
		/* ids 1..4 are this context's (ioas, stdev, idev, auto hwpt); 5 would be the other program's */
		if (md.mock_domain.out_stdev_id != 2 || md.mock_domain.out_idev_id != 3 || md.mock_domain.out_hwpt_id != 4) DIE("ids %u %u %u", md.mock_domain.out_stdev_id, md.mock_domain.out_idev_id, md.mock_domain.out_hwpt_id);
		struct iommu_destroy bad = { .size = sizeof(bad), .id = 5 };
		if (ioctl(fd, IOMMU_DESTROY, &bad) != -1 || errno != ENOENT) DIE("id %u exists", bad.id);
		struct iommu_destroy d = { .size = sizeof(d), .id = md.mock_domain.out_stdev_id };
		if (ioctl(fd, IOMMU_DESTROY, &d)) DIE("destroy device");
		d.id = 1;
		if (ioctl(fd, IOMMU_DESTROY, &d)) DIE("destroy ioas");
	}
	printf("isolated %d rounds\n", rounds);
	return 0;
}
