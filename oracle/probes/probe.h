/*
 * Shared helpers for softiommu's probe programs: small wrappers around the iommufd ioctls and the
 * selftest mock-driver test ops (CONFIG_IOMMUFD_TEST), for asking a real kernel what it returns.
 * Build and run: see oracle/probes/README.md.
 */
#ifndef SOFTIOMMU_PROBE_H
#define SOFTIOMMU_PROBE_H
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/iommufd.h>
#include "iommufd_test.h"

#define RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)
/* "rc=%d errno=%d" arguments: the return value and errno when it failed */
#define E(rc) (rc), ((rc) < 0 ? errno : 0)

static inline int xopen(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) { perror("open /dev/iommu"); exit(1); }
	return fd;
}

static inline uint32_t ioas_alloc(int fd)
{
	struct iommu_ioas_alloc c = { .size = sizeof(c) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &c)) { perror("ioas_alloc"); exit(1); }
	return c.out_ioas_id;
}

static inline int mapf(int fd, uint32_t ioas, uint32_t flags, uint64_t uva, uint64_t len, uint64_t *iova)
{
	struct iommu_ioas_map c = { .size = sizeof(c), .flags = flags, .ioas_id = ioas, .user_va = uva, .length = len, .iova = *iova };
	int rc = ioctl(fd, IOMMU_IOAS_MAP, &c);
	if (!rc) *iova = c.iova;
	return rc;
}

static inline int map(int fd, uint32_t ioas, uint64_t uva, uint64_t len, uint64_t *iova, int fixed)
{
	return mapf(fd, ioas, RW | (fixed ? IOMMU_IOAS_MAP_FIXED_IOVA : 0), uva, len, iova);
}

static inline int unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len, uint64_t *outlen)
{
	struct iommu_ioas_unmap c = { .size = sizeof(c), .ioas_id = ioas, .iova = iova, .length = len };
	int rc = ioctl(fd, IOMMU_IOAS_UNMAP, &c);
	*outlen = c.length;
	return rc;
}

static inline int copyf(int fd, uint32_t flags, uint32_t dst, uint32_t src, uint64_t src_iova, uint64_t len, uint64_t *dst_iova)
{
	struct iommu_ioas_copy c = { .size = sizeof(c), .flags = flags, .dst_ioas_id = dst, .src_ioas_id = src,
		.length = len, .dst_iova = *dst_iova, .src_iova = src_iova };
	int rc = ioctl(fd, IOMMU_IOAS_COPY, &c);
	if (!rc) *dst_iova = c.dst_iova;
	return rc;
}

static inline int allow(int fd, uint32_t ioas, struct iommu_iova_range *r, uint32_t n)
{
	struct iommu_ioas_allow_iovas c = { .size = sizeof(c), .ioas_id = ioas, .num_iovas = n, .allowed_iovas = (uintptr_t)r };
	return ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &c);
}

static inline int option(int fd, uint32_t optid, uint16_t op, uint32_t obj, uint64_t *val)
{
	struct iommu_option c = { .size = sizeof(c), .option_id = optid, .op = op, .object_id = obj, .val64 = *val };
	int rc = ioctl(fd, IOMMU_OPTION, &c);
	*val = c.val64;
	return rc;
}

static inline int destroy(int fd, uint32_t id)
{
	struct iommu_destroy c = { .size = sizeof(c), .id = id };
	return ioctl(fd, IOMMU_DESTROY, &c);
}

static inline int mock_domain(int fd, uint32_t ioas, uint32_t *stdev, uint32_t *hwpt, uint32_t *idev)
{
	struct iommu_test_cmd c = { .size = sizeof(c), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas };
	int rc = ioctl(fd, IOMMU_TEST_CMD, &c);
	if (stdev) *stdev = c.mock_domain.out_stdev_id;
	if (hwpt) *hwpt = c.mock_domain.out_hwpt_id;
	if (idev) *idev = c.mock_domain.out_idev_id;
	return rc;
}

static inline int add_reserved(int fd, uint32_t ioas, uint64_t start, uint64_t len)
{
	struct iommu_test_cmd c = { .size = sizeof(c), .op = IOMMU_TEST_OP_ADD_RESERVED, .id = ioas,
		.add_reserved = { .start = start, .length = len } };
	return ioctl(fd, IOMMU_TEST_CMD, &c);
}

static inline int check_refs(int fd, void *p, uint64_t len, unsigned refs)
{
	struct iommu_test_cmd c = { .size = sizeof(c), .op = IOMMU_TEST_OP_MD_CHECK_REFS,
		.check_refs = { .length = len, .uptr = (uintptr_t)p, .refs = refs } };
	return ioctl(fd, IOMMU_TEST_CMD, &c);
}
#endif
