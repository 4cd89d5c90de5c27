# A qcow2 over a qcow2 backing file: reads fall through, alloc and map report the top only.
# format: qcow2
# backing: 8M
# base: write -P 0xb0 0 1M
# base: write -P 0xb1 4M 64k
# base: write -z 6M 64k
read -P 0xb0 0 1M
read -P 0xb1 4M 64k
map
alloc 0 8M
write -P 0x70 512k 4k
read -P 0xb0 448k 64k
read -P 0x70 512k 4k
read -P 0xb0 516k 60k
write -z 4M 64k
read -P 0 4M 64k
discard 0 64k
read -P 0xb0 0 64k
map
alloc 0 1M
alloc 4M 64k
info
