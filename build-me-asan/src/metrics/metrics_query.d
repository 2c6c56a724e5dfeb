build-me-asan/src/metrics/metrics_query.o: src/metrics/metrics_query.c \
 src/core/banned.h src/metrics/metrics_internal.h src/metrics/metrics.h \
 src/core/strbuf.h src/core/timeutil.h src/core/util.h
src/core/banned.h:
src/metrics/metrics_internal.h:
src/metrics/metrics.h:
src/core/strbuf.h:
src/core/timeutil.h:
src/core/util.h:
