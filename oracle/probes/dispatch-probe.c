/*
 * dispatch-probe.c - asks a real Linux 6.12 kernel (the oracle, with CONFIG_IOMMUFD_TEST) how
 * iommufd dispatches raw ioctls: ENOTTY/EFAULT/EINVAL/E2BIG order, table holes, the VFIO
 * integer-argument ioctls, and which ioctls copy their struct back (probed with structs on a
 * read-only page: a call that writes back fails with EFAULT, one that does not succeeds).
 * One line per question; test/uapi/dispatch-oracle.test.ts replays the same calls through
 * dispatchIoctl and compares with dispatch-probe.out.txt.
 *
 * Build and run (see ../shared/oracle/README.md):
 *   gcc -static -O2 -I$ORACLE/linux-source-6.12/usr/include \
 *       -I$ORACLE/linux-source-6.12/drivers/iommu/iommufd -o dispatch-probe dispatch-probe.c
 *   $ORACLE/run-in-vm.sh ./dispatch-probe > dispatch-probe.out.txt
 */
#define _GNU_SOURCE
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
#include <linux/vfio.h>
#include "iommufd_test.h"

#define PG 4096

static int fd;
/* two pages: ro (read-only view of a memfd page) then rw; w = writable view of the ro page */
static uint8_t *ro, *rw, *w;

static void say(const char *q, long rc)
{
	printf("%s rc=%ld errno=%d\n", q, rc, rc < 0 ? errno : 0);
}

static long io(unsigned long req, void *arg)
{
	return ioctl(fd, req, arg);
}

static uint32_t new_ioas(void)
{
	struct iommu_ioas_alloc c = { .size = sizeof(c) };
	if (io(IOMMU_IOAS_ALLOC, &c)) { perror("ioas_alloc"); exit(1); }
	return c.out_ioas_id;
}

static void setup_pages(void)
{
	int mfd = memfd_create("ro", 0);
	if (mfd < 0 || ftruncate(mfd, PG)) { perror("memfd"); exit(1); }
	uint8_t *base = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ro = mmap(base, PG, PROT_READ, MAP_SHARED | MAP_FIXED, mfd, 0);
	w = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	rw = base + PG;
	if (ro == MAP_FAILED || w == MAP_FAILED) { perror("mmap"); exit(1); }
}

/* put `len` bytes of s at the start of the read-only page */
static void *on_ro(const void *s, size_t len)
{
	memset(w, 0, PG);
	memcpy(w, s, len);
	return ro;
}

int main(void)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = 0 };
	uint8_t *u;

	fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) { perror("open"); return 1; }
	setup_pages();
	u = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	/* the order of the generic rules */
	say("D01 nr 0x7f", io(_IO(IOMMUFD_TYPE, 0x7f), &d));
	say("D02 nr 0x7f NULL", io(_IO(IOMMUFD_TYPE, 0x7f), NULL));
	say("D03 DESTROY with size bits", io(_IOWR(IOMMUFD_TYPE, 0x80, struct iommu_destroy), &d));
	say("D04 DESTROY with direction bits only", io(_IOC(_IOC_READ, IOMMUFD_TYPE, 0x80, 0), &d));
	say("D05 DESTROY type 'A'", io(_IO('A', 0x80), &d));
	say("D06 DESTROY NULL", io(IOMMU_DESTROY, NULL));
	say("D07 DESTROY unmapped", io(IOMMU_DESTROY, (void *)(uintptr_t)0x10000));
	say("D08 hole 0x95 NULL", io(_IO(IOMMUFD_TYPE, 0x95), NULL));
	say("D09 hole 0x95", io(_IO(IOMMUFD_TYPE, 0x95), &d));
	for (int nr = 0x8f; nr <= 0x94; nr++) {
		char q[64];
		snprintf(q, sizeof(q), "D10 nr 0x%x (newer than 6.12)", nr);
		say(q, io(_IO(IOMMUFD_TYPE, nr), u));
	}
	say("D11 nr 0xa1 NULL", io(_IO(IOMMUFD_TYPE, 0xa1), NULL));
	say("D12 nr 0xff NULL", io(_IO(IOMMUFD_TYPE, 0xff), NULL));
	d.size = 7;
	say("D13 DESTROY size 7", io(IOMMU_DESTROY, &d));
	memset(u, 0, PG);
	((struct iommu_destroy *)u)->size = 9;
	u[8] = 1;
	say("D14 DESTROY size 9 tail 1", io(IOMMU_DESTROY, u));
	u[8] = 0;
	say("D15 DESTROY size 9 tail 0", io(IOMMU_DESTROY, u));
	((struct iommu_destroy *)u)->size = 0;
	say("D16 DESTROY size 0", io(IOMMU_DESTROY, u));
	/* tail running into an unmapped page: zeros then a fault -> EFAULT; a non-zero byte first -> E2BIG */
	{
		uint8_t *two = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		munmap(two + PG, PG);
		struct iommu_destroy *t = (void *)(two + PG - 16);
		memset(two, 0, PG);
		t->size = 64;
		say("D17 DESTROY tail of zeros into an unmapped page", io(IOMMU_DESTROY, t));
		((uint8_t *)t)[12] = 1;
		say("D18 DESTROY tail non-zero before an unmapped page", io(IOMMU_DESTROY, t));
		t->size = 0xffffffff;
		say("D19 DESTROY size 0xffffffff non-zero tail", io(IOMMU_DESTROY, t));
	}

	/* copy-back length: min(size, sizeof) */
	{
		struct iommu_ioas_alloc *a = (void *)u;
		memset(u, 0xaa, 64);
		a->size = 12;
		a->flags = 0;
		long rc = io(IOMMU_IOAS_ALLOC, a);
		printf("D20 IOAS_ALLOC size 12 rc=%ld id=%u byte12=0x%02x\n", rc, a->out_ioas_id, u[12]);
		memset(u, 0, 64);
		a->size = 16;
		rc = io(IOMMU_IOAS_ALLOC, a);
		printf("D21 IOAS_ALLOC size 16 rc=%ld id=%u size=%u\n", rc, a->out_ioas_id, a->size);
	}
	uint32_t ioas = new_ioas();
	struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas };
	if (io(IOMMU_TEST_CMD, &md)) { perror("mock_domain"); return 1; }
	printf("INFO ioas=%u stdev=%u hwpt=%u idev=%u\n", ioas, md.mock_domain.out_stdev_id, md.mock_domain.out_hwpt_id, md.mock_domain.out_idev_id);
	{
		struct iommu_hw_info *h = (void *)u;
		memset(u, 0xaa, 64);
		memset(u, 0, 32);
		h->size = 32;
		h->dev_id = md.mock_domain.out_idev_id;
		long rc = io(IOMMU_GET_HW_INFO, h);
		printf("D22 GET_HW_INFO size 32 rc=%ld type=0x%x data_len=%u byte32=0x%02x\n", rc, h->out_data_type, h->data_len, u[32]);
		struct iommu_hwpt_alloc *ha = (void *)u;
		memset(u, 0xaa, 64);
		memset(u, 0, 24);
		ha->size = 24;
		ha->dev_id = md.mock_domain.out_idev_id;
		ha->pt_id = ioas;
		rc = io(IOMMU_HWPT_ALLOC, ha);
		printf("D23 HWPT_ALLOC size 24 rc=%ld out_hwpt_id=%u byte24=0x%02x\n", rc, ha->out_hwpt_id, u[24]);
		struct iommu_test_cmd *tc = (void *)u;
		memset(u, 0xaa, 128);
		memset(u, 0, 68);
		tc->size = 68;
		tc->op = IOMMU_TEST_OP_MOCK_DOMAIN;
		tc->id = ioas;
		rc = io(IOMMU_TEST_CMD, tc);
		printf("D24 MOCK_DOMAIN size 68 rc=%ld stdev=%u byte68=0x%02x\n", rc, tc->mock_domain.out_stdev_id, u[68]);
	}

	/* who writes back: structs on the read-only page */
	{
		struct iommu_option o = { .size = sizeof(o), .option_id = IOMMU_OPTION_HUGE_PAGES, .op = IOMMU_OPTION_OP_GET, .object_id = ioas };
		say("D30 OPTION GET read-only struct", io(IOMMU_OPTION, on_ro(&o, sizeof(o))));
		/* first 16 bytes read-only, val64 on the writable page */
		memset(w, 0, PG);
		memcpy(w + PG - 16, &o, 16);
		memset(rw, 0x55, 8);
		long rc = io(IOMMU_OPTION, ro + PG - 16);
		printf("D31 OPTION GET val64 on a writable page rc=%ld errno=%d val64=%llu\n", rc, rc < 0 ? errno : 0, (unsigned long long)*(uint64_t *)rw);
		struct iommu_destroy dd = { .size = sizeof(dd), .id = new_ioas() };
		say("D32 DESTROY read-only struct", io(IOMMU_DESTROY, on_ro(&dd, sizeof(dd))));
		struct iommu_ioas_alloc a = { .size = sizeof(a) };
		say("D33 IOAS_ALLOC read-only struct", io(IOMMU_IOAS_ALLOC, on_ro(&a, sizeof(a))));
		printf("D34 next IOAS_ALLOC id=%u\n", new_ioas());
		struct iommu_ioas_unmap un = { .size = sizeof(un), .ioas_id = ioas, .iova = 1 << 24, .length = 4096 };
		say("D35 IOAS_UNMAP failing read-only struct", io(IOMMU_IOAS_UNMAP, on_ro(&un, sizeof(un))));
		struct iommu_ioas_unmap *up = (void *)u;
		*up = un;
		rc = io(IOMMU_IOAS_UNMAP, up);
		printf("D36 IOAS_UNMAP failing rc=%ld errno=%d length=%llu\n", rc, rc < 0 ? errno : 0, (unsigned long long)up->length);
		struct iommu_ioas_unmap all = { .size = sizeof(all), .ioas_id = ioas, .iova = 0, .length = UINT64_MAX };
		say("D37 IOAS_UNMAP all (succeeds) read-only struct", io(IOMMU_IOAS_UNMAP, on_ro(&all, sizeof(all))));
		struct iommu_hwpt_invalidate inv = { .size = sizeof(inv), .hwpt_id = 9999, .entry_num = 5 };
		struct iommu_hwpt_invalidate *ip = (void *)u;
		*ip = inv;
		rc = io(IOMMU_HWPT_INVALIDATE, ip);
		printf("D38 HWPT_INVALIDATE bad id rc=%ld errno=%d entry_num=%u\n", rc, rc < 0 ? errno : 0, ip->entry_num);
		say("D39 HWPT_INVALIDATE bad id read-only struct", io(IOMMU_HWPT_INVALIDATE, on_ro(&inv, sizeof(inv))));
		struct iommu_ioas_iova_ranges r = { .size = sizeof(r), .ioas_id = ioas, .num_iovas = 0 };
		struct iommu_ioas_iova_ranges *rp = (void *)u;
		*rp = r;
		rc = io(IOMMU_IOAS_IOVA_RANGES, rp);
		printf("D40 IOVA_RANGES capacity 0 rc=%ld errno=%d num_iovas=%u align=%llu\n", rc, rc < 0 ? errno : 0, rp->num_iovas, (unsigned long long)rp->out_iova_alignment);
		say("D41 IOVA_RANGES capacity 0 read-only struct", io(IOMMU_IOAS_IOVA_RANGES, on_ro(&r, sizeof(r))));
		struct iommu_vfio_ioas v = { .size = sizeof(v), .ioas_id = ioas, .op = IOMMU_VFIO_IOAS_SET };
		say("D42 VFIO_IOAS SET read-only struct", io(IOMMU_VFIO_IOAS, on_ro(&v, sizeof(v))));
		v.op = IOMMU_VFIO_IOAS_GET;
		say("D43 VFIO_IOAS GET read-only struct", io(IOMMU_VFIO_IOAS, on_ro(&v, sizeof(v))));
		v.op = IOMMU_VFIO_IOAS_CLEAR;
		say("D44 VFIO_IOAS CLEAR read-only struct", io(IOMMU_VFIO_IOAS, on_ro(&v, sizeof(v))));
		struct iommu_ioas_allow_iovas al = { .size = sizeof(al), .ioas_id = ioas };
		say("D45 ALLOW_IOVAS read-only struct", io(IOMMU_IOAS_ALLOW_IOVAS, on_ro(&al, sizeof(al))));
		struct iommu_hwpt_set_dirty_tracking sd = { .size = sizeof(sd), .hwpt_id = 9999 };
		say("D46 SET_DIRTY_TRACKING bad id read-only struct", io(IOMMU_HWPT_SET_DIRTY_TRACKING, on_ro(&sd, sizeof(sd))));
		struct iommu_hwpt_get_dirty_bitmap gb = { .size = sizeof(gb), .hwpt_id = 9999 };
		say("D47 GET_DIRTY_BITMAP bad id read-only struct", io(IOMMU_HWPT_GET_DIRTY_BITMAP, on_ro(&gb, sizeof(gb))));
		struct iommu_test_cmd ar = { .size = sizeof(ar), .op = IOMMU_TEST_OP_ADD_RESERVED, .id = ioas, .add_reserved = { .start = 1ULL << 40, .length = 4096 } };
		say("D48 ADD_RESERVED read-only struct", io(IOMMU_TEST_CMD, on_ro(&ar, sizeof(ar))));
		struct iommu_test_cmd m2 = { .size = sizeof(m2), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas };
		say("D49 MOCK_DOMAIN read-only struct", io(IOMMU_TEST_CMD, on_ro(&m2, sizeof(m2))));
		printf("D50 next IOAS_ALLOC id=%u\n", new_ioas());
		struct iommu_ioas_map mp = { .size = sizeof(mp), .flags = 1 << 5, .ioas_id = ioas, .iova = 77 };
		struct iommu_ioas_map *mpp = (void *)u;
		*mpp = mp;
		rc = io(IOMMU_IOAS_MAP, mpp);
		printf("D51 IOAS_MAP bad flags rc=%ld errno=%d iova=%llu\n", rc, rc < 0 ? errno : 0, (unsigned long long)mpp->iova);
		struct iommu_fault_alloc fa = { .size = sizeof(fa) };
		say("D52 FAULT_QUEUE_ALLOC read-only struct", io(IOMMU_FAULT_QUEUE_ALLOC, on_ro(&fa, sizeof(fa))));
		printf("D53 next IOAS_ALLOC id=%u\n", new_ioas());
		struct iommu_test_cmd op16 = { .size = sizeof(op16), .op = 16 };
		say("D54 test op 16", io(IOMMU_TEST_CMD, &op16));
	}

	/* VFIO compat: integer arguments and return values */
	say("D60 VFIO_GET_API_VERSION", io(VFIO_GET_API_VERSION, NULL));
	say("D61 VFIO_CHECK_EXTENSION(TYPE1v2)", ioctl(fd, VFIO_CHECK_EXTENSION, (unsigned long)VFIO_TYPE1v2_IOMMU));
	say("D62 VFIO_CHECK_EXTENSION(TYPE1v2 + 1<<32)", ioctl(fd, VFIO_CHECK_EXTENSION, (unsigned long)VFIO_TYPE1v2_IOMMU | (1UL << 32)));
	say("D63 VFIO_CHECK_EXTENSION(NOIOMMU)", ioctl(fd, VFIO_CHECK_EXTENSION, (unsigned long)VFIO_NOIOMMU_IOMMU));
	say("D64 VFIO_SET_IOMMU(7)", ioctl(fd, VFIO_SET_IOMMU, 7UL));
	say("D65 VFIO_SET_IOMMU(TYPE1v2) without compat IOAS", ioctl(fd, VFIO_SET_IOMMU, (unsigned long)VFIO_TYPE1v2_IOMMU));
	say("D66 VFIO_GET_API_VERSION with size bits", io(_IOR(VFIO_TYPE, VFIO_BASE, int), NULL));
	say("D67 VFIO_IOMMU_DIRTY_PAGES", io(VFIO_IOMMU_DIRTY_PAGES, u));
	say("D68 VFIO_IOMMU_GET_INFO NULL", io(VFIO_IOMMU_GET_INFO, NULL));
	return 0;
}
