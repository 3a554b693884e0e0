# Guest kernel: tinyconfig + kernel-config/padcell.config from Debian's linux-source-6.1.
# The build is cached in $(PADCELL_CACHE) (default /var/cache/padcell); a warm cache only copies.
.PHONY: kernel
kernel:
	@scripts/deps.sh kernel
	@kernel-config/build.sh
