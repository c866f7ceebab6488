// Probe iommufd IOAS rules (Linux 6.12 + mock driver), P1..P13; output in probe-ioas.out.txt.
// Run: $ORACLE/run-in-vm.sh ./probe [pN]   (see /work/shared/oracle/README.md)
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/iommufd.h>
/* build: gcc -static -O2 -I$ORACLE/linux-source-6.12/usr/include -I$ORACLE/linux-source-6.12/drivers/iommu/iommufd -o probe probe-ioas.c */
#include "probe.h"

typedef unsigned long long ull;

static char *buf2m;
static char *page4k;

static void print_ranges(const char *tag, int fd, uint32_t ioas)
{
	struct iommu_iova_range r[16];
	struct iommu_ioas_iova_ranges c = { .size = sizeof(c), .ioas_id = ioas, .num_iovas = 16, .allowed_iovas = (uintptr_t)r };
	int rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &c);
	printf("%s rc=%d errno=%d num_iovas=%u align=0x%llx", tag, E(rc), c.num_iovas, (ull)c.out_iova_alignment);
	for (unsigned i = 0; !rc && i < c.num_iovas && i < 16; i++) printf(" [0x%llx..0x%llx]", (ull)r[i].start, (ull)r[i].last);
	printf("\n");
}
static int refs_of(int fd, void *p)
{
	for (unsigned r = 0; r < 8; r++) if (!check_refs(fd, p, 4096, r)) return r;
	return -1;
}
static void status(const char *tag)
{
	FILE *f = fopen("/proc/self/status", "r"); char line[256];
	printf("%s", tag);
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "VmLck:", 6) || !strncmp(line, "VmPin:", 6)) { line[strlen(line) - 1] = 0; printf(" %s", line); }
	}
	fclose(f);
	printf("\n");
}

static void p1(void)
{
	int fd = xopen(); uint32_t ioas = ioas_alloc(fd);
	add_reserved(fd, ioas, 0x1000, 0x1000);
	struct iommu_iova_range r[3]; memset(r, 0xcc, sizeof(r));
	struct iommu_ioas_iova_ranges c = { .size = sizeof(c), .ioas_id = ioas, .num_iovas = 1, .allowed_iovas = (uintptr_t)r };
	int rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &c);
	printf("P1 cap1 rc=%d errno=%d num=%u align=0x%llx r0=[0x%llx..0x%llx] r1.start=0x%llx\n", E(rc), c.num_iovas, (ull)c.out_iova_alignment, (ull)r[0].start, (ull)r[0].last, (ull)r[1].start);
	memset(r, 0xcc, sizeof(r));
	c = (struct iommu_ioas_iova_ranges){ .size = sizeof(c), .ioas_id = ioas, .num_iovas = 0, .allowed_iovas = (uintptr_t)r };
	rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &c);
	printf("P1 cap0 rc=%d errno=%d num=%u r0.start=0x%llx\n", E(rc), c.num_iovas, (ull)r[0].start);
	c = (struct iommu_ioas_iova_ranges){ .size = sizeof(c), .ioas_id = ioas, .num_iovas = 2, .allowed_iovas = 8 };
	rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &c);
	printf("P1 badptr rc=%d errno=%d\n", E(rc));
	c = (struct iommu_ioas_iova_ranges){ .size = sizeof(c), .ioas_id = ioas, .num_iovas = 2, .__reserved = 1, .allowed_iovas = (uintptr_t)r };
	rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &c);
	printf("P1 reserved rc=%d errno=%d\n", E(rc));
	c = (struct iommu_ioas_iova_ranges){ .size = sizeof(c), .ioas_id = 99, .num_iovas = 2, .allowed_iovas = (uintptr_t)r };
	rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &c);
	printf("P1 badid rc=%d errno=%d\n", E(rc));
	struct iommu_ioas_alloc a = { .size = sizeof(a), .flags = 1 };
	rc = ioctl(fd, IOMMU_IOAS_ALLOC, &a);
	printf("P1 alloc flags=1 rc=%d errno=%d\n", E(rc));
	a = (struct iommu_ioas_alloc){ .size = sizeof(a) };
	rc = ioctl(fd, IOMMU_IOAS_ALLOC, &a);
	printf("P1 alloc next id=%u\n", a.out_ioas_id);
	close(fd);
}

