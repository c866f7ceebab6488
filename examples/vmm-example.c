/* SPDX-License-Identifier: MIT */
/*
 * vmm-example: a short VMM-like sequence against /dev/iommu, the program `softiommu run` runs when
 * given none. It needs the selftest's mock IOMMU (IOMMU_TEST_CMD), which softiommu always has and
 * a real kernel only with CONFIG_IOMMUFD_TEST.
 *
 *   1. open /dev/iommu, allocate an IOAS, bind a mock device to it (IOMMU_TEST_OP_MOCK_DOMAIN)
 *   2. map 16 MiB of "guest RAM" (anonymous memory with a pattern) at a fixed IOVA
 *   3. query the usable IOVA ranges (first with no room: EMSGSIZE tells how many)
 *   4. the "device" reads guest RAM and writes into it (a selftest access, IOMMU_TEST_OP_ACCESS_RW)
 *   5. a dirty-tracking round: a dirty-tracking HWPT, the device dirties every 3rd page, the
 *      bitmap is read (and cleared), read again (empty)
 *   6. teardown: destroy what was made, unmap, close
 *
 * Prints one line per step and "vmm-example: OK"; exits 1 at the first unexpected result.
 *
 *   cc -I include -o vmm-example examples/vmm-example.c
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

#define RAM_SIZE (16ul << 20)
#define MOCK_PAGE 2048ul /* the mock IOMMU's IO page size */

static int fd = -1;

#define CHECK(cond, ...)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "vmm-example: line %d: ", __LINE__);         \
			fprintf(stderr, __VA_ARGS__);                                \
			fprintf(stderr, " (errno %d: %s)\n", errno, strerror(errno)); \
			exit(1);                                                      \
		}                                                                     \
	} while (0)

static void destroy(uint32_t id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };
	CHECK(ioctl(fd, IOMMU_DESTROY, &d) == 0, "destroy %u", id);
}

int main(void)
{
	/* 1. context, IOAS, mock device */
	fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	CHECK(ioctl(fd, IOMMU_IOAS_ALLOC, &alloc) == 0, "IOAS_ALLOC");
	uint32_t ioas = alloc.out_ioas_id;
	struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas };
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &md) == 0, "MOCK_DOMAIN");
	uint32_t stdev = md.mock_domain.out_stdev_id, idev = md.mock_domain.out_idev_id;
	printf("opened /dev/iommu: ioas %u, mock device %u (idev %u) on auto domain %u\n", ioas, stdev, idev,
	       md.mock_domain.out_hwpt_id);

	/* 2. guest RAM */
	unsigned char *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ram != MAP_FAILED, "mmap guest RAM");
	for (size_t i = 0; i < RAM_SIZE; i += 4096)
		memset(ram + i, (int)(i / 4096) & 0xff, 4096);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)ram,
		.length = RAM_SIZE,
		.iova = MOCK_APERTURE_START,
	};
	CHECK(ioctl(fd, IOMMU_IOAS_MAP, &map) == 0, "IOAS_MAP");
	printf("mapped %lu MiB of guest RAM at IOVA 0x%llx\n", RAM_SIZE >> 20, (unsigned long long)map.iova);

	/* 3. IOVA ranges */
	struct iommu_ioas_iova_ranges r = { .size = sizeof(r), .ioas_id = ioas, .num_iovas = 0 };
	CHECK(ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r) == -1 && errno == EMSGSIZE, "IOVA_RANGES with no room -> EMSGSIZE");
	struct iommu_iova_range ranges[8];
	CHECK(r.num_iovas >= 1 && r.num_iovas <= 8, "num_iovas %u", r.num_iovas);
	r.allowed_iovas = (uintptr_t)ranges;
	CHECK(ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r) == 0, "IOVA_RANGES");
	printf("usable IOVA ranges (%u, alignment %llu):", r.num_iovas, (unsigned long long)r.out_iova_alignment);
	for (unsigned i = 0; i < r.num_iovas; i++)
		printf(" [0x%llx, 0x%llx]", (unsigned long long)ranges[i].start, (unsigned long long)ranges[i].last);
	printf("\n");

	/* 4. device reads and writes guest RAM */
	struct iommu_test_cmd ca = { .size = sizeof(ca), .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas };
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &ca) == 0, "CREATE_ACCESS");
	int access = (int)ca.create_access.out_access_fd;
	unsigned char got[64];
	struct iommu_test_cmd rw = {
		.size = sizeof(rw),
		.op = IOMMU_TEST_OP_ACCESS_RW,
		.id = (uint32_t)access,
		.access_rw = { .iova = MOCK_APERTURE_START + 5 * 4096 + 100, .length = sizeof(got), .uptr = (uintptr_t)got },
	};
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &rw) == 0, "ACCESS_RW read");
	CHECK(memcmp(got, ram + 5 * 4096 + 100, sizeof(got)) == 0, "the device read what the CPU wrote");
	static const char hello[] = "written by the device";
	rw.access_rw.iova = MOCK_APERTURE_START + 7 * 4096;
	rw.access_rw.length = sizeof(hello);
	rw.access_rw.uptr = (uintptr_t)hello;
	rw.access_rw.flags = MOCK_ACCESS_RW_WRITE;
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &rw) == 0, "ACCESS_RW write");
	CHECK(memcmp(ram + 7 * 4096, hello, sizeof(hello)) == 0, "the CPU sees what the device wrote");
	printf("device access (fd %d): read 64 bytes of guest RAM, wrote \"%s\" into it\n", access, (char *)ram + 7 * 4096);
	CHECK(close(access) == 0, "close access fd");

	/* 5. dirty tracking */
	struct iommu_hwpt_alloc ha = {
		.size = sizeof(ha),
		.flags = IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
		.dev_id = idev,
		.pt_id = ioas,
	};
	CHECK(ioctl(fd, IOMMU_HWPT_ALLOC, &ha) == 0, "HWPT_ALLOC dirty tracking");
	uint32_t hwpt = ha.out_hwpt_id;
	struct iommu_test_cmd rep = { .size = sizeof(rep), .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev };
	rep.mock_domain_replace.pt_id = hwpt;
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &rep) == 0, "MOCK_DOMAIN_REPLACE");
	struct iommu_hwpt_set_dirty_tracking sdt = { .size = sizeof(sdt), .flags = IOMMU_HWPT_DIRTY_TRACKING_ENABLE, .hwpt_id = hwpt };
	CHECK(ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &sdt) == 0, "SET_DIRTY_TRACKING on");

	size_t nbits = RAM_SIZE / MOCK_PAGE;
	uint64_t *want = calloc(nbits / 64, 8), *bitmap = calloc(nbits / 64, 8);
	CHECK(want && bitmap, "calloc");
	unsigned long expect = 0;
	for (size_t i = 0; i < nbits; i += 3, expect++)
		want[i / 64] |= 1ull << (i % 64);
	struct iommu_test_cmd dirty = {
		.size = sizeof(dirty),
		.op = IOMMU_TEST_OP_DIRTY,
		.id = hwpt,
		.dirty = { .iova = MOCK_APERTURE_START, .length = RAM_SIZE, .page_size = MOCK_PAGE, .uptr = (uintptr_t)want },
	};
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &dirty) == 0, "TEST_OP_DIRTY");
	struct iommu_hwpt_get_dirty_bitmap gdb = {
		.size = sizeof(gdb),
		.hwpt_id = hwpt,
		.iova = MOCK_APERTURE_START,
		.length = RAM_SIZE,
		.page_size = MOCK_PAGE,
		.data = (uintptr_t)bitmap,
	};
	CHECK(ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &gdb) == 0, "GET_DIRTY_BITMAP");
	unsigned long seen = 0;
	for (size_t i = 0; i < nbits / 64; i++)
		seen += (unsigned long)__builtin_popcountll(bitmap[i]);
	CHECK(seen == expect && memcmp(want, bitmap, nbits / 8) == 0, "dirty bits: %lu, want %lu", seen, expect);
	memset(bitmap, 0, nbits / 8);
	CHECK(ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &gdb) == 0, "GET_DIRTY_BITMAP again");
	seen = 0;
	for (size_t i = 0; i < nbits / 64; i++)
		seen += (unsigned long)__builtin_popcountll(bitmap[i]);
	CHECK(seen == 0, "the first read cleared the bits (%lu left)", seen);
	sdt.flags = 0;
	CHECK(ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &sdt) == 0, "SET_DIRTY_TRACKING off");
	printf("dirty tracking: the device dirtied %lu of %zu IO pages; the bitmap showed %lu, then 0\n",
	       (unsigned long)dirty.dirty.out_nr_dirty, nbits, expect);

	/* 6. teardown */
	destroy(stdev);
	destroy(hwpt);
	struct iommu_ioas_unmap um = { .size = sizeof(um), .ioas_id = ioas, .iova = 0, .length = UINT64_MAX };
	CHECK(ioctl(fd, IOMMU_IOAS_UNMAP, &um) == 0, "IOAS_UNMAP all");
	CHECK(um.length == RAM_SIZE, "unmapped %llu bytes", (unsigned long long)um.length);
	destroy(ioas);
	struct iommu_destroy bad = { .size = sizeof(bad), .id = ioas };
	CHECK(ioctl(fd, IOMMU_DESTROY, &bad) == -1 && errno == ENOENT, "destroying it twice -> ENOENT");
	CHECK(close(fd) == 0, "close");
	munmap(ram, RAM_SIZE);
	free(want);
	free(bitmap);
	printf("torn down: device, HWPT, mapping and IOAS destroyed, /dev/iommu closed\n");
	printf("vmm-example: OK\n");
	return 0;
}
