build-me-asan/src/auth/auth.o: src/auth/auth.c src/core/banned.h \
 src/auth/auth.h src/compat/crypto.h src/compat/json.h \
 src/core/timeutil.h src/core/util.h src/spec/spec.h src/store/store.h
src/core/banned.h:
src/auth/auth.h:
src/compat/crypto.h:
src/compat/json.h:
src/core/timeutil.h:
src/core/util.h:
src/spec/spec.h:
src/store/store.h:
