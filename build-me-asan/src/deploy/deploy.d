build-me-asan/src/deploy/deploy.o: src/deploy/deploy.c src/core/banned.h \
 src/deploy/deploy.h src/compat/archive.h src/compat/crypto.h \
 src/compat/json.h src/core/log.h src/core/paths.h src/core/strbuf.h \
 src/core/timeutil.h src/core/util.h src/router/router.h src/spec/spec.h \
 src/store/store.h src/supervisor/supervisor.h
src/core/banned.h:
src/deploy/deploy.h:
src/compat/archive.h:
src/compat/crypto.h:
src/compat/json.h:
src/core/log.h:
src/core/paths.h:
src/core/strbuf.h:
src/core/timeutil.h:
src/core/util.h:
src/router/router.h:
src/spec/spec.h:
src/store/store.h:
src/supervisor/supervisor.h:
