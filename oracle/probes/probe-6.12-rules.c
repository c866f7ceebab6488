// Probe real iommufd (Linux 6.12 + mock driver) behaviours, Q1..Q11.
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


static void *buf2m;  /* 4 MiB, 2 MiB aligned */
static void *page4k; /* separate 4 KiB page */

static void print_ranges(const char *tag, int fd, uint32_t ioas)
{
	struct iommu_iova_range r[16];
	memset(r, 0xcc, sizeof(r));
	struct iommu_ioas_iova_ranges c = { .size = sizeof(c), .ioas_id = ioas, .num_iovas = 16,
		.allowed_iovas = (uintptr_t)r };
	int rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &c);
	printf("%s rc=%d errno=%d num_iovas=%u out_iova_alignment=0x%llx", tag, E(rc), c.num_iovas,
	       (unsigned long long)c.out_iova_alignment);
	for (unsigned i = 0; !rc && i < c.num_iovas && i < 16; i++)
		printf(" [0x%llx..0x%llx]", (unsigned long long)r[i].start, (unsigned long long)r[i].last);
	printf("\n");
}

static int copy(int fd, uint32_t dst, uint32_t src, uint64_t src_iova, uint64_t len, uint64_t *dst_iova, int fixed)
{
	return copyf(fd, RW | (fixed ? IOMMU_IOAS_MAP_FIXED_IOVA : 0), dst, src, src_iova, len, dst_iova);
}

/* ---------------- questions ---------------- */

static void q1(void)
{
	int fd = xopen();
	uint32_t ioas = ioas_alloc(fd);
	uint64_t iova, ol; int rc;
	iova = 0x100000; rc = map(fd, ioas, (uintptr_t)buf2m, 0x1000, &iova, 1);
	printf("Q1 mapA rc=%d errno=%d\n", E(rc));
	iova = 0x101000; rc = map(fd, ioas, (uintptr_t)buf2m, 0x2000, &iova, 1);
	printf("Q1 mapB rc=%d errno=%d\n", E(rc));
	ol = 0xdead; rc = unmap(fd, ioas, 0x100000, 0x2000, &ol);
	printf("Q1 unmap(0x100000,0x2000) rc=%d errno=%d length_field=0x%llx\n", E(rc), (unsigned long long)ol);
	print_ranges("Q1 ranges_after", fd, ioas);
	ol = 0xdead; rc = unmap(fd, ioas, 0x100000, 0x1000, &ol);
	printf("Q1 unmapA_exact rc=%d errno=%d length=0x%llx\n", E(rc), (unsigned long long)ol);
	ol = 0xdead; rc = unmap(fd, ioas, 0x101000, 0x2000, &ol);
	printf("Q1 unmapB_exact rc=%d errno=%d length=0x%llx\n", E(rc), (unsigned long long)ol);
	/* Variant: partial at start of an area only (no full area covered) */
	iova = 0x100000; map(fd, ioas, (uintptr_t)buf2m, 0x2000, &iova, 1);
	ol = 0xdead; rc = unmap(fd, ioas, 0x100000, 0x1000, &ol);
	printf("Q1x unmap_first_half_of_single_area rc=%d errno=%d length=0x%llx\n", E(rc), (unsigned long long)ol);
	ol = 0xdead; rc = unmap(fd, ioas, 0x100000, 0x2000, &ol);
	printf("Q1x then_unmap_whole rc=%d errno=%d length=0x%llx\n", E(rc), (unsigned long long)ol);
	/* Variant: range starting in a hole, covering an area fully */
	iova = 0x201000; map(fd, ioas, (uintptr_t)buf2m, 0x1000, &iova, 1);
	ol = 0xdead; rc = unmap(fd, ioas, 0x200000, 0x3000, &ol);
	printf("Q1x unmap_hole_area_hole(0x200000,0x3000 area 0x201000+0x1000) rc=%d errno=%d length=0x%llx\n", E(rc), (unsigned long long)ol);
	close(fd);
}

static void q1d(void)
{
	/* Q1 repeated with a mock domain attached (IOVAs inside the mock aperture) */
	int fd = xopen();
	uint32_t ioas = ioas_alloc(fd);
	uint64_t iova, ol; int rc;
	rc = mock_domain(fd, ioas, NULL, NULL, NULL);
	printf("Q1d mock_domain rc=%d errno=%d\n", E(rc));
	iova = 0x1100000; rc = map(fd, ioas, (uintptr_t)buf2m, 0x1000, &iova, 1);
	iova = 0x1101000; rc |= map(fd, ioas, (uintptr_t)buf2m, 0x2000, &iova, 1);
	printf("Q1d maps rc=%d\n", rc);
	ol = 0xdead; rc = unmap(fd, ioas, 0x1100000, 0x2000, &ol);
	printf("Q1d unmap(A+half B) rc=%d errno=%d length_field=0x%llx\n", E(rc), (unsigned long long)ol);
	ol = 0xdead; rc = unmap(fd, ioas, 0x1100000, 0x1000, &ol);
	printf("Q1d unmapA_exact rc=%d errno=%d length=0x%llx\n", E(rc), (unsigned long long)ol);
	ol = 0xdead; rc = unmap(fd, ioas, 0x1101000, 0x2000, &ol);
	printf("Q1d unmapB_exact rc=%d errno=%d length=0x%llx\n", E(rc), (unsigned long long)ol);
	/* B first in address order partially: area B' fully covered after a partial one */
	iova = 0x1200000; map(fd, ioas, (uintptr_t)buf2m, 0x2000, &iova, 1);
	iova = 0x1202000; map(fd, ioas, (uintptr_t)buf2m, 0x1000, &iova, 1);
	ol = 0xdead; rc = unmap(fd, ioas, 0x1201000, 0x2000, &ol);
	printf("Q1d unmap(half first + full second) rc=%d errno=%d length_field=0x%llx\n", E(rc), (unsigned long long)ol);
	ol = 0xdead; rc = unmap(fd, ioas, 0x1202000, 0x1000, &ol);
	printf("Q1d second area exact unmap rc=%d errno=%d length=0x%llx\n", E(rc), (unsigned long long)ol);
	close(fd);
}

static void q2_seq(const char *tag, void *uva, int with_domain)
{
	int fd = xopen();
	uint32_t ioas = ioas_alloc(fd);
	if (with_domain) {
		int rc = mock_domain(fd, ioas, NULL, NULL, NULL);
		printf("%s mock_domain rc=%d errno=%d\n", tag, E(rc));
	}
	uint64_t lens[] = { 0x1000, 0x3000, 0x1000, 0x200000 };
	for (int i = 0; i < 4; i++) {
		uint64_t iova = 0; int rc = map(fd, ioas, (uintptr_t)uva, lens[i], &iova, 0);
		printf("%s map#%d len=0x%llx uva_mod_2M=0x%llx rc=%d errno=%d iova=0x%llx\n", tag, i,
		       (unsigned long long)lens[i], (unsigned long long)((uintptr_t)uva & 0x1fffff), E(rc),
		       rc ? 0ULL : (unsigned long long)iova);
	}
	close(fd);
}

static void q2(void)
{
	q2_seq("Q2a nodomain uva2M", buf2m, 0);
	q2_seq("Q2b nodomain uva4K", (char *)buf2m + 0x1000, 0);
	q2_seq("Q2c domain uva2M", buf2m, 1);
	q2_seq("Q2d domain uva4K", (char *)buf2m + 0x1000, 1);
	q2_seq("Q2e nodomain uva64K", (char *)buf2m + 0x10000, 0);
}

static void q3(void)
{
	int fd = xopen(); uint64_t iova; int rc;
	uint32_t ioas = ioas_alloc(fd);
	iova = 0; rc = map(fd, ioas, (uintptr_t)buf2m + 1, 1, &iova, 0);
	printf("Q3a fresh len=1 uva=buf+1 rc=%d errno=%d iova=0x%llx\n", E(rc), (unsigned long long)iova);
	uint32_t ioas2 = ioas_alloc(fd);
	iova = 0; rc = map(fd, ioas2, (uintptr_t)buf2m + 5, 3, &iova, 0);
	printf("Q3b fresh len=3 uva=buf+5 rc=%d errno=%d iova=0x%llx\n", E(rc), (unsigned long long)iova);
	iova = 0; rc = map(fd, ioas, (uintptr_t)buf2m + 5, 3, &iova, 0);
	printf("Q3c after_Q3a_same_ioas len=3 uva=buf+5 rc=%d errno=%d iova=0x%llx\n", E(rc), (unsigned long long)iova);
	print_ranges("Q3 iova_ranges_fresh_after_maps", fd, ioas);
	/* unmap of the byte-granular area */
	uint64_t ol = 0; rc = unmap(fd, ioas2, 0, 0, &ol);
	printf("Q3d unmap_all(iova=0,len=0) on ioas2 rc=%d errno=%d length=0x%llx\n", E(rc), (unsigned long long)ol);
	/* with a domain attached */
	uint32_t ioas3 = ioas_alloc(fd);
	rc = mock_domain(fd, ioas3, NULL, NULL, NULL);
	iova = 0; rc = map(fd, ioas3, (uintptr_t)buf2m + 1, 1, &iova, 0);
	printf("Q3e domain len=1 uva=buf+1 rc=%d errno=%d iova=0x%llx\n", E(rc), (unsigned long long)iova);
	iova = 0; rc = map(fd, ioas3, (uintptr_t)buf2m + 5, 3, &iova, 0);
	printf("Q3f domain len=3 uva=buf+5 rc=%d errno=%d iova=0x%llx\n", E(rc), (unsigned long long)iova);
	close(fd);
}

static void q4(void)
{
	int fd = xopen();
	uint32_t ioas = ioas_alloc(fd);
	print_ranges("Q4a fresh", fd, ioas);
	int rc = add_reserved(fd, ioas, 0x1000, 0x1000);
	printf("Q4b add_reserved(0x1000,0x1000) rc=%d errno=%d\n", E(rc));
	print_ranges("Q4b after_reserved", fd, ioas);
	uint32_t stdev, hwpt, idev;
	rc = mock_domain(fd, ioas, &stdev, &hwpt, &idev);
	printf("Q4c mock_domain rc=%d errno=%d stdev=%u hwpt=%u idev=%u\n", E(rc), stdev, hwpt, idev);
	print_ranges("Q4c after_domain", fd, ioas);
	uint32_t ioas2 = ioas_alloc(fd);
	rc = mock_domain(fd, ioas2, NULL, NULL, NULL);
	print_ranges("Q4d domain_only_no_reserved", fd, ioas2);
	/* num_iovas too small */
	struct iommu_ioas_iova_ranges c = { .size = sizeof(c), .ioas_id = ioas, .num_iovas = 0 };
	rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &c);
	printf("Q4e num_iovas=0 rc=%d errno=%d num_iovas_out=%u align=0x%llx\n", E(rc), c.num_iovas,
	       (unsigned long long)c.out_iova_alignment);
	close(fd);
}

