build-me-asan/src/api/api_metrics.o: src/api/api_metrics.c \
 src/core/banned.h src/api/api_internal.h src/api/api.h src/auth/auth.h \
 src/compat/http.h src/core/strbuf.h src/compat/gzip.h src/compat/json.h \
 src/core/timeutil.h src/core/util.h src/metrics/metrics.h
src/core/banned.h:
src/api/api_internal.h:
src/api/api.h:
src/auth/auth.h:
src/compat/http.h:
src/core/strbuf.h:
src/compat/gzip.h:
src/compat/json.h:
src/core/timeutil.h:
src/core/util.h:
src/metrics/metrics.h:
