# Patterned writes and reads, verification failures, dumps, machine-readable statistics.
# format: raw
# create: 4M
write -P 0xaa 0 64k
read -P 0xaa 0 64k
write 64k 512
read -P 0xcd 64k 512
read -P 0xcc 64k 512
read -v 65530 40
write -P 1 3 5
read -v 0 16
read -P 0xaa -s 16 -l 16 0 64
read -P 0xab -s 16 -l 16 0 64
read -q -P 0xaa 4k 4k
write -q -P 7 1M 3
read -C 0 512
write -C -P 9 2M 4k
write -f -P 0x10 3M 512
read -P 0x10 3M 512
write -P 255 4194303 1
read -P 0xff 4194303 1
read 1.5k 1k
w -P 3 0 1
r -P 3 0 1
length
l
info
flush
