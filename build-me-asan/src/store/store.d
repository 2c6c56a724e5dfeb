build-me-asan/src/store/store.o: src/store/store.c src/core/banned.h \
 src/store/store.h src/core/log.h src/core/util.h
src/core/banned.h:
src/store/store.h:
src/core/log.h:
src/core/util.h:
