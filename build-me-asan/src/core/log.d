build-me-asan/src/core/log.o: src/core/log.c src/core/banned.h \
 src/core/log.h src/core/timeutil.h
src/core/banned.h:
src/core/log.h:
src/core/timeutil.h:
