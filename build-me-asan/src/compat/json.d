build-me-asan/src/compat/json.o: src/compat/json.c src/core/banned.h \
 src/compat/json.h src/core/util.h
src/core/banned.h:
src/compat/json.h:
src/core/util.h:
