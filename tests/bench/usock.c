/*
 * usock PATH LINE: sends LINE and a newline to the Unix stream socket PATH (QEMU's human monitor
 * in the nested restore benchmark) and prints what comes back within half a second.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: usock PATH LINE\n");
		return 2;
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("usock: connect");
		return 1;
	}
	char buf[4096];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	/* the monitor's greeting first, then the command */
	while (poll(&p, 1, 300) > 0 && read(fd, buf, sizeof(buf)) > 0)
		;
	if (write(fd, argv[2], strlen(argv[2])) < 0 || write(fd, "\n", 1) < 0) {
		perror("usock: write");
		return 1;
	}
	ssize_t n;
	while (poll(&p, 1, 500) > 0 && (n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	close(fd);
	return 0;
}
