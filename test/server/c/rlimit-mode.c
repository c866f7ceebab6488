/*
 * IOMMU_OPTION RLIMIT_MODE SET 1 (needs CAP_SYS_RESOURCE): prints "set-ok" or "set-errno N",
 * then reads the mode back and prints "mode M".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <linux/iommufd.h>

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) {
		perror("open /dev/iommu");
		return 1;
	}
	struct iommu_option o = { .size = sizeof(o), .option_id = IOMMU_OPTION_RLIMIT_MODE, .op = IOMMU_OPTION_OP_SET, .val64 = 1 };
	if (ioctl(fd, IOMMU_OPTION, &o))
		printf("set-errno %d\n", errno);
	else
		printf("set-ok\n");
	struct iommu_option g = { .size = sizeof(g), .option_id = IOMMU_OPTION_RLIMIT_MODE, .op = IOMMU_OPTION_OP_GET };
	if (ioctl(fd, IOMMU_OPTION, &g))
		return 1;
	printf("mode %llu\n", (unsigned long long)g.val64);
	return 0;
}