static void p2(void)
{
	int fd = xopen(); uint32_t ioas = ioas_alloc(fd); uint64_t iova; int rc;
	iova = 0; rc = map(fd, ioas, 1ULL << 31, 0x1000, &iova, 0);
	printf("P2 nodomain map uva=1<<31 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	uint32_t stdev;
	rc = mock_domain(fd, ioas, &stdev, NULL, NULL);
	printf("P2 attach with an area outside the aperture rc=%d errno=%d\n", E(rc));
	print_ranges("P2 after failed attach", fd, ioas);
	uint32_t ioas2 = ioas_alloc(fd);
	rc = mock_domain(fd, ioas2, NULL, NULL, NULL);
	iova = 0; rc = map(fd, ioas2, 1ULL << 31, 0x1000, &iova, 0);
	printf("P2 domain map uva=1<<31 rc=%d errno=%d\n", E(rc));
	char *b = mmap(NULL, 0x4000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(b, 1, 0x4000);
	munmap(b + 0x2000, 0x2000);
	iova = 0; rc = map(fd, ioas2, (uintptr_t)b, 0x4000, &iova, 0);
	printf("P2 domain map half-unmapped rc=%d errno=%d refs_first=%d\n", E(rc), refs_of(fd, b));
	iova = 0x1000000; rc = map(fd, ioas2, (uintptr_t)b, 0x2000, &iova, 1);
	printf("P2 domain map mapped half fixed rc=%d errno=%d refs_first=%d\n", E(rc), refs_of(fd, b));
	/* read-only memory with WRITEABLE */
	char *ro = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	iova = 0; rc = map(fd, ioas2, (uintptr_t)ro, 0x1000, &iova, 0);
	printf("P2 domain map RW of PROT_READ rc=%d errno=%d\n", E(rc));
	iova = 0; rc = mapf(fd, ioas2, IOMMU_IOAS_MAP_READABLE, (uintptr_t)ro, 0x1000, &iova);
	printf("P2 domain map R of PROT_READ rc=%d errno=%d\n", E(rc));
	iova = 0; rc = map(fd, ioas, (uintptr_t)ro, 0x1000, &iova, 0);
	printf("P2 nodomain map RW of PROT_READ rc=%d errno=%d\n", E(rc));
	close(fd);
}

static void p3(void)
{
	int fd = xopen(); uint32_t ioas = ioas_alloc(fd); uint64_t v, iova, ol; int rc;
	iova = 0x100000; map(fd, ioas, (uintptr_t)page4k + 0x800, 0x800, &iova, 1);
	v = 0; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v);
	printf("P3 hp=0 with 0x800 area rc=%d errno=%d\n", E(rc));
	v = 7; option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, &v);
	printf("P3 get=%llu\n", v);
	unmap(fd, ioas, 0, UINT64_MAX, &ol);
	iova = 0x100000; map(fd, ioas, (uintptr_t)page4k, 0x1000, &iova, 1);
	v = 0; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v);
	printf("P3 hp=0 with aligned area nodomain rc=%d errno=%d\n", E(rc));
	print_ranges("P3 after hp=0", fd, ioas);
	v = 0; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v);
	printf("P3 hp=0 again rc=%d errno=%d\n", E(rc));
	iova = 0x200000; rc = map(fd, ioas, (uintptr_t)page4k, 0x800, &iova, 1);
	printf("P3 map 0x800 with hp=0 rc=%d errno=%d\n", E(rc));
	iova = 0; rc = map(fd, ioas, (uintptr_t)page4k + 0x800, 0x800, &iova, 0);
	printf("P3 automap 0x800 with hp=0 rc=%d errno=%d\n", E(rc));
	v = 1; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v);
	printf("P3 hp=1 rc=%d errno=%d\n", E(rc));
	print_ranges("P3 after hp=1", fd, ioas);
	rc = mock_domain(fd, ioas, NULL, NULL, NULL);
	printf("P3 attach with an area outside the aperture rc=%d errno=%d\n", E(rc));
	unmap(fd, ioas, 0, UINT64_MAX, &ol);
	rc = mock_domain(fd, ioas, NULL, NULL, NULL);
	printf("P3 attach rc=%d errno=%d\n", E(rc));
	iova = 0x1000000; map(fd, ioas, (uintptr_t)page4k, 0x1000, &iova, 1);
	v = 0; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v);
	printf("P3 hp=0 with domain+area rc=%d errno=%d\n", E(rc));
	unmap(fd, ioas, 0, UINT64_MAX, &ol);
	v = 0; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v);
	printf("P3 hp=0 with domain no area rc=%d errno=%d\n", E(rc));
	print_ranges("P3 domain hp=0", fd, ioas);
	v = 0; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, 0, &v);
	printf("P3 objid=0 rc=%d errno=%d\n", E(rc));
	v = 0; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, 77, &v);
	printf("P3 objid=77 rc=%d errno=%d\n", E(rc));
	struct iommu_option c = { .size = sizeof(c), .option_id = IOMMU_OPTION_HUGE_PAGES, .op = IOMMU_OPTION_OP_GET, .__reserved = 1, .object_id = ioas };
	rc = ioctl(fd, IOMMU_OPTION, &c);
	printf("P3 __reserved rc=%d errno=%d\n", E(rc));
	v = 0; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v);
	printf("P3 rlimit set with objects rc=%d errno=%d\n", E(rc));
	v = 5; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v);
	printf("P3 rlimit set 5 with objects rc=%d errno=%d\n", E(rc));
	close(fd);
	fd = xopen();
	v = 2; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v);
	printf("P3 rlimit set 2 empty rc=%d errno=%d\n", E(rc));
	v = 1; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, 0, &v);
	printf("P3 hp get objid=0 rc=%d errno=%d\n", E(rc));
	close(fd);
}

static void p4(void)
{
	int fd = xopen(); uint32_t ioas = ioas_alloc(fd); uint64_t iova, ol; int rc;
	iova = 0x100000; map(fd, ioas, (uintptr_t)buf2m, 0x1000, &iova, 1);
	iova = 0x102000; map(fd, ioas, (uintptr_t)buf2m, 0x1000, &iova, 1);
	iova = 0x104000; map(fd, ioas, (uintptr_t)buf2m, 0x2000, &iova, 1);
	ol = 0xdead; rc = unmap(fd, ioas, 0x100000, 0x5000, &ol);
	printf("P4 unmap A,B full C partial rc=%d errno=%d len=0x%llx\n", E(rc), (ull)ol);
	rc = unmap(fd, ioas, 0x100000, 0x1000, &ol); printf("P4 A gone? rc=%d errno=%d\n", E(rc));
	rc = unmap(fd, ioas, 0x102000, 0x1000, &ol); printf("P4 B gone? rc=%d errno=%d\n", E(rc));
	rc = unmap(fd, ioas, 0x104000, 0x2000, &ol); printf("P4 C exact rc=%d errno=%d len=0x%llx\n", E(rc), (ull)ol);
	iova = 0x100000; map(fd, ioas, (uintptr_t)buf2m, 0x2000, &iova, 1);
	iova = 0x102000; map(fd, ioas, (uintptr_t)buf2m, 0x1000, &iova, 1);
	ol = 0xdead; rc = unmap(fd, ioas, 0x101000, 0x2000, &ol);
	printf("P4 unmap starting inside A rc=%d errno=%d len=0x%llx\n", E(rc), (ull)ol);
	rc = unmap(fd, ioas, 0x102000, 0x1000, &ol); printf("P4 B still there rc=%d errno=%d len=0x%llx\n", E(rc), (ull)ol);
	ol = 0xdead; rc = unmap(fd, ioas, 0x500000, 0x1000, &ol);
	printf("P4 unmap empty range rc=%d errno=%d len=0x%llx\n", E(rc), (ull)ol);
	ol = 0xdead; rc = unmap(fd, ioas, 0, UINT64_MAX, &ol);
	printf("P4 unmap all rc=%d errno=%d len=0x%llx\n", E(rc), (ull)ol);
	ol = 0xdead; rc = unmap(fd, ioas, 0, UINT64_MAX, &ol);
	printf("P4 unmap all empty rc=%d errno=%d len=0x%llx\n", E(rc), (ull)ol);
	rc = unmap(fd, ioas, UINT64_MAX, 1, &ol); printf("P4 iova=U64_MAX rc=%d errno=%d\n", E(rc));
	rc = unmap(fd, ioas, 1, UINT64_MAX, &ol); printf("P4 len=U64_MAX rc=%d errno=%d\n", E(rc));
	rc = unmap(fd, ioas, 1ULL << 63, (1ULL << 63) + 1, &ol); printf("P4 sum overflow rc=%d errno=%d\n", E(rc));
	rc = unmap(fd, ioas, 1ULL << 63, 1ULL << 63, &ol); printf("P4 to end rc=%d errno=%d\n", E(rc));
	rc = unmap(fd, ioas, 0x1000, 0, &ol); printf("P4 len=0 rc=%d errno=%d\n", E(rc));
	rc = unmap(fd, 99, 0, UINT64_MAX, &ol); printf("P4 bad id rc=%d errno=%d\n", E(rc));
	close(fd);
}

static void p5(void)
{
	int fd = xopen(); uint32_t ioas = ioas_alloc(fd); uint64_t iova; int rc;
	uint64_t b = (uintptr_t)buf2m;
	iova = 0x1000; rc = map(fd, ioas, b, 0, &iova, 1); printf("P5 len0 fixed rc=%d errno=%d\n", E(rc));
	iova = 0; rc = map(fd, ioas, b, 0, &iova, 0); printf("P5 len0 auto rc=%d errno=%d\n", E(rc));
	iova = 0x1000; rc = map(fd, ioas, b, UINT64_MAX - 1, &iova, 1); printf("P5 len=U64_MAX-1 rc=%d errno=%d\n", E(rc));
	iova = 0x1000; rc = map(fd, ioas, b, UINT64_MAX, &iova, 1); printf("P5 len=U64_MAX rc=%d errno=%d\n", E(rc));
	iova = UINT64_MAX; rc = map(fd, ioas, b, 0x1000, &iova, 1); printf("P5 iova=U64_MAX rc=%d errno=%d\n", E(rc));
	iova = UINT64_MAX; rc = map(fd, ioas, b, 0x1000, &iova, 0); printf("P5 iova=U64_MAX auto rc=%d errno=%d\n", E(rc));
	iova = 0x1000; rc = map(fd, ioas, UINT64_MAX - 0xfff, 0x2000, &iova, 1); printf("P5 uva overflow rc=%d errno=%d\n", E(rc));
	iova = UINT64_MAX - 0xfff; rc = map(fd, ioas, b, 0x2000, &iova, 1); printf("P5 iova+len overflow rc=%d errno=%d\n", E(rc));
	iova = UINT64_MAX - 0xfff; rc = map(fd, ioas, b, 0x1000, &iova, 1); printf("P5 iova to U64_MAX rc=%d errno=%d\n", E(rc));
	iova = 0; rc = map(fd, ioas, 0x1000, 1ULL << 63, &iova, 0); printf("P5 auto len=1<<63 rc=%d errno=%d\n", E(rc));
	iova = 0; rc = map(fd, ioas, 0x1000, (1ULL << 63) - 0x1000, &iova, 0); printf("P5 auto len=(1<<63)-4k rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	{ uint64_t ol; unmap(fd, ioas, 0, UINT64_MAX, &ol); }
	iova = 0x1000; rc = mapf(fd, ioas, IOMMU_IOAS_MAP_FIXED_IOVA, b, 0x1000, &iova); printf("P5 noRW rc=%d errno=%d\n", E(rc));
	iova = 0x1000; rc = mapf(fd, ioas, RW | 8, b, 0x1000, &iova); printf("P5 flag8 rc=%d errno=%d\n", E(rc));
	struct iommu_ioas_map c = { .size = sizeof(c), .flags = RW | 1, .ioas_id = ioas, .__reserved = 1, .user_va = b, .length = 0x1000, .iova = 0x1000 };
	rc = ioctl(fd, IOMMU_IOAS_MAP, &c); printf("P5 __reserved rc=%d errno=%d\n", E(rc));
	iova = 0x1000; rc = map(fd, 99, b, 0x1000, &iova, 1); printf("P5 bad id rc=%d errno=%d\n", E(rc));
	iova = 0x1000; rc = map(fd, 99, b, 0, &iova, 1); printf("P5 bad id len0 rc=%d errno=%d\n", E(rc));
	iova = 0x1000; rc = mapf(fd, 99, 0, b, 0x1000, &iova); printf("P5 bad id noRW rc=%d errno=%d\n", E(rc));
	add_reserved(fd, ioas, 0x10000, 0x1000);
	iova = 0x20000; map(fd, ioas, b, 0x1000, &iova, 1);
	iova = 0xf000; rc = map(fd, ioas, b, 0x12000, &iova, 1); printf("P5 over reserved+area rc=%d errno=%d\n", E(rc));
	iova = 0x10800; rc = map(fd, ioas, b, 0x100, &iova, 1); printf("P5 inside reserved rc=%d errno=%d\n", E(rc));
	iova = 0x20fff; rc = map(fd, ioas, b, 0x2, &iova, 1); printf("P5 overlap area last byte rc=%d errno=%d\n", E(rc));
	iova = 0x21000; rc = map(fd, ioas, b, 0x1000, &iova, 1); printf("P5 adjacent after area rc=%d errno=%d\n", E(rc));
	iova = 0x0; rc = map(fd, ioas, b, 0x1000, &iova, 1); printf("P5 fixed iova 0 rc=%d errno=%d\n", E(rc));
	close(fd);
}

static void p6(void)
{
	int fd = xopen(); uint32_t ioas = ioas_alloc(fd); uint64_t iova; int rc;
	uint64_t b = (uintptr_t)buf2m;
	struct iommu_iova_range r[2] = { { 0x10000, 0x10fff } };
	rc = allow(fd, ioas, r, 1); printf("P6 allow rc=%d errno=%d\n", E(rc));
	iova = 0; rc = map(fd, ioas, b, 0x2000, &iova, 0); printf("P6 auto 0x2000 rc=%d errno=%d\n", E(rc));
	iova = 0; rc = map(fd, ioas, b, 0x1000, &iova, 0); printf("P6 auto 0x1000 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, ioas, b, 0x1000, &iova, 0); printf("P6 auto again rc=%d errno=%d\n", E(rc));
	iova = 0x50000; rc = map(fd, ioas, b, 0x1000, &iova, 1); printf("P6 fixed outside allowed rc=%d errno=%d\n", E(rc));
	struct iommu_iova_range r2[2] = { { 0x0, 0xfff }, { 0x40000, 0x7ffff } };
	rc = allow(fd, ioas, r2, 2); printf("P6 allow2 rc=%d errno=%d\n", E(rc));
	iova = 0; rc = map(fd, ioas, b, 0x1000, &iova, 0); printf("P6 auto (allowed 0..fff skipped) rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, ioas, b + 0x1000, 0x3000, &iova, 0); printf("P6 auto 0x3000 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	rc = add_reserved(fd, ioas, 0x40000, 0x1000); printf("P6 reserve in allowed rc=%d errno=%d\n", E(rc));
	rc = add_reserved(fd, ioas, 0x80000, 0x1000); printf("P6 reserve adjacent allowed rc=%d errno=%d\n", E(rc));
	struct iommu_iova_range r3[1] = { { 0x7f000, 0x80000 } };
	rc = allow(fd, ioas, r3, 1); printf("P6 allow over reserved rc=%d errno=%d\n", E(rc));
	print_ranges("P6 ranges", fd, ioas);
	rc = mock_domain(fd, ioas, NULL, NULL, NULL); printf("P6 attach with allowed outside aperture rc=%d errno=%d\n", E(rc));
	rc = allow(fd, ioas, NULL, 0); printf("P6 clear allow rc=%d errno=%d\n", E(rc));
	uint64_t ol; unmap(fd, ioas, 0, UINT64_MAX, &ol);
	rc = mock_domain(fd, ioas, NULL, NULL, NULL); printf("P6 attach after clear rc=%d errno=%d\n", E(rc));
	struct iommu_iova_range r4[1] = { { 0x1000000, 0x1ffffff } };
	rc = allow(fd, ioas, r4, 1); printf("P6 allow inside aperture rc=%d errno=%d\n", E(rc));
	struct iommu_iova_range r5[1] = { { 0x100000, 0x1ffffff } };
	rc = allow(fd, ioas, r5, 1); printf("P6 allow crossing aperture rc=%d errno=%d\n", E(rc));
	struct iommu_ioas_allow_iovas c = { .size = sizeof(c), .ioas_id = ioas, .num_iovas = 1, .__reserved = 1, .allowed_iovas = (uintptr_t)r4 };
	rc = ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &c); printf("P6 allow __reserved rc=%d errno=%d\n", E(rc));
	c = (struct iommu_ioas_allow_iovas){ .size = sizeof(c), .ioas_id = ioas, .num_iovas = 1, .allowed_iovas = 8 };
	rc = ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &c); printf("P6 allow badptr rc=%d errno=%d\n", E(rc));
	rc = allow(fd, 99, r4, 1); printf("P6 allow bad id rc=%d errno=%d\n", E(rc));
	struct iommu_iova_range r6[2] = { { 0x2000, 0x1000 }, { 0, 0 } };
	rc = allow(fd, 99, r6, 1); printf("P6 allow bad id + bad range rc=%d errno=%d\n", E(rc));
	close(fd);
}

static void p7(void)
{
	int fd = xopen(); uint32_t ioas = ioas_alloc(fd); uint64_t iova; int rc;
	uint32_t stdev, hwpt;
	mock_domain(fd, ioas, &stdev, &hwpt, NULL);
	uint64_t p = (uintptr_t)page4k;
	iova = 0x1000800; rc = map(fd, ioas, p + 0x800, 0x800, &iova, 1); printf("P7 fixed 0x800 rc=%d errno=%d\n", E(rc));
	iova = 0x1002800; rc = map(fd, ioas, p + 0x400, 0x800, &iova, 1); printf("P7 uva off 0x400 rc=%d errno=%d\n", E(rc));
	iova = 0x1003000; rc = map(fd, ioas, p, 0x400, &iova, 1); printf("P7 len 0x400 rc=%d errno=%d\n", E(rc));
	iova = 0x1004400; rc = map(fd, ioas, p, 0x800, &iova, 1); printf("P7 iova 0x400 rc=%d errno=%d\n", E(rc));
	iova = 0; rc = map(fd, ioas, p + 0x800, 0x800, &iova, 0); printf("P7 auto 0x800 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, ioas, p, 0x1800, &iova, 0); printf("P7 auto 0x1800 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0x100000; rc = map(fd, ioas, p, 0x1000, &iova, 1); printf("P7 fixed outside aperture rc=%d errno=%d\n", E(rc));
	iova = 0x7ffff000; rc = map(fd, ioas, p, 0x2000, &iova, 1); printf("P7 fixed crossing aperture end rc=%d errno=%d\n", E(rc));
	print_ranges("P7 ranges", fd, ioas);
	printf("P7 refs=%d\n", refs_of(fd, page4k));
	close(fd);
}

static void p8(void)
{
	int fd = xopen(); int rc; uint64_t iova, d;
	uint32_t src = ioas_alloc(fd), dst = ioas_alloc(fd);
	uint64_t b = (uintptr_t)buf2m;
	iova = 0x100000; mapf(fd, src, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA, b, 0x1000, &iova);
	d = 0x200000; rc = copyf(fd, RW | 1, dst, src, 0x100000, 0x1000, &d); printf("P8 RW copy of RO rc=%d errno=%d\n", E(rc));
	d = 0x200000; rc = copyf(fd, IOMMU_IOAS_MAP_READABLE | 1, dst, src, 0x100000, 0x1000, &d); printf("P8 R copy of RO rc=%d errno=%d\n", E(rc));
	d = 0x300000; rc = copyf(fd, IOMMU_IOAS_MAP_WRITEABLE | 1, dst, src, 0x100000, 0x1000, &d); printf("P8 W copy of RO rc=%d errno=%d\n", E(rc));
	d = 0x300000; rc = copyf(fd, 1, dst, src, 0x100000, 0x1000, &d); printf("P8 noRW rc=%d errno=%d\n", E(rc));
	d = 0x300000; rc = copyf(fd, RW | 9, dst, src, 0x100000, 0x1000, &d); printf("P8 flag8 rc=%d errno=%d\n", E(rc));
	d = 0x300000; rc = copyf(fd, RW | 1, dst, src, 0x100000, 0, &d); printf("P8 len0 rc=%d errno=%d\n", E(rc));
	d = 0x300000; rc = copyf(fd, RW | 1, dst, 99, 0x100000, 0x1000, &d); printf("P8 bad src rc=%d errno=%d\n", E(rc));
	d = 0x300000; rc = copyf(fd, RW | 1, 99, src, 0x100000, 0x1000, &d); printf("P8 bad dst rc=%d errno=%d\n", E(rc));
	d = 0x300000; rc = copyf(fd, RW | 1, 99, src, 0x500000, 0x1000, &d); printf("P8 bad dst+hole rc=%d errno=%d\n", E(rc));
	d = 0x300000; rc = copyf(fd, IOMMU_IOAS_MAP_READABLE | 1, src, src, 0x100000, 0x1000, &d); printf("P8 src==dst rc=%d errno=%d\n", E(rc));
	d = UINT64_MAX; rc = copyf(fd, RW | 1, dst, src, 0x100000, 0x1000, &d); printf("P8 dst U64_MAX rc=%d errno=%d\n", E(rc));
	d = 0x300000; rc = copyf(fd, RW | 1, dst, src, UINT64_MAX, 0x1000, &d); printf("P8 src U64_MAX rc=%d errno=%d\n", E(rc));
	d = 0x300000; rc = copyf(fd, RW | 1, dst, src, UINT64_MAX - 0x10, 0x100, &d); printf("P8 src overflow rc=%d errno=%d\n", E(rc));
	d = UINT64_MAX - 0x10; rc = copyf(fd, IOMMU_IOAS_MAP_READABLE | 1, dst, src, 0x100000, 0x100, &d); printf("P8 dst overflow rc=%d errno=%d\n", E(rc));
	add_reserved(fd, dst, 0x400000, 0x1000);
	d = 0x400000; rc = copyf(fd, IOMMU_IOAS_MAP_READABLE | 1, dst, src, 0x100000, 0x1000, &d); printf("P8 dst reserved rc=%d errno=%d\n", E(rc));
	d = 0; rc = copyf(fd, IOMMU_IOAS_MAP_READABLE, dst, src, 0x100800, 0x800, &d); printf("P8 auto partial rc=%d errno=%d dst=0x%llx\n", E(rc), (ull)d);
	close(fd);
	/* pin sharing */
	fd = xopen(); src = ioas_alloc(fd); dst = ioas_alloc(fd);
	mock_domain(fd, src, NULL, NULL, NULL); mock_domain(fd, dst, NULL, NULL, NULL);
	iova = 0x1000000; map(fd, src, (uintptr_t)page4k, 0x1000, &iova, 1);
	printf("P8 after map refs=%d\n", refs_of(fd, page4k));
	d = 0x2000000; rc = copyf(fd, RW | 1, dst, src, 0x1000000, 0x1000, &d); printf("P8 copy rc=%d errno=%d refs=%d\n", E(rc), refs_of(fd, page4k));
	uint64_t ol; unmap(fd, src, 0, UINT64_MAX, &ol); printf("P8 unmap src refs=%d\n", refs_of(fd, page4k));
	unmap(fd, dst, 0, UINT64_MAX, &ol); printf("P8 unmap dst refs=%d\n", refs_of(fd, page4k));
	/* copy from a no-domain ioas into a domain ioas */
	uint32_t nd = ioas_alloc(fd);
	iova = 0x1000000; map(fd, nd, (uintptr_t)page4k, 0x1000, &iova, 1);
	printf("P8 nodomain map refs=%d\n", refs_of(fd, page4k));
	d = 0x3000000; rc = copyf(fd, RW | 1, dst, nd, 0x1000000, 0x1000, &d); printf("P8 copy nd->dom rc=%d errno=%d refs=%d\n", E(rc), refs_of(fd, page4k));
	d = 0x3001000; rc = copyf(fd, RW | 1, src, nd, 0x1000000, 0x1000, &d); printf("P8 copy nd->dom2 rc=%d errno=%d refs=%d\n", E(rc), refs_of(fd, page4k));
	close(fd);
}

static void p9(void)
{
	int fd = xopen();
	uint32_t a = ioas_alloc(fd), b = ioas_alloc(fd), c = ioas_alloc(fd);
	int rc = destroy(fd, b); printf("P9 destroy middle rc=%d errno=%d\n", E(rc));
	printf("P9 next=%u\n", ioas_alloc(fd));
	printf("P9 next2=%u\n", ioas_alloc(fd));
	rc = destroy(fd, 0); printf("P9 destroy 0 rc=%d errno=%d\n", E(rc));
	destroy(fd, a); destroy(fd, c);
	printf("P9 after destroying 1,3 next=%u\n", ioas_alloc(fd));
	close(fd);
}

static int set_caps_drop(uint32_t drop_bit)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d)) return -1;
	d[drop_bit / 32].effective &= ~(1u << (drop_bit % 32));
	d[drop_bit / 32].permitted &= ~(1u << (drop_bit % 32));
	return syscall(SYS_capset, &h, d);
}

static void p10(void)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		/* drop CAP_IPC_LOCK: accounting applies */
		if (set_caps_drop(CAP_IPC_LOCK)) perror("capset");
		struct rlimit rl = { 8 * 4096, 8 * 4096 };
		setrlimit(RLIMIT_MEMLOCK, &rl);
		char *m = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		madvise(m, 16 * 4096, MADV_NOHUGEPAGE);
		memset(m, 3, 16 * 4096);
		int fd = xopen(); uint32_t ioas = ioas_alloc(fd); uint64_t iova, ol; int rc;
		iova = 0x1000000; rc = map(fd, ioas, (uintptr_t)m, 16 * 4096, &iova, 1);
		printf("P10 user nodomain map 16p rc=%d errno=%d\n", E(rc)); status("P10 status nodomain");
		rc = mock_domain(fd, ioas, NULL, NULL, NULL); printf("P10 attach with 16p area limit 8 rc=%d errno=%d\n", E(rc));
		status("P10 status after failed attach");
		unmap(fd, ioas, 0, UINT64_MAX, &ol);
		rc = mock_domain(fd, ioas, NULL, NULL, NULL); printf("P10 attach rc=%d errno=%d\n", E(rc));
		iova = 0; rc = map(fd, ioas, (uintptr_t)m, 8 * 4096, &iova, 0); printf("P10 map 8p rc=%d errno=%d\n", E(rc)); status("P10 status 8p");
		iova = 0; rc = map(fd, ioas, (uintptr_t)m + 8 * 4096, 4096, &iova, 0); printf("P10 map 9th rc=%d errno=%d refs=%d\n", E(rc), refs_of(fd, m + 8 * 4096)); status("P10 status after ENOMEM");
		iova = 0; rc = map(fd, ioas, (uintptr_t)m, 4096, &iova, 0); printf("P10 map same page again rc=%d errno=%d\n", E(rc));
		unmap(fd, ioas, 0, UINT64_MAX, &ol); status("P10 status after unmap all");
		close(fd);
		/* mm mode (needs CAP_SYS_RESOURCE, still have it) */
		fd = xopen(); uint64_t v = 1; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v);
		printf("P10 set mm mode rc=%d errno=%d\n", E(rc));
		ioas = ioas_alloc(fd); mock_domain(fd, ioas, NULL, NULL, NULL);
		iova = 0; rc = map(fd, ioas, (uintptr_t)m, 4 * 4096, &iova, 0); printf("P10 mm map 4p rc=%d errno=%d\n", E(rc)); status("P10 mm status 4p");
		iova = 0; rc = map(fd, ioas, (uintptr_t)m, 5 * 4096, &iova, 0); printf("P10 mm map 5p more rc=%d errno=%d\n", E(rc)); status("P10 mm status");
		close(fd);
		status("P10 after close");
		/* drop CAP_SYS_RESOURCE */
		set_caps_drop(CAP_SYS_RESOURCE);
		fd = xopen(); v = 1; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v);
		printf("P10 set mm mode no cap rc=%d errno=%d\n", E(rc));
		ioas = ioas_alloc(fd);
		v = 3; rc = option(fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v);
		printf("P10 set no cap with objects val3 rc=%d errno=%d\n", E(rc));
		close(fd);
		fflush(stdout);
		_exit(0);
	}
	int st; waitpid(pid, &st, 0);
	/* root has CAP_IPC_LOCK: no accounting */
	int fd = xopen(); uint32_t ioas = ioas_alloc(fd); uint64_t iova; mock_domain(fd, ioas, NULL, NULL, NULL);
	iova = 0; int rc = map(fd, ioas, (uintptr_t)buf2m, 0x4000, &iova, 0); printf("P10 root map rc=%d errno=%d\n", E(rc)); status("P10 root status");
	close(fd);
}

static void p11(void)
{
	/* two domains on one ioas: refs stay 1; detach one */
	int fd = xopen(); uint32_t ioas = ioas_alloc(fd), s1, s2; uint64_t iova; int rc;
	mock_domain(fd, ioas, &s1, NULL, NULL); mock_domain(fd, ioas, &s2, NULL, NULL);
	iova = 0; map(fd, ioas, (uintptr_t)page4k, 0x1000, &iova, 0);
	printf("P11 two domains refs=%d\n", refs_of(fd, page4k));
	destroy(fd, s1); printf("P11 one domain refs=%d\n", refs_of(fd, page4k));
	destroy(fd, s2); printf("P11 no domain refs=%d\n", refs_of(fd, page4k));
	print_ranges("P11 no domain", fd, ioas);
	rc = mock_domain(fd, ioas, &s1, NULL, NULL); printf("P11 reattach rc=%d errno=%d refs=%d\n", E(rc), refs_of(fd, page4k));
	close(fd);
	printf("P11 after close refs=%d\n", refs_of(fd, page4k));
}


static void p12(void)
{
	int fd = xopen(); uint32_t ioas = ioas_alloc(fd); uint64_t iova, v, ol; int rc;
	uint64_t b = (uintptr_t)buf2m;
	/* EFAULT on attach: lazily mapped area inside the aperture */
	iova = 0x1000000; rc = map(fd, ioas, 1ULL << 31, 0x1000, &iova, 1); printf("P12 nodomain map 1<<31 in aperture rc=%d errno=%d\n", E(rc));
	uint32_t stdev, hwpt;
	rc = mock_domain(fd, ioas, &stdev, &hwpt, NULL); printf("P12 attach rc=%d errno=%d stdev=%u\n", E(rc), stdev);
	print_ranges("P12 after failed attach", fd, ioas);
	uint32_t next = ioas_alloc(fd); printf("P12 next id after failed attach=%u\n", next); destroy(fd, next);
	unmap(fd, ioas, 0, UINT64_MAX, &ol);
	/* HUGE_PAGES with domain + area */
	rc = mock_domain(fd, ioas, &stdev, &hwpt, NULL); printf("P12 attach2 rc=%d errno=%d\n", E(rc));
	iova = 0x1000000; map(fd, ioas, b, 0x1000, &iova, 1);
	v = 0; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v); printf("P12 hp=0 domain+area rc=%d errno=%d\n", E(rc));
	v = 1; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v); printf("P12 hp=1 domain+area rc=%d errno=%d\n", E(rc));
	unmap(fd, ioas, 0, UINT64_MAX, &ol);
	v = 0; rc = option(fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v); printf("P12 hp=0 domain noarea rc=%d errno=%d\n", E(rc));
	print_ranges("P12 domain hp=0", fd, ioas);
	rc = destroy(fd, stdev); print_ranges("P12 hp=0 after detach", fd, ioas);
	close(fd);

	fd = xopen(); ioas = ioas_alloc(fd);
	rc = add_reserved(fd, ioas, 0x10000, 0x1000); printf("P12 add_reserved rc=%d errno=%d\n", E(rc));
	iova = 0x20000; rc = map(fd, ioas, b, 0x1000, &iova, 1); printf("P12 map area rc=%d errno=%d\n", E(rc));
	iova = 0xf000; rc = map(fd, ioas, b, 0x12000, &iova, 1); printf("P12 over reserved+area rc=%d errno=%d\n", E(rc));
	iova = 0x10800; rc = map(fd, ioas, b, 0x100, &iova, 1); printf("P12 inside reserved rc=%d errno=%d\n", E(rc));
	iova = 0xffff; rc = map(fd, ioas, b, 0x2, &iova, 1); printf("P12 touching reserved first byte rc=%d errno=%d\n", E(rc));
	iova = 0x20fff; rc = map(fd, ioas, b, 0x2, &iova, 1); printf("P12 overlap area last byte rc=%d errno=%d\n", E(rc));
	iova = 0x21000; rc = map(fd, ioas, b, 0x1000, &iova, 1); printf("P12 adjacent after area rc=%d errno=%d\n", E(rc));
	iova = 0x11000; rc = map(fd, ioas, b, 0x1000, &iova, 1); printf("P12 adjacent after reserved rc=%d errno=%d\n", E(rc));
	iova = 0; rc = map(fd, ioas, b, 0x10000, &iova, 0); printf("P12 auto 64K rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, ioas, b, 0x1000, &iova, 0); printf("P12 auto 4K rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	rc = add_reserved(fd, 99, 0x10000, 0x1000); printf("P12 add_reserved bad id rc=%d errno=%d\n", E(rc));
	rc = add_reserved(fd, 99, 0x10000, 0); printf("P12 add_reserved bad id len0 rc=%d errno=%d\n", E(rc));
	rc = add_reserved(fd, ioas, 0x20800, 0x10); printf("P12 add_reserved inside area rc=%d errno=%d\n", E(rc));
	print_ranges("P12 ranges", fd, ioas);
	close(fd);
}

static void p13(void)
{
	int fd = xopen(); uint64_t iova, d; int rc; uint64_t b = (uintptr_t)buf2m;
	uint32_t a = ioas_alloc(fd);
	struct iommu_iova_range r1[2] = { { 0x1000, 0x1fff }, { 0x2000, 0x2fff } };
	allow(fd, a, r1, 2);
	iova = 0; rc = map(fd, a, b, 0x2000, &iova, 0); printf("P13a adjacent allowed, len 0x2000 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, a, b + 0x1000, 0x2000, &iova, 0); printf("P13i adjacent allowed, len 0x2000 from 4K-aligned VA rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	uint32_t c = ioas_alloc(fd);
	add_reserved(fd, c, 0x5000, 0x1000);
	iova = 0x1000; map(fd, c, b, 0x800, &iova, 1);
	iova = 0; rc = map(fd, c, b + 0x800, 0x800, &iova, 0); printf("P13b off 0x800 len 0x800 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, c, b + 0x1001, 0x1000, &iova, 0); printf("P13c off 1 len 0x1000 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, c, b + 0x1001, 0x1000, &iova, 0); printf("P13c again rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, c, b + 0x6000, 0x3000, &iova, 0); printf("P13e uva low bit 0x2000 len 0x3000 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	uint32_t e = ioas_alloc(fd);
	struct iommu_iova_range r2[1] = { { 0x0, 0x2fff } };
	allow(fd, e, r2, 1);
	iova = 0; rc = map(fd, e, b, 0x1000, &iova, 0); printf("P13f allowed from 0 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, e, b, 0x2000, &iova, 0); printf("P13f 0x2000 rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	uint32_t g = ioas_alloc(fd);
	struct iommu_iova_range r3[1] = { { UINT64_MAX - 0x10000, UINT64_MAX } };
	allow(fd, g, r3, 1);
	iova = 0; rc = map(fd, g, b, 0x1000, &iova, 0); printf("P13g top rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, g, b, 0x10000, &iova, 0); printf("P13g top 64K rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	iova = 0; rc = map(fd, g, b + 0x3000, 0x3000, &iova, 0); printf("P13g top 12K rc=%d errno=%d iova=0x%llx\n", E(rc), (ull)iova);
	/* copy of three slices, automatic */
	uint32_t s = ioas_alloc(fd), t = ioas_alloc(fd);
	iova = 0x100000; map(fd, s, b + 0x3800, 0x800, &iova, 1);
	iova = 0x100800; map(fd, s, b + 0x10000, 0x1000, &iova, 1);
	iova = 0x101800; map(fd, s, b, 0x800, &iova, 1);
	d = 0; rc = copyf(fd, RW, t, s, 0x100000, 0x2000, &d); printf("P13d copy 3 slices auto rc=%d errno=%d dst=0x%llx\n", E(rc), (ull)d);
	d = 0; rc = copyf(fd, RW, t, s, 0x100800, 0x1000, &d); printf("P13d copy middle auto rc=%d errno=%d dst=0x%llx\n", E(rc), (ull)d);
	d = 0; rc = copyf(fd, RW, t, s, 0x100c00, 0x1000, &d); printf("P13d copy off 0xc00 auto rc=%d errno=%d dst=0x%llx\n", E(rc), (ull)d);
	/* unmap all with a failing middle? unmap whole range covering 3 areas */
	uint64_t ol; rc = unmap(fd, s, 0x100000, 0x2000, &ol); printf("P13h unmap 3 areas rc=%d errno=%d len=0x%llx\n", E(rc), (ull)ol);
	close(fd);
}

int main(int argc, char **argv)
{
	void *raw = mmap(NULL, 6 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	buf2m = (void *)(((uintptr_t)raw + 0x1fffff) & ~(uintptr_t)0x1fffff);
	madvise(buf2m, 4 << 20, MADV_NOHUGEPAGE);
	memset(buf2m, 0x5a, 4 << 20);
	page4k = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	madvise(page4k, 0x1000, MADV_NOHUGEPAGE);
	memset(page4k, 0x11, 0x1000);
	const char *only = argc > 1 ? argv[1] : NULL;
#define RUN(n) if (!only || !strcmp(only, #n)) { n(); fflush(stdout); }
	RUN(p1) RUN(p2) RUN(p3) RUN(p4) RUN(p5) RUN(p6) RUN(p7) RUN(p8) RUN(p9) RUN(p10) RUN(p11) RUN(p12) RUN(p13)
	return 0;
}
