/*
 * For the doorbell tests: N (argv[1]) IOMMU_DESTROYs of a bad id, then "ready", then a second's
 * pause with the channel open (the test looks at the server meanwhile), then one more ioctl.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <linux/iommufd.h>

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100;
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) {
		perror("open /dev/iommu");
		return 1;
	}
	struct iommu_destroy d = { .size = sizeof(d), .id = 0x7ffffff0 };
	for (int i = 0; i <= n; i++) {
		if (ioctl(fd, IOMMU_DESTROY, &d) != -1 || errno != ENOENT) {
			fprintf(stderr, "DESTROY: want ENOENT, errno %d\n", errno);
			return 1;
		}
		if (i == n - 1) {
			printf("ready\n");
			fflush(stdout);
			struct timespec t = { 1, 0 };
			nanosleep(&t, NULL);
		}
	}
	return 0;
}
