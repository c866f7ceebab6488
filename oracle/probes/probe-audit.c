// Probe the rules the rule-coverage audit (docs/rules-coverage.md) added tests for: A1..A9 (no A8).
#include "probe.h"
#include <poll.h>
#include <linux/vfio.h>

static int test_cmd(int fd, struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(fd, IOMMU_TEST_CMD, c);
}

static int hwpt_alloc(int fd, uint32_t flags, uint32_t dev, uint32_t pt, uint32_t *out)
{
	struct iommu_hwpt_alloc c = { .size = sizeof(c), .flags = flags, .dev_id = dev, .pt_id = pt };
	int rc = ioctl(fd, IOMMU_HWPT_ALLOC, &c);
	*out = c.out_hwpt_id;
	return rc;
}

static int set_dirty(int fd, uint32_t hwpt, uint32_t flags, uint32_t reserved)
{
	struct iommu_hwpt_set_dirty_tracking c = { .size = sizeof(c), .flags = flags, .hwpt_id = hwpt, .__reserved = reserved };
	return ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &c);
}

static int mark_dirty(int fd, uint32_t hwpt, uint64_t iova, uint64_t len, uint64_t *bitmap, uint64_t *nr)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_DIRTY, .id = hwpt,
		.dirty = { .iova = iova, .length = len, .page_size = 2048, .uptr = (uintptr_t)bitmap } };
	int rc = test_cmd(fd, &c);
	*nr = c.dirty.out_nr_dirty;
	return rc;
}

static int get_dirty(int fd, uint32_t hwpt, uint64_t iova, uint64_t len, uint64_t *bitmap)
{
	struct iommu_hwpt_get_dirty_bitmap c = { .size = sizeof(c), .hwpt_id = hwpt, .iova = iova, .length = len,
		.page_size = 2048, .data = (uintptr_t)bitmap };
	return ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &c);
}

