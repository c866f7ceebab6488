/*
 * An ioctl whose struct the program cannot write: the kernel does the work, then its copy-back
 * (copy_to_user) faults. Prints one line per step:
 *   map-ro RET ERRNO      IOAS_MAP (not FIXED_IOVA) with its struct in a read-only page: -1 14
 *   unmap-all RET LENGTH  IOAS_UNMAP of everything afterwards: the mapping stayed (its length)
 *   map-rw RET IOVA       the same map from a writable struct: 0 and the IOVA written back
 *   alloc-ro RET ERRNO    IOAS_ALLOC with its struct read-only: -1 14 (the IOAS is taken down)
 *   destroy-next RET ERRNO  IOMMU_DESTROY of the ID that IOAS would have had: -1 2 (ENOENT)
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

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) DIE("open");
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &a)) DIE("ioas");
	char *buf = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || page == MAP_FAILED) DIE("mmap");
	struct iommu_ioas_map map = {
		.size = sizeof(map), .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = a.out_ioas_id, .user_va = (uintptr_t)buf, .length = 1 << 20,
	};
	memcpy(page, &map, sizeof(map));
	if (mprotect(page, 4096, PROT_READ)) DIE("mprotect");
	errno = 0;
	int r = ioctl(fd, IOMMU_IOAS_MAP, page);
	printf("map-ro %d %d\n", r, r < 0 ? errno : 0);
	struct iommu_ioas_unmap un = { .size = sizeof(un), .ioas_id = a.out_ioas_id, .iova = 0, .length = UINT64_MAX };
	r = ioctl(fd, IOMMU_IOAS_UNMAP, &un);
	printf("unmap-all %d %llu\n", r, (unsigned long long)un.length);
	r = ioctl(fd, IOMMU_IOAS_MAP, &map);
	printf("map-rw %d %s\n", r, r == 0 && map.iova != 0 ? "iova" : "none");
	struct iommu_ioas_alloc ro = { .size = sizeof(ro) };
	if (mprotect(page, 4096, PROT_READ | PROT_WRITE)) DIE("mprotect");
	memcpy(page, &ro, sizeof(ro));
	if (mprotect(page, 4096, PROT_READ)) DIE("mprotect");
	errno = 0;
	r = ioctl(fd, IOMMU_IOAS_ALLOC, page);
	printf("alloc-ro %d %d\n", r, r < 0 ? errno : 0);
	struct iommu_destroy d = { .size = sizeof(d), .id = a.out_ioas_id + 1 };
	errno = 0;
	r = ioctl(fd, IOMMU_DESTROY, &d);
	printf("destroy-next %d %d\n", r, r < 0 ? errno : 0);
	fflush(stdout);
	return 0;
}
