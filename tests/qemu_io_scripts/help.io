# Every command's help, long and short, word for word.
# format: raw
# create: 1M
help
help aio_read
help aio_write
help aio_flush
help open
help reopen
help close
help sigraise
help writev
help truncate
help sleep
help abort
help quit
help help
help flush
help info
help length
help break
help wait_break
help resume
help remove_break
? read
