/* Start-up code of the edgec example firmware (Cortex-M, bare metal, newlib + semihosting).
 *
 * A two-entry vector table (initial stack pointer, reset handler) in section .vectors, which
 * mps2.ld places at address 0. The reset handler enables the FPU (the kernels and the
 * hard-float ABI use it), copies .data from flash, zeroes .bss, opens the semihosting
 * console (initialise_monitor_handles, from newlib's librdimon), calls main and exits with
 * its status through semihosting. We do not use rdimon's own crt0: its stack set-up from the
 * semihosting heap query points outside RAM on the MPS2 boards (see examples/cortex_m/README.md). */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __data_load__[], __data_start__[], __data_end__[], __bss_start__[], __bss_end__[];
extern uint32_t __stack_top__[];

int main(void);
void initialise_monitor_handles(void);
void edgec_fw_reset(void);
void _init(void);
void _fini(void);

/* -nostartfiles: newlib's exit() still calls these. */
void _init(void) {}
void _fini(void) {}

__attribute__((section(".vectors"), used)) void (*const edgec_fw_vectors[2])(void) = {
    (void (*)(void))(uintptr_t)__stack_top__,
    edgec_fw_reset,
};

void edgec_fw_reset(void) {
#if defined(__ARM_FP)
  /* CPACR: full access to coprocessors 10 and 11 (the FPU) before any float instruction. */
  volatile uint32_t* cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= 0xFu << 20;
  __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
  {
    const uint32_t* src = __data_load__;
    uint32_t* dst = __data_start__;
    while (dst < __data_end__) *dst++ = *src++;
    for (dst = __bss_start__; dst < __bss_end__;) *dst++ = 0u;
  }
  initialise_monitor_handles();
  exit(main());
}
