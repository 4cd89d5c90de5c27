# qcow2: allocation by writes, zero clusters, discards, partial clusters; alloc/map/info.
# format: qcow2
# create: 8M
map
alloc 0 8M
write -P 0x61 0 64k
write -P 0x62 100k 10k
write -z 1M 128k
write -z -u 2M 64k
write -P 0x63 3M 1M
discard 3M 64k
discard 3200k 4k
read -P 0x61 0 64k
read -P 0 64k 36k
read -P 0x62 100k 10k
read -P 0 1M 128k
read -P 0 3M 64k
read -P 0x63 3136k 64k
alloc 0 64k
alloc 64k 64k
alloc 0 8M
alloc 3M 1M
map
info
length
truncate 16M
length
map
read -P 0 8M 8M