static void q5(void)
{
	int fd = xopen();
	uint32_t ioas = ioas_alloc(fd);
	int rc = add_reserved(fd, ioas, 0x1000, 0x1000);
	printf("Q5a first add_reserved(0x1000,0x1000) rc=%d errno=%d\n", E(rc));
	rc = add_reserved(fd, ioas, 0x1000, 0x1000);
	printf("Q5a same again rc=%d errno=%d\n", E(rc));
	rc = add_reserved(fd, ioas, 0x1800, 0x1000);
	printf("Q5a partial overlap (0x1800,0x1000) rc=%d errno=%d\n", E(rc));
	rc = add_reserved(fd, ioas, 0x2000, 0x1000);
	printf("Q5a adjacent (0x2000,0x1000) rc=%d errno=%d\n", E(rc));
	print_ranges("Q5a ranges", fd, ioas);
	rc = add_reserved(fd, ioas, 0x10000, 0);
	printf("Q5b length=0 rc=%d errno=%d\n", E(rc));
	rc = add_reserved(fd, ioas, UINT64_MAX - 0x10, 0x100);
	printf("Q5c start=U64_MAX-0x10 len=0x100 rc=%d errno=%d\n", E(rc));
	rc = add_reserved(fd, ioas, UINT64_MAX - 0xff, 0x100);
	printf("Q5d start=U64_MAX-0xff len=0x100 (ends at U64_MAX) rc=%d errno=%d\n", E(rc));
	/* reserved overlapping a mapped area */
	uint64_t iova = 0x100000;
	map(fd, ioas, (uintptr_t)buf2m, 0x1000, &iova, 1);
	rc = add_reserved(fd, ioas, 0x100000, 0x1000);
	printf("Q5e reserved over mapped area rc=%d errno=%d\n", E(rc));
	print_ranges("Q5 final", fd, ioas);
	close(fd);
}

static void q6(void)
{
	int fd = xopen();
	uint32_t ioas = ioas_alloc(fd);
	struct iommu_iova_range r1[] = { { .start = 0x1000, .last = 0x1000 } };
	int rc = allow(fd, ioas, r1, 1);
	printf("Q6a start==last {0x1000,0x1000} rc=%d errno=%d\n", E(rc));
	print_ranges("Q6a ranges", fd, ioas);
	struct iommu_iova_range r2[] = { { .start = 0x10000, .last = 0x1ffff }, { .start = 0x1000, .last = 0x1fff } };
	rc = allow(fd, ioas, r2, 2);
	printf("Q6b descending non-overlapping rc=%d errno=%d\n", E(rc));
	print_ranges("Q6b ranges", fd, ioas);
	struct iommu_iova_range r3[] = { { .start = 0x1000, .last = 0x2fff }, { .start = 0x2000, .last = 0x3fff } };
	rc = allow(fd, ioas, r3, 2);
	printf("Q6x overlapping rc=%d errno=%d\n", E(rc));
	struct iommu_iova_range r4[] = { { .start = 0x2000, .last = 0x1fff } };
	rc = allow(fd, ioas, r4, 1);
	printf("Q6x start>last rc=%d errno=%d\n", E(rc));
	struct iommu_iova_range r5[] = { { .start = 0x1000, .last = 0x1fff }, { .start = 0x2000, .last = 0x2fff } };
	rc = allow(fd, ioas, r5, 2);
	printf("Q6x adjacent rc=%d errno=%d\n", E(rc));
	print_ranges("Q6x adjacent ranges", fd, ioas);
	rc = allow(fd, ioas, NULL, 0);
	printf("Q6c num_iovas=0 NULL rc=%d errno=%d\n", E(rc));
	print_ranges("Q6c ranges", fd, ioas);
	close(fd);
}

static void q7(void)
{
	int fd = xopen(); int rc;
	uint32_t ioas = ioas_alloc(fd);
	uint64_t iova = 0x100000;
	map(fd, ioas, (uintptr_t)buf2m, 0x1000, &iova, 1);
	rc = destroy(fd, ioas);
	printf("Q7a destroy ioas with area, no domain rc=%d errno=%d\n", E(rc));
	rc = destroy(fd, ioas);
	printf("Q7a destroy again rc=%d errno=%d\n", E(rc));
	uint32_t ioas2 = ioas_alloc(fd), stdev, hwpt, idev;
	rc = mock_domain(fd, ioas2, &stdev, &hwpt, &idev);
	printf("Q7 mock_domain ioas=%u rc=%d errno=%d stdev=%u hwpt=%u idev=%u\n", ioas2, E(rc), stdev, hwpt, idev);
	rc = destroy(fd, hwpt);
	printf("Q7b destroy hwpt (attached) rc=%d errno=%d\n", E(rc));
	rc = destroy(fd, idev);
	printf("Q7c destroy idev rc=%d errno=%d\n", E(rc));
	rc = destroy(fd, ioas2);
	printf("Q7x destroy ioas with domain attached rc=%d errno=%d\n", E(rc));
	rc = destroy(fd, stdev);
	printf("Q7d destroy stdev rc=%d errno=%d\n", E(rc));
	rc = destroy(fd, hwpt);
	printf("Q7d destroy hwpt after stdev rc=%d errno=%d\n", E(rc));
	rc = destroy(fd, idev);
	printf("Q7d destroy idev after stdev rc=%d errno=%d\n", E(rc));
	rc = destroy(fd, ioas2);
	printf("Q7d destroy ioas2 after stdev rc=%d errno=%d\n", E(rc));
	uint32_t ioas3 = ioas_alloc(fd);
	printf("Q7 next ioas id=%u\n", ioas3);
	close(fd);
}

static void q8(void)
{
	int fd = xopen(); int rc; uint64_t v;
	v = 0; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, &v);
	printf("Q8x RLIMIT GET fresh fd rc=%d errno=%d val64=%llu\n", E(rc), (unsigned long long)v);
	v = 1; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v);
	printf("Q8x RLIMIT SET 1 on fd w/o objects rc=%d errno=%d\n", E(rc));
	v = 0; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v);
	printf("Q8x RLIMIT SET 0 back rc=%d errno=%d\n", E(rc));
	uint32_t ioas = ioas_alloc(fd);
	v = 1; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v);
	printf("Q8a RLIMIT SET 1 with one IOAS rc=%d errno=%d\n", E(rc));
	v = 0; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v);
	printf("Q8a RLIMIT SET 0 with one IOAS rc=%d errno=%d\n", E(rc));
	v = 0; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, 2, 0, &v);
	printf("Q8b RLIMIT op=2 rc=%d errno=%d\n", E(rc));
	v = 0; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, 2, ioas, &v);
	printf("Q8b HUGE_PAGES op=2 rc=%d errno=%d\n", E(rc));
	v = 0xabc; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, &v);
	printf("Q8c HUGE_PAGES GET rc=%d errno=%d val64=%llu\n", E(rc), (unsigned long long)v);
	v = 0; rc = option(fd, 2, IOMMU_OPTION_OP_GET, 0, &v);
	printf("Q8x option_id=2 rc=%d errno=%d\n", E(rc));
	v = 2; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v);
	printf("Q8x HUGE_PAGES SET 2 rc=%d errno=%d\n", E(rc));
	v = 0; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, ioas, &v);
	printf("Q8x RLIMIT GET object_id!=0 rc=%d errno=%d\n", E(rc));
	close(fd);
}

