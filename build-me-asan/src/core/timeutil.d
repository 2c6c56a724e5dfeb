build-me-asan/src/core/timeutil.o: src/core/timeutil.c src/core/banned.h \
 src/core/timeutil.h src/core/util.h
src/core/banned.h:
src/core/timeutil.h:
src/core/util.h:
