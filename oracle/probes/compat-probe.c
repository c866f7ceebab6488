// Probe the VFIO type1 compatibility ioctls of real iommufd (Linux 6.12 + mock driver).
// Build: gcc -static -O2 -I$ORACLE/linux-source-6.12/usr/include -I$ORACLE/linux-source-6.12
//          -o compat-probe compat-probe.c
// Run:   $ORACLE/run-in-vm.sh ./compat-probe > compat-probe.out.txt
// Every line is "<tag> rc=<rc> errno=<errno> [fields]"; compat.test.ts pins the same answers.
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
#include <linux/vfio.h>
#include "probe.h"

#define APER 0x1000000ULL

static uint8_t *buf;   /* 2 MiB, 2 MiB aligned, RW */
static uint8_t *robuf; /* 16 KiB read-only, populated */

static int set_compat(int fd, uint32_t ioas)
{
	struct iommu_vfio_ioas v = { .size = sizeof(v), .op = IOMMU_VFIO_IOAS_SET, .ioas_id = ioas };
	return ioctl(fd, IOMMU_VFIO_IOAS, &v);
}

static int vmap(int fd, uint32_t flags, uint64_t vaddr, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m), .flags = flags, .vaddr = vaddr,
		.iova = iova, .size = size };
	return ioctl(fd, VFIO_IOMMU_MAP_DMA, &m);
}

static int vunmap(int fd, uint32_t flags, uint64_t iova, uint64_t size, uint64_t *out)
{
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .flags = flags, .iova = iova,
		.size = size };
	int rc = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u);
	*out = u.size;
	return rc;
}

static const char *cur_tag = "";
static void pr_unmap(const char *what, int fd, uint32_t flags, uint64_t iova, uint64_t size)
{
	uint64_t out;
	int rc = vunmap(fd, flags, iova, size, &out);
	printf("%s %s rc=%d errno=%d size_out=0x%llx\n", cur_tag, what, E(rc), (unsigned long long)out);
}

static void dump_info(const char *tag, int fd, uint32_t argsz)
{
	uint8_t b[256];
	memset(b, 0xAA, sizeof(b));
	memcpy(b, &argsz, 4);
	int rc = ioctl(fd, VFIO_IOMMU_GET_INFO, b);
	printf("%s argsz=%u rc=%d errno=%d bytes=", tag, argsz, E(rc));
	unsigned n = 0;
	for (unsigned i = 0; i < sizeof(b); i++)
		if (b[i] != 0xAA) n = i + 1;
	for (unsigned i = 0; i < n; i++) printf("%02x", b[i]);
	printf("\n");
}

