/* size_baseline.c — an empty firmware image: the startup code and C library without capheap. */
int main(void) {
  return 0;
}
