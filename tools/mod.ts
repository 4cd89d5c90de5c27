/** The tools (qemu-img, qemu-io, qemu-nbd, ivshmem-server, ivshmem-client, qemu-ga-client) as libraries. */
