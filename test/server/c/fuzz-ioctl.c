/*
 * Random ioctls through the shim: requests from the iommufd table (and some that are not), struct
 * buffers of random bytes with a plausible size field, some pointer fields aimed at a scratch
 * buffer, occasional dup/close/reopen/fork. Usage: fuzz-ioctl SEED COUNT. It must simply finish:
 * every call returns (an errno is fine); the server must survive and clean up after us.
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

static uint64_t s;
static uint64_t rnd(void)
{
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return s;
}

int main(int argc, char **argv)
{
	s = argc > 1 ? strtoull(argv[1], NULL, 0) * 2654435761u + 1 : 1;
	int count = argc > 2 ? atoi(argv[2]) : 300;
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) {
		perror("open");
		return 2;
	}
	unsigned char *scratch = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char buf[512] __attribute__((aligned(8)));
	int errs = 0, oks = 0;
	/* a device and a domain first, so that maps pin */
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &alloc);
	struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = alloc.out_ioas_id };
	ioctl(fd, IOMMU_TEST_CMD, &md);
	for (int i = 0; i < count; i++) {
		uint64_t r = rnd();
		switch (r % 40) {
		case 0: {
			int d = dup(fd);
			close(fd);
			fd = d;
			continue;
		}
		case 1:
			if (r % 3 == 0) {
				close(fd);
				fd = open("/dev/iommu", O_RDWR);
			}
			continue;
		case 2: {
			pid_t p = fork();
			if (p == 0) {
				struct iommu_ioas_alloc a = { .size = sizeof(a) };
				ioctl(fd, IOMMU_IOAS_ALLOC, &a);
				_exit(0);
			}
			if (p > 0)
				waitpid(p, NULL, 0);
			continue;
		}
		}
		for (size_t k = 0; k < sizeof(buf); k++)
			buf[k] = (unsigned char)rnd();
		unsigned nr = 0x80 + (unsigned)(rnd() % 0x22);
		if (rnd() % 16 == 0)
			nr = (unsigned)(rnd() & 0xff);
		unsigned long req = (unsigned long)(0x3b00 | nr);
		if (rnd() % 32 == 0)
			req |= (unsigned long)(rnd() & 0xffff0000u);
		uint32_t size = (uint32_t)(rnd() % 8 == 0 ? rnd() % 600 : 8 + rnd() % 120);
		memcpy(buf, &size, 4);
		/* small ids, and pointers into scratch, make some calls get further */
		for (size_t k = 8; k + 8 <= 128; k += 8) {
			uint64_t v = rnd();
			switch (v % 6) {
			case 0: { uint64_t p = (uintptr_t)scratch + (rnd() % (1 << 20)) / 64 * 64; memcpy(buf + k, &p, 8); break; }
			case 1: { uint64_t p = rnd() % 8; memcpy(buf + k, &p, 8); break; }
			case 2: { uint32_t p = (uint32_t)(rnd() % 6); memcpy(buf + k, &p, 4); break; }
			case 3: { uint64_t p = (1u << 24) + (rnd() % 256) * 4096; memcpy(buf + k, &p, 8); break; }
			default: break;
			}
		}
		if (nr == 0xa0) {
			uint32_t op = (uint32_t)(1 + rnd() % 22);
			memcpy(buf + 4, &op, 4);
		}
		void *arg = rnd() % 50 == 0 ? NULL : buf;
		if (rnd() % 50 == 0)
			arg = (void *)(uintptr_t)(rnd() | 1);
		if (ioctl(fd, req, arg) < 0)
			errs++;
		else
			oks++;
	}
	printf("fuzz-ioctl %d calls: %d ok, %d errors\n", count, oks, errs);
	return 0;
}
