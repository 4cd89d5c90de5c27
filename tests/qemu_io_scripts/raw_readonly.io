# A read-only image: reads work, every writing command is refused as QEMU refuses it.
# format: raw
# create: 1M
# options: -r
read 0 512
write 0 512
writev 0 512
aio_write 0 512
discard 0 512
truncate 2M
write -z 0 512
read -P 0 0 1M
length