int main(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *buf = mmap(NULL, 16 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memset(buf, 1, 16 * pg);

	/* A1: MOCK_DOMAIN_FLAGS with a flag 6.12 does not know (PASID 1<<2, 1<<3) */
	{
		int fd = xopen();
		uint32_t ioas = ioas_alloc(fd);
		for (uint32_t f = 1u << 2; f <= 1u << 3; f <<= 1) {
			struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, .id = ioas,
				.mock_domain_flags = { .dev_flags = f } };
			int rc = test_cmd(fd, &c);
			printf("A1 mock_domain_flags dev_flags=0x%x rc=%d errno=%d\n", f, E(rc));
		}
		printf("A1 next_id_after_failures=%u\n", ioas_alloc(fd));
		close(fd);
	}

	/* A2: GET_HW_INFO of a mock device: out_max_pasid_log2 and capabilities */
	{
		int fd = xopen();
		uint32_t ioas = ioas_alloc(fd), idev;
		mock_domain(fd, ioas, NULL, NULL, &idev);
		struct iommu_hw_info c = { .size = sizeof(c), .dev_id = idev };
		int rc = ioctl(fd, IOMMU_GET_HW_INFO, &c);
		printf("A2 get_hw_info rc=%d errno=%d data_len=%u type=0x%x max_pasid_log2=%u caps=0x%llx\n", E(rc),
		       c.data_len, c.out_data_type, c.out_max_pasid_log2, (unsigned long long)c.out_capabilities);
		close(fd);
	}

	/* A3: MAP with a domain when the first page of the range is unmapped */
	{
		int fd = xopen();
		uint32_t ioas = ioas_alloc(fd);
		mock_domain(fd, ioas, NULL, NULL, NULL);
		char *b = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		memset(b, 2, 4 * pg);
		munmap(b, pg);
		uint64_t iova = 0;
		int rc = map(fd, ioas, (uintptr_t)b, 4 * pg, &iova, 0);
		printf("A3 map_first_page_unmapped rc=%d errno=%d\n", E(rc));
		rc = check_refs(fd, b + pg, 3 * pg, 0);
		printf("A3 refs_after rc=%d errno=%d\n", E(rc));
		close(fd);
	}

	/* A4: compat UNMAP_DMA reads exactly 24 bytes of its argument */
	{
		int fd = xopen();
		uint32_t ioas = ioas_alloc(fd);
		mock_domain(fd, ioas, NULL, NULL, NULL);
		struct iommu_vfio_ioas v = { .size = sizeof(v), .ioas_id = ioas, .op = IOMMU_VFIO_IOAS_SET };
		ioctl(fd, IOMMU_VFIO_IOAS, &v);
		int rc = ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
		printf("A4 set_iommu rc=%d errno=%d\n", E(rc));
		char *two = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		munmap(two + pg, pg);
		struct vfio_iommu_type1_dma_unmap u = { .argsz = 24, .iova = MOCK_APERTURE_START, .size = pg };
		memcpy(two + pg - 24, &u, 24);
		rc = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, two + pg - 24);
		printf("A4 unmap_arg_24_readable rc=%d errno=%d\n", E(rc));
		memcpy(two + pg - 23, &u, 23);
		rc = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, two + pg - 23);
		printf("A4 unmap_arg_23_readable rc=%d errno=%d\n", E(rc));
		rc = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, NULL);
		printf("A4 unmap_arg_NULL rc=%d errno=%d\n", E(rc));
		close(fd);
	}

	/* A5: compat type1 (v1) cannot split an area an access has pinned */
	{
		int fd = xopen();
		uint32_t ioas = ioas_alloc(fd);
		mock_domain(fd, ioas, NULL, NULL, NULL);
		struct iommu_vfio_ioas v = { .size = sizeof(v), .ioas_id = ioas, .op = IOMMU_VFIO_IOAS_SET };
		ioctl(fd, IOMMU_VFIO_IOAS, &v);
		int rc = ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU);
		printf("A5 set_iommu_v1 rc=%d errno=%d\n", E(rc));
		struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uintptr_t)buf, .iova = MOCK_APERTURE_START, .size = 4 * pg };
		rc = ioctl(fd, VFIO_IOMMU_MAP_DMA, &m);
		printf("A5 map_dma rc=%d errno=%d\n", E(rc));
		struct iommu_test_cmd ca = { .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas,
			.create_access = { .flags = MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES } };
		rc = test_cmd(fd, &ca);
		int afd = ca.create_access.out_access_fd;
		printf("A5 create_access rc=%d errno=%d\n", E(rc));
		struct iommu_test_cmd ap = { .op = IOMMU_TEST_OP_ACCESS_PAGES, .id = afd,
			.access_pages = { .iova = MOCK_APERTURE_START, .length = pg, .uptr = (uintptr_t)buf } };
		rc = test_cmd(fd, &ap);
		printf("A5 access_pages rc=%d errno=%d\n", E(rc));
		struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = MOCK_APERTURE_START + 2 * pg, .size = pg };
		rc = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u);
		printf("A5 unmap_dma_cut_pinned_area rc=%d errno=%d size=0x%llx\n", E(rc), (unsigned long long)u.size);
		struct iommu_test_cmd dp = { .op = IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, .id = afd,
			.destroy_access_pages = { .access_pages_id = ap.access_pages.out_access_pages_id } };
		rc = test_cmd(fd, &dp);
		printf("A5 destroy_access_pages rc=%d errno=%d\n", E(rc));
		u.size = pg;
		rc = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u);
		printf("A5 unmap_dma_cut_after_unpin rc=%d errno=%d size=0x%llx\n", E(rc), (unsigned long long)u.size);
		close(afd);
		close(fd);
	}

	/* A6: SET_DIRTY_TRACKING: enabling clears the dirty bits; __reserved is not checked */
	{
		int fd = xopen();
		uint32_t ioas = ioas_alloc(fd), idev, hwpt;
		mock_domain(fd, ioas, NULL, NULL, &idev);
		int rc = hwpt_alloc(fd, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, idev, ioas, &hwpt);
		printf("A6 hwpt_alloc_dirty rc=%d errno=%d\n", E(rc));
		uint32_t stdev2;
		mock_domain(fd, hwpt, &stdev2, NULL, NULL);
		uint64_t iova = MOCK_APERTURE_START;
		map(fd, ioas, (uintptr_t)buf, 4 * pg, &iova, 1);
		rc = set_dirty(fd, hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 5);
		printf("A6 enable_with_reserved_5 rc=%d errno=%d\n", E(rc));
		uint64_t bm[1] = { 0xff }, nr = 0, out[1];
		rc = mark_dirty(fd, hwpt, MOCK_APERTURE_START, 8 * 2048, bm, &nr);
		printf("A6 mark rc=%d errno=%d nr=%llu\n", E(rc), (unsigned long long)nr);
		struct iommu_hwpt_get_dirty_bitmap g = { .size = sizeof(g), .hwpt_id = hwpt, .flags = IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
			.iova = MOCK_APERTURE_START, .length = 8 * 2048, .page_size = 2048, .data = (uintptr_t)out };
		out[0] = 0;
		rc = ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g);
		printf("A6 get_no_clear rc=%d errno=%d bits=0x%llx\n", E(rc), (unsigned long long)out[0]);
		rc = set_dirty(fd, hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 0);
		out[0] = 0;
		rc = ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g);
		printf("A6 enable_again_then_get_no_clear rc=%d errno=%d bits=0x%llx\n", E(rc), (unsigned long long)out[0]);
		rc = mark_dirty(fd, hwpt, MOCK_APERTURE_START, 8 * 2048, bm, &nr);
		rc = set_dirty(fd, hwpt, 0, 0);
		printf("A6 disable rc=%d errno=%d\n", E(rc));
		out[0] = 0;
		rc = get_dirty(fd, hwpt, MOCK_APERTURE_START, 8 * 2048, out);
		printf("A6 get_while_disabled rc=%d errno=%d bits=0x%llx\n", E(rc), (unsigned long long)out[0]);
		rc = set_dirty(fd, hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 0);
		out[0] = 0;
		rc = get_dirty(fd, hwpt, MOCK_APERTURE_START, 8 * 2048, out);
		printf("A6 get_after_reenable rc=%d errno=%d bits=0x%llx\n", E(rc), (unsigned long long)out[0]);
		close(fd);
	}

	/* A7: fault fd poll: POLLOUT always, POLLIN only with a queued fault */
	{
		int fd = xopen();
		struct iommu_fault_alloc f = { .size = sizeof(f) };
		int rc = ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &f);
		struct pollfd p = { .fd = f.out_fault_fd, .events = POLLIN | POLLOUT | POLLRDNORM };
		int n = poll(&p, 1, 0);
		printf("A7 fault_alloc rc=%d errno=%d poll=%d revents=0x%x\n", E(rc), n, p.revents);
		close(f.out_fault_fd);
		close(fd);
	}

	/* A9: DESTROY of an access object id (the access holds itself) */
	{
		int fd = xopen();
		uint32_t ioas = ioas_alloc(fd);
		struct iommu_test_cmd ca = { .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas };
		int rc = test_cmd(fd, &ca);
		printf("A9 create_access rc=%d errno=%d (access object id 2)\n", E(rc));
		rc = destroy(fd, 2);
		printf("A9 destroy_access_object rc=%d errno=%d\n", E(rc));
		close(ca.create_access.out_access_fd);
		rc = destroy(fd, 2);
		printf("A9 destroy_after_close rc=%d errno=%d\n", E(rc));
		close(fd);
	}
	return 0;
}
