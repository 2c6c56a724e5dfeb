build-me-asan/src/api/api_handlers.o: src/api/api_handlers.c \
 src/core/banned.h src/api/api_internal.h src/api/api.h src/auth/auth.h \
 src/compat/http.h src/core/strbuf.h src/compat/json.h \
 src/core/timeutil.h src/core/util.h src/spec/spec.h src/store/store.h \
 src/deploy/deploy.h src/router/router.h src/supervisor/supervisor.h
src/core/banned.h:
src/api/api_internal.h:
src/api/api.h:
src/auth/auth.h:
src/compat/http.h:
src/core/strbuf.h:
src/compat/json.h:
src/core/timeutil.h:
src/core/util.h:
src/spec/spec.h:
src/store/store.h:
src/deploy/deploy.h:
src/router/router.h:
src/supervisor/supervisor.h:
