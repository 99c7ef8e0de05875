/*
 * esp_err.h — the subset of ESP-IDF's error codes that the heap API returns, with ESP-IDF's values,
 * for builds outside ESP-IDF. Inside an ESP-IDF build, ESP-IDF's own esp_err.h takes precedence
 * (same include name, same values).
 */
#ifndef CAPHEAP_ESP_ERR_H
#define CAPHEAP_ESP_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef int esp_err_t;

#ifndef ESP_OK
#define ESP_OK 0                    /* success */
#define ESP_FAIL -1                 /* generic failure */
#define ESP_ERR_NO_MEM 0x101        /* out of memory */
#define ESP_ERR_INVALID_ARG 0x102   /* invalid argument */
#define ESP_ERR_INVALID_STATE 0x103 /* invalid state */
#define ESP_ERR_INVALID_SIZE 0x104  /* invalid size */
#define ESP_ERR_NOT_FOUND 0x105     /* requested resource not found */
#define ESP_ERR_NOT_SUPPORTED 0x106 /* operation or feature not supported */
#define ESP_ERR_TIMEOUT 0x107       /* operation timed out */
#endif

#ifdef __cplusplus
}
#endif

#endif /* CAPHEAP_ESP_ERR_H */
