/*
 * Leaks on purpose. ffi/tests/c_programs.rs runs it under AddressSanitizer
 * first: only if LeakSanitizer reports this leak does a clean ASAN run of
 * the real tests mean "no leaks".
 */
#include <stdio.h>
#include <stdlib.h>

static void leak(void) {
  char *p = malloc(4096);
  if (p != NULL) {
    p[0] = 'x';
    printf("leaked %p\n", (void *)p);
  }
}

int main(void) {
  leak();
  return 0;
}
