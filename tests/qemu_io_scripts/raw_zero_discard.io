# Zero writes, unmapping, discards, allocation queries on a raw image.
# format: raw
# create: 4M
write -P 0x5a 0 4M
write -z 0 64k
read -P 0 0 64k
write -z -u 64k 64k
read -P 0 64k 64k
write -z -n 128k 64k
discard 1M 64k
read -P 0x5a 2M 1k
alloc 0
alloc 0 1M
alloc 4M
alloc 1M 4M
map
discard -q 2M 1M
discard -C 3M 4k
