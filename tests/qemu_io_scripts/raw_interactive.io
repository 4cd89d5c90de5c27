# The same commands typed at the qemu-io> prompt (stdin), including quit.
# format: raw
# create: 1M
# stdin
write -P 0x42 0 4k
read -P 0x42 0 4k
read -P 0x43 0 4k
length

alloc 0 4k
quit
read 0 1
