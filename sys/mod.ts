/** Thin libc bindings through Deno FFI (file I/O now; ioctl, mmap, eventfd, sendmsg later). */
export * from "./libc.ts";
