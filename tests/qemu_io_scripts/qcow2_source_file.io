# write -s (a pattern file: the fresh image itself, read before any write, repeated to fill), -v dumps of mixed bytes,
# injected invalid aio requests, truncate modes and their errors.
# format: qcow2
# create: 4M
write -s $IMG 64k 300k
read -v 0 128
read -v 200k 48
write -s /nonexistent/pattern 0 512
aio_read -i 0 512
aio_write -i 0 512
aio_flush
truncate -m bogus 8M
truncate -m metadata 6M
length
truncate 8M
length
map
alloc 0 8M
