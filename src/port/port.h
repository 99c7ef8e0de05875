/* port/port.h — the port contract is public (include/capheap_port.h): ports implement it. */
#ifndef CAPHEAP_PORT_PORT_H
#define CAPHEAP_PORT_PORT_H
#include "capheap_port.h"
#endif
