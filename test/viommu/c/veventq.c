/*
 * A vEVENTQ fd through the shim: selftest vIOMMU, vDEVICE 0x99, the device on a nested HWPT of the
 * vIOMMU, a vEVENTQ of depth 2. Prints one line per step (errno numbers, poll masks, records).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/iommufd.h>

static int fd;

static int test_cmd(struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(fd, IOMMU_TEST_CMD, c);
}

static void trigger(__u32 dev)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_TRIGGER_VEVENT, .trigger_vevent = { .dev_id = dev } };
	if (test_cmd(&c))
		printf("trigger errno %d\n", errno);
}

static void show(int qfd, size_t count)
{
	unsigned char buf[128];
	ssize_t n = read(qfd, buf, count);
	if (n < 0) {
		printf("read %zu errno %d\n", count, errno);
		return;
	}
	printf("read %zu ->", count);
	for (ssize_t o = 0; o < n;) {
		struct iommufd_vevent_header h;
		memcpy(&h, buf + o, sizeof(h));
		o += sizeof(h);
		if (h.flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS) {
			printf(" lost:%u", h.sequence);
			continue;
		}
		struct iommu_viommu_event_selftest ev;
		memcpy(&ev, buf + o, sizeof(ev));
		o += sizeof(ev);
		printf(" %u:0x%x", h.sequence, ev.virt_id);
	}
	printf("\n");
}

/* The fd's socket is connected asynchronously: wait for readiness as the selftest does (1 s). */
static int pollmask(int qfd, int timeout_ms)
{
	struct pollfd p = { .fd = qfd, .events = POLLIN };
	int r = poll(&p, 1, timeout_ms);
	return r < 0 ? -errno : (p.revents & POLLIN);
}

int main(void)
{
	fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) {
		perror("open /dev/iommu");
		return 1;
	}
	struct iommu_ioas_alloc ia = { .size = sizeof(ia) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &ia))
		return 2;
	struct iommu_test_cmd md = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ia.out_ioas_id };
	if (test_cmd(&md))
		return 3;
	__u32 dev = md.mock_domain.out_idev_id;
	struct iommu_hwpt_alloc parent = { .size = sizeof(parent), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT, .dev_id = dev, .pt_id = ia.out_ioas_id };
	if (ioctl(fd, IOMMU_HWPT_ALLOC, &parent))
		return 4;
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_SELFTEST, .dev_id = dev, .hwpt_id = parent.out_hwpt_id };
	if (ioctl(fd, IOMMU_VIOMMU_ALLOC, &va))
		return 5;
	struct iommu_hwpt_selftest data = { .iotlb = 0xbadbeef };
	struct iommu_hwpt_alloc nested = { .size = sizeof(nested), .dev_id = dev, .pt_id = va.out_viommu_id,
					   .data_type = IOMMU_HWPT_DATA_SELFTEST, .data_len = sizeof(data), .data_uptr = (unsigned long)&data };
	if (ioctl(fd, IOMMU_HWPT_ALLOC, &nested))
		return 6;
	struct iommu_vdevice_alloc vd = { .size = sizeof(vd), .viommu_id = va.out_viommu_id, .dev_id = dev, .virt_id = 0x99 };
	if (ioctl(fd, IOMMU_VDEVICE_ALLOC, &vd))
		return 7;
	struct iommu_test_cmd rep = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = md.mock_domain.out_stdev_id, .mock_domain_replace = { .pt_id = nested.out_hwpt_id } };
	if (test_cmd(&rep))
		return 8;
	struct iommu_veventq_alloc qa = { .size = sizeof(qa), .viommu_id = va.out_viommu_id, .type = IOMMU_VEVENTQ_TYPE_SELFTEST, .veventq_depth = 2 };
	if (ioctl(fd, IOMMU_VEVENTQ_ALLOC, &qa))
		return 9;
	int q = qa.out_veventq_fd;
	printf("poll empty %d\n", pollmask(q, 0));
	show(q, 64);
	trigger(dev);
	printf("poll one %d\n", pollmask(q, 1000));
	show(q, 0);
	show(q, 8);
	show(q, 12);
	printf("poll drained %d\n", pollmask(q, 0));
	for (int i = 0; i < 3; i++)
		trigger(dev);
	show(q, 64);
	trigger(dev);
	show(q, 64);
	if (write(q, "x", 1) < 0)
		printf("write errno %d\n", errno);
	struct iommu_destroy d = { .size = sizeof(d), .id = qa.out_veventq_id };
	if (ioctl(fd, IOMMU_DESTROY, &d))
		printf("destroy while open errno %d\n", errno);
	close(q);
	if (ioctl(fd, IOMMU_DESTROY, &d) == 0)
		printf("destroyed\n");
	return 0;
}
