/*
 * finit FILE [compressed]: load a kernel module with finit_module(2), as
 * kmod does, and print the kernel's answer on one line:
 *   "accepted 0" or "rejected ERRNO MESSAGE".
 * With "compressed", MODULE_INIT_COMPRESSED_FILE asks the kernel to
 * decompress the file itself (CONFIG_MODULE_DECOMPRESS). busybox's insmod
 * neither says why the kernel refused nor passes that flag.
 * Built static by internal/testvm for the guest's initramfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

int main(int argc, char **argv)
{
	int flags = 0, fd, e;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: finit FILE [compressed]\n");
		return 2;
	}
	if (argc == 3 && strcmp(argv[2], "compressed") == 0)
		flags = MODULE_INIT_COMPRESSED_FILE;
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		printf("open %d %s\n", errno, strerror(errno));
		return 2;
	}
	if (syscall(SYS_finit_module, fd, "", flags) != 0) {
		e = errno;
		printf("rejected %d %s\n", e, strerror(e));
		return 1;
	}
	printf("accepted 0\n");
	return 0;
}
