build-me/src/daemon.o: src/daemon.c src/core/banned.h src/daemon.h \
 src/core/version.h src/api/api.h src/core/log.h src/core/paths.h \
 src/core/timeutil.h src/core/util.h src/deploy/deploy.h \
 src/router/router.h src/spec/spec.h src/store/store.h \
 src/supervisor/supervisor.h
src/core/banned.h:
src/daemon.h:
src/core/version.h:
src/api/api.h:
src/core/log.h:
src/core/paths.h:
src/core/timeutil.h:
src/core/util.h:
src/deploy/deploy.h:
src/router/router.h:
src/spec/spec.h:
src/store/store.h:
src/supervisor/supervisor.h:
