/*
 * probe-profiles.c - asks the real Linux 6.12.117 kernel (the oracle) what it answers to the inputs
 * whose meaning changed after 6.12, i.e. what softiommu's "6.12" kernel profile must answer:
 *   K0x  GET_HW_INFO flags (IOMMU_HW_INFO_FLAG_INPUT_TYPE and the in_data_type union is newer)
 *   K1x  MOCK_DOMAIN_FLAGS with MOCK_FLAGS_DEVICE_PASID (newer)
 *   K2x  nested HWPT_ALLOC with struct iommu_hwpt_selftest data lengths (4 bytes in 6.12)
 *   K3x  IOMMU_TEST_CMD ops 16 and up (newer)
 *   K4x  IOMMU_IOAS_MAP_FILE (0x8f) and IOMMU_IOAS_CHANGE_PROCESS (0x92) with well-formed structs
 *   K5x  paging HWPT_ALLOC with the newer IOMMU_HWPT_ALLOC_PASID / a fault id
 * One line per question; test/conformance/profiles.test.ts replays the same calls through
 * softiommu under both profiles ("6.12" must print exactly profile-probe.out.txt; "newest" must
 * differ exactly where the newer uAPI says). INFO lines carry object IDs and are not compared.
 *
 * Built against the 6.12 headers, which lack the newer names: they are spelled out here.
 *   gcc -static -O2 -I$ORACLE/linux-source-6.12/usr/include \
 *       -I$ORACLE/linux-source-6.12/drivers/iommu/iommufd -o probe-profiles probe-profiles.c
 *   $ORACLE/run-in-vm.sh ./probe-profiles > probe-profiles.out.txt
 */
#define _GNU_SOURCE
#include "probe.h"
#include <sys/syscall.h>

#define INPUT_TYPE (1u << 0)            /* IOMMU_HW_INFO_FLAG_INPUT_TYPE [newer than 6.12] */
#define DEVICE_PASID (1u << 2)          /* MOCK_FLAGS_DEVICE_PASID [newer than 6.12] */
#define HWPT_ALLOC_PASID (1u << 3)      /* IOMMU_HWPT_ALLOC_PASID [newer than 6.12] */
#define NR_MAP_FILE 0x8f                /* IOMMU_IOAS_MAP_FILE [newer than 6.12] */
#define NR_CHANGE_PROCESS 0x92          /* IOMMU_IOAS_CHANGE_PROCESS [newer than 6.12] */
#define SELFTEST_TYPE 0xfeedbeefu       /* IOMMU_HW_INFO_TYPE_SELFTEST */

static int fd;

static int test_cmd(struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(fd, IOMMU_TEST_CMD, c);
}

/* GET_HW_INFO with data_len 16 into a 0xaa-filled buffer: on success data_len becomes 8 and
 * byte 0 (the info's flags) 0x00; a failure writes nothing back. The u32 at offset 24 is
 * out_data_type in 6.12, the in_data_type/out_data_type union in newer kernels. */
static void hw_info(const char *q, uint32_t dev, uint32_t flags, uint32_t type)
{
	uint8_t data[16];
	memset(data, 0xaa, sizeof(data));
	struct iommu_hw_info c = { .size = sizeof(c), .flags = flags, .dev_id = dev, .data_len = sizeof(data),
		.data_uptr = (uintptr_t)data, .out_data_type = type };
	int rc = ioctl(fd, IOMMU_GET_HW_INFO, &c);
	printf("%s rc=%d errno=%d data_len=%u type=0x%x max_pasid_log2=%u caps=0x%llx byte0=0x%02x byte8=0x%02x\n", q, E(rc),
	       c.data_len, c.out_data_type, c.out_max_pasid_log2, (unsigned long long)c.out_capabilities, data[0], data[8]);
}

static int mock_flags(uint32_t ioas, uint32_t flags, uint32_t *stdev, uint32_t *idev)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, .id = ioas,
		.mock_domain_flags = { .dev_flags = flags } };
	int rc = test_cmd(&c);
	*stdev = c.mock_domain_flags.out_stdev_id;
	*idev = c.mock_domain_flags.out_idev_id;
	return rc;
}

static int hwpt_alloc(uint32_t flags, uint32_t dev, uint32_t pt, uint32_t type, uint32_t len, void *data, uint32_t fault, uint32_t *out)
{
	struct iommu_hwpt_alloc c = { .size = sizeof(c), .flags = flags, .dev_id = dev, .pt_id = pt,
		.data_type = type, .data_len = len, .data_uptr = (uintptr_t)data, .fault_id = fault };
	int rc = ioctl(fd, IOMMU_HWPT_ALLOC, &c);
	*out = c.out_hwpt_id;
	return rc;
}

int main(void)
{
	fd = xopen();
	uint32_t ioas = ioas_alloc(fd), stdev, hwpt, idev;
	if (mock_domain(fd, ioas, &stdev, &hwpt, &idev)) { perror("mock_domain"); return 1; }
	printf("INFO ioas=%u stdev=%u hwpt=%u idev=%u\n", ioas, stdev, hwpt, idev);

	/* K0x: GET_HW_INFO flags */
	hw_info("K01 hw_info flags=0", idev, 0, 0);
	hw_info("K02 hw_info flags=INPUT_TYPE type=DEFAULT", idev, INPUT_TYPE, 0);
	hw_info("K03 hw_info flags=INPUT_TYPE type=SELFTEST", idev, INPUT_TYPE, SELFTEST_TYPE);
	hw_info("K04 hw_info flags=INPUT_TYPE type=SELFTEST+1", idev, INPUT_TYPE, SELFTEST_TYPE + 1);
	hw_info("K05 hw_info flags=1<<1", idev, 1u << 1, 0);
	hw_info("K06 hw_info flags=1<<31", idev, 1u << 31, 0);
	hw_info("K07 hw_info flags=INPUT_TYPE dev_id=999", 999, INPUT_TYPE, 0);
	hw_info("K08 hw_info flags=0 type=SELFTEST+1 (no INPUT_TYPE: the field is not read)", idev, 0, SELFTEST_TYPE + 1);
	hw_info("K09 hw_info flags=INPUT_TYPE type=SELFTEST dev_id=ioas", ioas, INPUT_TYPE, SELFTEST_TYPE);

	/* K1x: mock devices with newer flags; a failure leaves no ID behind */
	{
		uint32_t first_free = ioas_alloc(fd);
		destroy(fd, first_free);
		static const uint32_t flags[] = { DEVICE_PASID, DEVICE_PASID | MOCK_FLAGS_DEVICE_NO_DIRTY,
			DEVICE_PASID | MOCK_FLAGS_DEVICE_HUGE_IOVA, MOCK_FLAGS_DEVICE_NO_DIRTY, MOCK_FLAGS_DEVICE_HUGE_IOVA };
		for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
			uint32_t s = 0, d = 0;
			int rc = mock_flags(ioas, flags[i], &s, &d);
			printf("K1%u mock_domain_flags dev_flags=0x%x rc=%d errno=%d\n", i + 1, flags[i], E(rc));
			if (!rc) {
				printf("INFO stdev=%u idev=%u\n", s, d);
				char q[64];
				snprintf(q, sizeof(q), "K1%u hw_info of that device", i + 1);
				hw_info(q, d, 0, 0);
				destroy(fd, s);
			}
		}
		uint32_t probe_id = ioas_alloc(fd);
		printf("K16 no ID is used up by the calls above: %s\n", probe_id == first_free ? "yes" : "no");
		printf("INFO probe_id=%u\n", probe_id);
		destroy(fd, probe_id);
	}

	/* K2x: nested HWPT data lengths (struct iommu_hwpt_selftest) */
	{
		uint32_t parent, out;
		if (hwpt_alloc(IOMMU_HWPT_ALLOC_NEST_PARENT, idev, ioas, 0, 0, NULL, 0, &parent)) { perror("parent"); return 1; }
		printf("INFO parent=%u\n", parent);
		uint32_t data[4] = { IOMMU_TEST_IOTLB_DEFAULT, 0, 0, 0 };
		static const uint32_t lens[] = { 3, 4, 5, 8, 12, 16 };
		for (unsigned i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			int rc = hwpt_alloc(0, idev, parent, IOMMU_HWPT_DATA_SELFTEST, lens[i], data, 0, &out);
			printf("K2%u nested data_len=%u (zeros after iotlb) rc=%d errno=%d\n", i + 1, lens[i], E(rc));
			if (!rc) destroy(fd, out);
		}
		data[1] = 7; /* non-zero where the newest struct has pagetable_type */
		int rc = hwpt_alloc(0, idev, parent, IOMMU_HWPT_DATA_SELFTEST, 8, data, 0, &out);
		printf("K27 nested data_len=8 (u32 7 after iotlb) rc=%d errno=%d\n", E(rc));
		if (!rc) destroy(fd, out);
		destroy(fd, parent);
	}

	/* K3x: test ops newer than 6.12 (16 = DEV_CHECK_CACHE with the mock default 0xbaddad) */
	{
		struct iommu_test_cmd c = { .op = 16, .id = idev };
		uint32_t *u = (uint32_t *)((uint8_t *)&c + 16);
		u[0] = 0;
		u[1] = 0xbaddad;
		int rc = test_cmd(&c);
		printf("K31 test op 16 (DEV_CHECK_CACHE idev slot 0 = 0xbaddad) rc=%d errno=%d\n", E(rc));
		static const uint32_t ops[] = { 17, 18, 19, 20, 21, 22, 23, 24, 0, 100, 0xffffffffu };
		for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
			struct iommu_test_cmd z = { .op = ops[i], .id = stdev };
			rc = test_cmd(&z);
			printf("K32 test op %u rc=%d errno=%d\n", ops[i], E(rc));
		}
	}

	/* K4x: the newer IOAS ioctls with well-formed structs */
	{
		int mfd = memfd_create("probe", 0);
		if (mfd < 0 || ftruncate(mfd, 4096)) { perror("memfd"); return 1; }
		struct { uint32_t size, flags, ioas_id; int32_t fd; uint64_t start, length, iova; } mf = {
			.size = 40, .flags = IOMMU_IOAS_MAP_FIXED_IOVA | RW, .ioas_id = ioas, .fd = mfd, .start = 0,
			.length = 4096, .iova = MOCK_APERTURE_START };
		int rc = ioctl(fd, _IO(IOMMUFD_TYPE, NR_MAP_FILE), &mf);
		printf("K41 IOAS_MAP_FILE rc=%d errno=%d\n", E(rc));
		struct { uint32_t size, reserved; } cp = { .size = 8 };
		rc = ioctl(fd, _IO(IOMMUFD_TYPE, NR_CHANGE_PROCESS), &cp);
		printf("K42 IOAS_CHANGE_PROCESS rc=%d errno=%d\n", E(rc));
		close(mfd);
	}

	/* K5x: paging HWPT_ALLOC with flags a newer kernel accepts */
	{
		uint32_t out;
		struct iommu_fault_alloc fa = { .size = sizeof(fa) };
		int rc = ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa);
		printf("K51 fault_queue_alloc rc=%d errno=%d\n", E(rc));
		printf("INFO fault=%u fault_fd=%d\n", fa.out_fault_id, fa.out_fault_fd);
		rc = hwpt_alloc(HWPT_ALLOC_PASID, idev, ioas, 0, 0, NULL, 0, &out);
		printf("K52 paging hwpt_alloc flags=ALLOC_PASID rc=%d errno=%d\n", E(rc));
		rc = hwpt_alloc(IOMMU_HWPT_FAULT_ID_VALID, idev, ioas, 0, 0, NULL, fa.out_fault_id, &out);
		printf("K53 paging hwpt_alloc flags=FAULT_ID_VALID rc=%d errno=%d\n", E(rc));
	}
	close(fd);
	return 0;
}