static void session(const char *tag, unsigned long type)
{
	int fd = xopen(), rc;
	uint32_t ioas = ioas_alloc(fd);
	char t[128];

	cur_tag = tag;

	rc = ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU);
	printf("%s DMA_CC no-compat-ioas rc=%d errno=%d\n", tag, E(rc));
	set_compat(fd, ioas);
	rc = ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU);
	printf("%s DMA_CC ioas-without-hwpt rc=%d errno=%d\n", tag, E(rc));
	rc = mock_domain(fd, ioas, NULL, NULL, NULL);
	printf("%s mock_domain rc=%d errno=%d\n", tag, E(rc));
	rc = ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU);
	printf("%s DMA_CC mock-hwpt rc=%d errno=%d\n", tag, E(rc));
	rc = ioctl(fd, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU);
	printf("%s SET_IOMMU(2) rc=%d errno=%d\n", tag, E(rc));
	rc = ioctl(fd, VFIO_SET_IOMMU, type);
	printf("%s SET_IOMMU(%lu) rc=%d errno=%d\n", tag, type, E(rc));

	for (uint32_t a = 16; a <= 80; a += (a < 24 ? 8 : (a < 48 ? 4 : 8))) {
		snprintf(t, sizeof(t), "%s GET_INFO", tag);
		dump_info(t, fd, a);
	}

	/* MAP_DMA rules */
	rc = vmap(fd, 0, (uintptr_t)buf, APER, 0x1000);
	printf("%s MAP flags=0 rc=%d errno=%d\n", tag, E(rc));
	pr_unmap("unmap flags=0 map", fd, 0, APER, 0x1000);
	rc = vmap(fd, 3 | VFIO_DMA_MAP_FLAG_VADDR, (uintptr_t)buf, APER, 0x1000);
	printf("%s MAP RW|VADDR rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, VFIO_DMA_MAP_FLAG_VADDR, (uintptr_t)buf, APER, 0x1000);
	printf("%s MAP VADDR rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, 3, (uintptr_t)buf, APER, 0);
	printf("%s MAP size=0 rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, 3, (uintptr_t)buf + 0x800, APER + 0x800, 0x800);
	printf("%s MAP 2K iova/vaddr/size rc=%d errno=%d\n", tag, E(rc));
	pr_unmap("unmap 2K", fd, 0, APER + 0x800, 0x800);
	rc = vmap(fd, 3, (uintptr_t)buf + 0x800, APER, 0x1000);
	printf("%s MAP vaddr off 0x800 iova aligned rc=%d errno=%d\n", tag, E(rc));
	pr_unmap("unmap", fd, 0, APER, 0x1000);
	rc = vmap(fd, 3, (uintptr_t)buf, 0, 0x1000);
	printf("%s MAP iova=0 (below aperture) rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, 3, (uintptr_t)buf, 0x80000000ULL, 0x1000);
	printf("%s MAP iova=2^31 (above aperture) rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, 3, (uintptr_t)buf, 0x7ffff000ULL, 0x2000);
	printf("%s MAP straddling aperture end rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, 3, (uintptr_t)buf, ~0ULL - 0xfff, 0x2000);
	printf("%s MAP iova wraps rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, 3, 0x1000, APER, 0x1000);
	printf("%s MAP unmapped vaddr rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, 3, (uintptr_t)robuf, APER, 0x1000);
	printf("%s MAP RW of read-only memory rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, VFIO_DMA_MAP_FLAG_READ, (uintptr_t)robuf, APER, 0x1000);
	printf("%s MAP READ of read-only memory rc=%d errno=%d\n", tag, E(rc));
	pr_unmap("unmap", fd, 0, APER, 0x1000);

	rc = vmap(fd, 3, (uintptr_t)buf, APER, 0x4000);
	printf("%s MAP A [APER,+16K) rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, 3, (uintptr_t)buf, APER + 0x4000, 0x4000);
	printf("%s MAP B [APER+16K,+16K) rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, 3, (uintptr_t)buf, APER + 0x2000, 0x1000);
	printf("%s MAP overlapping rc=%d errno=%d\n", tag, E(rc));

	/* UNMAP rules */
	pr_unmap("UNMAP size=0", fd, 0, APER, 0);
	pr_unmap("UNMAP GET_DIRTY_BITMAP", fd, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, APER, 0x1000);
	pr_unmap("UNMAP VADDR", fd, VFIO_DMA_UNMAP_FLAG_VADDR, APER, 0x1000);
	pr_unmap("UNMAP ALL iova!=0", fd, VFIO_DMA_UNMAP_FLAG_ALL, APER, 0);
	pr_unmap("UNMAP wraps", fd, 0, ~0ULL - 0xfff, 0x2000);
	pr_unmap("UNMAP unaligned 0x800", fd, 0, APER + 0x800, 0x800);
	pr_unmap("UNMAP A + half of B", fd, 0, APER, 0x6000);
	pr_unmap("UNMAP rest", fd, 0, APER, 0x8000);
	rc = vmap(fd, 3, (uintptr_t)buf, APER, 0x4000);
	rc |= vmap(fd, 3, (uintptr_t)buf, APER + 0x4000, 0x4000);
	printf("%s remap A B rc=%d\n", tag, rc);
	pr_unmap("UNMAP A+B exactly", fd, 0, APER, 0x8000);
	rc = vmap(fd, 3, (uintptr_t)buf, APER, 0x4000);
	rc |= vmap(fd, 3, (uintptr_t)buf, APER + 0x8000, 0x4000);
	printf("%s map A C rc=%d\n", tag, rc);
	pr_unmap("UNMAP ALL", fd, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);
	pr_unmap("UNMAP ALL empty", fd, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);
	rc = vmap(fd, 3, (uintptr_t)buf, APER, 0x4000);
	pr_unmap("UNMAP tail page", fd, 0, APER + 0x3000, 0x1000);
	pr_unmap("UNMAP head page", fd, 0, APER, 0x1000);
	pr_unmap("UNMAP from 0 to APER+0x2000", fd, 0, 0, APER + 0x2000);
	pr_unmap("UNMAP 0..2^64-4K", fd, 0, 0, ~0ULL - 0xfff);

	/* v2 refuses to split, v1 splits */
	rc = vmap(fd, 3, (uintptr_t)buf, APER, 0x4000);
	pr_unmap("UNMAP middle page", fd, 0, APER + 0x1000, 0x1000);
	pr_unmap("UNMAP all of A", fd, 0, APER, 0x4000);
	/* a second SET_IOMMU: v2 -> v1 is accepted while nothing is mapped; with a mapping EINVAL */
	rc = vmap(fd, 3, (uintptr_t)buf, APER, 0x4000);
	rc = ioctl(fd, VFIO_SET_IOMMU, type == 1 ? 3 : 1);
	printf("%s SET_IOMMU other type with a mapping rc=%d errno=%d\n", tag, E(rc));
	pr_unmap("UNMAP ALL", fd, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);
	rc = ioctl(fd, VFIO_SET_IOMMU, type == 1 ? 3 : 1);
	printf("%s SET_IOMMU other type, nothing mapped rc=%d errno=%d\n", tag, E(rc));
	rc = vmap(fd, 3, (uintptr_t)buf, APER, 0x4000);
	pr_unmap("after switch UNMAP middle page", fd, 0, APER + 0x1000, 0x1000);

	rc = ioctl(fd, VFIO_IOMMU_DIRTY_PAGES, buf);
	printf("%s DIRTY_PAGES rc=%d errno=%d\n", tag, E(rc));
	rc = ioctl(fd, VFIO_GET_API_VERSION);
	printf("%s GET_API_VERSION rc=%d errno=%d\n", tag, E(rc));
	close(fd);
}

int main(void)
{
	int fd = xopen(), rc;

	buf = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	buf = (uint8_t *)(((uintptr_t)buf + (2 << 20) - 1) & ~((uintptr_t)(2 << 20) - 1));
	memset(buf, 1, 2 << 20);
	robuf = mmap(NULL, 0x4000, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	for (unsigned long e = 0; e <= 11; e++) {
		rc = ioctl(fd, VFIO_CHECK_EXTENSION, e);
		printf("fresh CHECK_EXTENSION(%lu) rc=%d errno=%d\n", e, E(rc));
	}
	unsigned long types[] = { 0, 1, 2, 3, 6, 8, 9, 10 };
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		rc = ioctl(fd, VFIO_SET_IOMMU, types[i]);
		printf("fresh SET_IOMMU(%lu) rc=%d errno=%d\n", types[i], E(rc));
	}
	uint32_t argsz = 16;
	uint8_t b[32];
	memcpy(b, &argsz, 4);
	rc = ioctl(fd, VFIO_IOMMU_GET_INFO, b);
	printf("fresh GET_INFO rc=%d errno=%d\n", E(rc));
	rc = ioctl(fd, VFIO_IOMMU_DIRTY_PAGES, b);
	printf("fresh DIRTY_PAGES rc=%d errno=%d\n", E(rc));
	rc = ioctl(fd, _IO(VFIO_TYPE, VFIO_BASE + 30));
	printf("fresh VFIO_BASE+30 rc=%d errno=%d\n", E(rc));
	close(fd);

	session("v2", VFIO_TYPE1v2_IOMMU);
	session("v1", VFIO_TYPE1_IOMMU);
	return 0;
}
