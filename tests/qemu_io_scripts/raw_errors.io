# Argument checking, parse errors, ranges, unknown commands: message and exit status as QEMU's.
# format: raw
# create: 1M
read
read 0
read 0 xx
read -1 512
read 0 1P
read 1M 1
read 1048575 2
write 1M 1
write 1048576 0
read 1048576 0
write -z -P 1 0 512
write -u 0 512
write -n 0 512
write -P 300 0 512
write -P zz 0 512
read -l 16 0 512
read -P 1 -s 600 0 512
write 0 512 1
bogus
alloc
map 0
length 1
sleep
sleep x
truncate
help bogus
help read
help write
help readv
help discard
help alloc
help map
help
discard 0 xx
readv 0
readv 0 1M 1
aio_read 0
