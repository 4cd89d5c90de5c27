/* The C baseline for demu's KVM IO-exit round trip: a real-mode guest loops on OUT 0x80; the
 * host counts N exits. Prints exits per second. Build: cc -O2 -o kvm_io_baseline kvm_io_baseline.c */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000;
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) { perror("/dev/kvm"); return 1; }
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  ioctl(vm, KVM_SET_TSS_ADDR, 0xfeffd000);
  size_t size = 1 << 20;
  unsigned char *mem = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const unsigned char code[] = {0xe6, 0x80, 0xeb, 0xfc}; /* out 0x80, al; jmp $-2 */
  memcpy(mem + 0x1000, code, sizeof code);
  struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = size,
                                          .userspace_addr = (unsigned long)mem};
  ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  int runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(0, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  struct kvm_sregs s;
  ioctl(vcpu, KVM_GET_SREGS, &s);
  s.cs.base = 0; s.cs.selector = 0;
  ioctl(vcpu, KVM_SET_SREGS, &s);
  struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
  ioctl(vcpu, KVM_SET_REGS, &regs);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  volatile unsigned sink = 0;
  for (long i = 0; i < n;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) { perror("KVM_RUN"); return 1; }
    if (run->exit_reason == KVM_EXIT_IO) {
      sink += ((unsigned char *)run)[run->io.data_offset];
      i++;
    } else { fprintf(stderr, "exit %u\n", run->exit_reason); return 1; }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s_ = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("%.0f\n", n / s_);
  return 0;
}
