/* banned.h: unsafe string functions do not build. Force-included into every
 * translation unit of paasops by the Makefile. */
#ifndef PAASOPS_BANNED_H
#define PAASOPS_BANNED_H
#include <string.h>
#include <stdio.h>
#define BANNED(f) sorry_##f##_is_banned
#undef strcpy
#define strcpy(a, b) BANNED(strcpy)
#undef strcat
#define strcat(a, b) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef strtok
#define strtok(a, b) BANNED(strtok)
#undef gets
#define gets(a) BANNED(gets)
#endif
