# readv/writev with several buffers, asynchronous requests and their completion reports.
# format: raw
# create: 2M
writev -P 0x11 0 512 1k 2k
readv -P 0x11 0 512 1k 2k
readv -P 0x11 0 4k
readv -v 3000 16 16
writev -q -P 0x22 8k 4k 4k
readv -P 0x22 8k 8k
aio_write -P 0x33 64k 4k
aio_flush
aio_read -P 0x33 64k 4k
aio_flush
aio_read -P 0x34 64k 4k
aio_flush
aio_write -q -P 0x35 128k 512
aio_flush
aio_read -q -P 0x35 128k 512
aio_flush
aio_read 2M 1
aio_flush
aio_write -z 256k 64k
aio_flush
read -P 0 256k 64k
aio_flush
