/** Thin libc bindings through Deno FFI (file I/O now; ioctl, mmap, eventfd, sendmsg later). */
export * from "./libc.ts";
export * from "./mman.ts";
export * from "./eventfd.ts";
export * from "./kvm.ts";
export * from "./fs_ioctl.ts";