static void q9(void)
{
	int fd = xopen(); int rc; uint64_t iova, d;
	uint32_t src = ioas_alloc(fd), dst = ioas_alloc(fd);
	iova = 0x100000; rc = map(fd, src, (uintptr_t)buf2m, 0x1000, &iova, 1);
	iova = 0x101000; rc |= map(fd, src, (uintptr_t)buf2m + 0x1000, 0x1000, &iova, 1);
	printf("Q9 setup maps rc=%d\n", rc);
	d = 0x500000; rc = copy(fd, dst, src, 0x100000, 0x2000, &d, 1);
	printf("Q9a copy spanning 2 adjacent areas (fixed dst) rc=%d errno=%d dst_iova=0x%llx\n", E(rc), (unsigned long long)d);
	d = 0; rc = copy(fd, dst, src, 0x100000, 0x2000, &d, 0);
	printf("Q9a' copy spanning 2 adjacent areas (auto dst) rc=%d errno=%d dst_iova=0x%llx\n", E(rc), (unsigned long long)d);
	/* adjacent but non-contiguous user VA */
	iova = 0x110000; map(fd, src, (uintptr_t)buf2m + 0x5000, 0x1000, &iova, 1);
	iova = 0x111000; map(fd, src, (uintptr_t)buf2m + 0x2000, 0x1000, &iova, 1);
	d = 0x600000; rc = copy(fd, dst, src, 0x110000, 0x2000, &d, 1);
	printf("Q9a'' copy spanning 2 adjacent areas, discontiguous uva rc=%d errno=%d\n", E(rc));
	/* hole */
	iova = 0x300000; map(fd, src, (uintptr_t)buf2m, 0x1000, &iova, 1);
	iova = 0x302000; map(fd, src, (uintptr_t)buf2m, 0x1000, &iova, 1);
	d = 0x700000; rc = copy(fd, dst, src, 0x300000, 0x3000, &d, 1);
	printf("Q9b copy covering hole rc=%d errno=%d\n", E(rc));
	d = 0x700000; rc = copy(fd, dst, src, 0x301000, 0x1000, &d, 1);
	printf("Q9b copy entirely in hole rc=%d errno=%d\n", E(rc));
	d = 0x700000; rc = copy(fd, dst, src, 0x300000, 0x800, &d, 1);
	printf("Q9x copy partial area (len 0x800) rc=%d errno=%d\n", E(rc));
	d = 0x700000; rc = copy(fd, dst, src, 0x300000, 0x1000, &d, 1);
	printf("Q9x copy exact single area rc=%d errno=%d\n", E(rc));
	close(fd);
}

static void vfio_run(const char *tag, unsigned long type)
{
	int fd = xopen(); int rc;
	struct iommu_vfio_ioas v = { .size = sizeof(v), .op = IOMMU_VFIO_IOAS_GET };
	rc = ioctl(fd, IOMMU_VFIO_IOAS, &v);
	printf("%s vfio_ioas GET fresh rc=%d errno=%d ioas_id=%u\n", tag, E(rc), v.ioas_id);
	uint32_t ioas = ioas_alloc(fd);
	rc = mock_domain(fd, ioas, NULL, NULL, NULL);
	printf("%s mock_domain ioas=%u rc=%d errno=%d\n", tag, ioas, E(rc));
	v = (struct iommu_vfio_ioas){ .size = sizeof(v), .op = IOMMU_VFIO_IOAS_SET, .ioas_id = ioas };
	rc = ioctl(fd, IOMMU_VFIO_IOAS, &v);
	printf("%s vfio_ioas SET rc=%d errno=%d\n", tag, E(rc));
	v = (struct iommu_vfio_ioas){ .size = sizeof(v), .op = IOMMU_VFIO_IOAS_GET };
	rc = ioctl(fd, IOMMU_VFIO_IOAS, &v);
	printf("%s vfio_ioas GET rc=%d errno=%d ioas_id=%u\n", tag, E(rc), v.ioas_id);
	rc = ioctl(fd, VFIO_SET_IOMMU, type);
	printf("%s VFIO_SET_IOMMU(%lu) rc=%d errno=%d\n", tag, type, E(rc));
	struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)buf2m, .iova = 0x1000000, .size = 0x4000 };
	rc = ioctl(fd, VFIO_IOMMU_MAP_DMA, &m);
	printf("%s MAP_DMA iova=0x1000000 size=0x4000 rc=%d errno=%d\n", tag, E(rc));
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = 0x1001000, .size = 0x1000 };
	rc = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u);
	printf("%s UNMAP_DMA middle iova=0x1001000 size=0x1000 rc=%d errno=%d size_out=0x%llx\n", tag, E(rc),
	       (unsigned long long)u.size);
	u = (struct vfio_iommu_type1_dma_unmap){ .argsz = sizeof(u), .iova = 0x1000000, .size = 0x4000 };
	rc = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u);
	printf("%s UNMAP_DMA whole iova=0x1000000 size=0x4000 rc=%d errno=%d size_out=0x%llx\n", tag, E(rc),
	       (unsigned long long)u.size);
	u = (struct vfio_iommu_type1_dma_unmap){ .argsz = sizeof(u), .iova = 0x1000000, .size = 0x4000 };
	rc = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u);
	printf("%s UNMAP_DMA whole again rc=%d errno=%d size_out=0x%llx\n", tag, E(rc), (unsigned long long)u.size);
	uint64_t hv = 7;
	rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, &hv);
	printf("%s HUGE_PAGES GET rc=%d errno=%d val64=%llu\n", tag, E(rc), (unsigned long long)hv);
	close(fd);
}

static void q10(void)
{
	vfio_run("Q10 type1", VFIO_TYPE1_IOMMU);
	vfio_run("Q10 type1v2", VFIO_TYPE1v2_IOMMU);
}

static void q11(void)
{
	int fd = xopen(); int rc; uint64_t iova;
	uint32_t ioas = ioas_alloc(fd);
	rc = mock_domain(fd, ioas, NULL, NULL, NULL);
	printf("Q11 mock_domain rc=%d errno=%d\n", E(rc));
	for (unsigned r = 0; r <= 3; r++) {
		rc = check_refs(fd, page4k, 0x1000, r);
		printf("Q11 before_map check_refs refs=%u rc=%d errno=%d\n", r, E(rc));
	}
	iova = 0; rc = map(fd, ioas, (uintptr_t)page4k, 0x1000, &iova, 0);
	printf("Q11 map1 rc=%d errno=%d iova=0x%llx\n", E(rc), (unsigned long long)iova);
	for (unsigned r = 0; r <= 3; r++) {
		rc = check_refs(fd, page4k, 0x1000, r);
		printf("Q11 after_map1 check_refs refs=%u rc=%d errno=%d\n", r, E(rc));
	}
	iova = 0; rc = map(fd, ioas, (uintptr_t)page4k, 0x1000, &iova, 0);
	printf("Q11 map2 rc=%d errno=%d iova=0x%llx\n", E(rc), (unsigned long long)iova);
	for (unsigned r = 0; r <= 3; r++) {
		rc = check_refs(fd, page4k, 0x1000, r);
		printf("Q11 after_map2 check_refs refs=%u rc=%d errno=%d\n", r, E(rc));
	}
	close(fd);
	/* no-domain variant */
	fd = xopen(); ioas = ioas_alloc(fd);
	iova = 0; map(fd, ioas, (uintptr_t)page4k, 0x1000, &iova, 0);
	iova = 0; map(fd, ioas, (uintptr_t)page4k, 0x1000, &iova, 0);
	for (unsigned r = 0; r <= 2; r++) {
		rc = check_refs(fd, page4k, 0x1000, r);
		printf("Q11x nodomain two maps check_refs refs=%u rc=%d errno=%d\n", r, E(rc));
	}
	close(fd);
}

int main(int argc, char **argv)
{
	void *raw = mmap(NULL, 6 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) { perror("mmap"); return 1; }
	buf2m = (void *)(((uintptr_t)raw + 0x1fffff) & ~(uintptr_t)0x1fffff);
	memset(buf2m, 0x5a, 4 << 20);
	page4k = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	madvise(page4k, 0x1000, MADV_NOHUGEPAGE);
	memset(page4k, 0x11, 0x1000);
	printf("INFO buf2m=%p page4k=%p\n", buf2m, page4k);
	const char *only = argc > 1 ? argv[1] : NULL;
#define RUN(n) if (!only || !strcmp(only, #n)) { n(); fflush(stdout); }
	RUN(q1) RUN(q1d) RUN(q2) RUN(q3) RUN(q4) RUN(q5) RUN(q6) RUN(q7) RUN(q8) RUN(q9) RUN(q10) RUN(q11)
	return 0;
}
