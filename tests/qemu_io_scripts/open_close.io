# No image on the command line: open, close, reopen and the errors around them.
# format: raw
# create: 1M
# noimage
read 0 512
open -o driver=raw $IMG
open -o driver=raw $IMG
write -P 0x21 0 512
reopen -r
write -P 0x22 0 512
reopen -w
write -P 0x23 512 512
read -P 0x21 0 512
read -P 0x23 512 512
close
length
open -r -o driver=raw $IMG
read -P 0x21 0 512
write 0 512
close
open -o driver=raw /nonexistent/x.img
