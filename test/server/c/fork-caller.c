/*
 * A forked child using the inherited /dev/iommu fd is its own caller: it maps ITS private pages
 * (written after the fork, so they differ from the parent's), and the device then reads the
 * child's data, not the parent's. Prints "child-pid N", then "device-read B parent-has A".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/iommufd.h>

#define DIE(...) do { fprintf(stderr, __VA_ARGS__); fprintf(stderr, " errno %d\n", errno); exit(1); } while (0)

int main(int argc, char **argv)
{
	int child_exits_first = argc > 1 && strcmp(argv[1], "exit-first") == 0;
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) DIE("open");
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) DIE("ioas");
	struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = alloc.out_ioas_id };
	if (ioctl(fd, IOMMU_TEST_CMD, &md)) DIE("mock domain");
	struct iommu_test_cmd ca = { .size = sizeof(ca), .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = alloc.out_ioas_id };
	if (ioctl(fd, IOMMU_TEST_CMD, &ca)) DIE("create access");
	char *buf = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(buf, 'A', 65536);
	int go[2], done[2];
	if (pipe(go) || pipe(done)) DIE("pipe");
	pid_t pid = fork();
	if (pid == 0) {
		memset(buf, 'B', 65536);
		struct iommu_ioas_map map = {
			.size = sizeof(map),
			.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
			.ioas_id = alloc.out_ioas_id, .user_va = (uintptr_t)buf, .length = 65536, .iova = MOCK_APERTURE_START,
		};
		if (ioctl(fd, IOMMU_IOAS_MAP, &map)) DIE("child map");
		char c = 1;
		if (write(done[1], &c, 1) != 1) DIE("write");
		if (!child_exits_first && read(go[0], &c, 1) != 1) DIE("read");
		exit(0);
	}
	char c;
	if (read(done[0], &c, 1) != 1) DIE("read");
	if (child_exits_first && waitpid(pid, NULL, 0) != pid) DIE("wait");
	char got[16];
	struct iommu_test_cmd rw = {
		.size = sizeof(rw), .op = IOMMU_TEST_OP_ACCESS_RW, .id = ca.create_access.out_access_fd,
		.access_rw = { .iova = MOCK_APERTURE_START + 4096, .length = sizeof(got), .uptr = (uintptr_t)got },
	};
	if (ioctl(fd, IOMMU_TEST_CMD, &rw)) DIE("access rw");
	printf("child-pid %d\ndevice-read %c parent-has %c\n", pid, got[0], buf[4096]);
	if (!child_exits_first) {
		if (write(go[1], &c, 1) != 1) DIE("write");
		waitpid(pid, NULL, 0);
	}
	return 0;
}
